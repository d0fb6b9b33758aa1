package consumer

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/pipeline"
)

// Tests of the broker's re-dial, per-queue backoff and attach failures, on
// fakes of go-amqp (conn.go's seams) and a fake clock: no broker, a few
// milliseconds each.

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeDialer fails the dials it is told to, and otherwise opens a fakeConn
// whose receivers attach, or fail to, as attach says.
type fakeDialer struct {
	mu    sync.Mutex
	fails []error // the errors of the next dials, in order
	dials int
	conns chan *fakeConn // every connection opened
	// attach makes a queue's receiver, or fails.
	attach func(queue string, opts *amqp.ReceiverOptions) (amqpReceiver, error)
}

func (d *fakeDialer) Dial(context.Context) (conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dials++
	if len(d.fails) > 0 {
		err := d.fails[0]
		d.fails = d.fails[1:]
		return nil, err
	}
	c := &fakeConn{dialer: d, done: make(chan struct{})}
	d.conns <- c
	return c, nil
}

func (d *fakeDialer) dialed() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials
}

type fakeConn struct {
	dialer *fakeDialer
	done   chan struct{}
	once   sync.Once
	// sessionErr, if set, fails every session begun on the connection.
	sessionErr error

	mu                     sync.Mutex
	sessions, sessionsEnds int
}

func (c *fakeConn) NewSession(context.Context) (session, error) {
	select {
	case <-c.done:
		return nil, &amqp.ConnError{}
	default:
	}
	if c.sessionErr != nil {
		return nil, c.sessionErr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sessions++
	return &fakeSession{conn: c}, nil
}

func (c *fakeConn) Done() <-chan struct{} { return c.done }

// Close ends the connection, and with it every link on it.
func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

// openSessions is how many sessions were begun and not ended.
func (c *fakeConn) openSessions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessions - c.sessionsEnds
}

type fakeSession struct{ conn *fakeConn }

func (s *fakeSession) NewReceiver(_ context.Context, queue string, opts *amqp.ReceiverOptions) (amqpReceiver, error) {
	r, err := s.conn.dialer.attach(queue, opts)
	if fr, ok := r.(*fakeReceiver); ok && err == nil {
		fr.gone, fr.goneErr = s.conn.done, &amqp.ConnError{}
	}
	return r, err
}

func (s *fakeSession) Close(context.Context) error {
	s.conn.mu.Lock()
	defer s.conn.mu.Unlock()
	s.conn.sessionsEnds++
	return nil
}

// logRecords keeps the messages of the log records at info level and above.
type logRecords struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecords) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (r *logRecords) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *logRecords) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecords) WithGroup(string) slog.Handler      { return r }

func (r *logRecords) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// brokerFixture is a Broker on fakes, run until the test ends.
type brokerFixture struct {
	b      *Broker
	m      *Metrics
	clock  *fakeClock
	dialer *fakeDialer
	logs   *logRecords
	// pauses receives every backoff the broker waits; the broker waits
	// until the test has taken it.
	pauses chan time.Duration
	// up receives the queue of every link that the consumer runs on.
	up chan string
	// linkErr, if set, is called first by every link's consume: what it
	// returns, if not nil, ends the link; otherwise consume settles what
	// arrives until the link ends.
	linkErr func(ctx context.Context, queue string) error
	cancel  context.CancelFunc
	done    chan error
}

func setupBroker(t *testing.T, queues ...string) *brokerFixture {
	t.Helper()
	f := &brokerFixture{
		clock:  newFakeClock(),
		logs:   &logRecords{},
		pauses: make(chan time.Duration),
		up:     make(chan string, 16),
		done:   make(chan error, 1),
	}
	f.dialer = &fakeDialer{conns: make(chan *fakeConn, 16), attach: func(string, *amqp.ReceiverOptions) (amqpReceiver, error) {
		return newFakeReceiver(3), nil
	}}
	f.m = NewMetrics(prometheus.NewRegistry())
	b, err := newBroker(BrokerConfig{
		URL: "amqp://broker.invalid", Queues: queues, Credit: 8, Limits: ingest.Limits{MaxBodyBytes: 1024},
		ReconnectMin: 100 * time.Millisecond, ReconnectMax: 10 * time.Second,
	}, slog.New(f.logs), f.m, f.clock.now)
	require.NoError(t, err)
	b.dialer = f.dialer
	b.pause = func(ctx context.Context, d time.Duration) bool {
		select {
		case f.pauses <- d:
			return true
		case <-ctx.Done():
			return false
		}
	}
	f.b = b
	return f
}

// run starts the broker, with a consume that settles what arrives.
func (f *brokerFixture) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() {
		f.done <- f.b.Run(ctx, func(ctx context.Context, r pipeline.Receiver) error {
			queue := r.(*Link).cfg.queue
			f.up <- queue
			if f.linkErr != nil {
				if err := f.linkErr(ctx, queue); err != nil {
					return err
				}
			}
			for {
				d, err := r.Next(ctx)
				if err != nil {
					return err
				}
				if err := d.Settle(ctx, ingest.Result{Outcome: ingest.Skipped}); err != nil {
					return err
				}
			}
		})
	}()
	t.Cleanup(func() {
		f.stop(t)
		f.b.mu.Lock()
		c := f.b.conn
		f.b.mu.Unlock()
		if c != nil {
			_ = c.Close()
		}
	})
}

// stop ends Run and waits for it.
func (f *brokerFixture) stop(t *testing.T) {
	t.Helper()
	f.cancel()
	select {
	case err := <-f.done:
		require.NoError(t, err)
		f.done <- nil // for the next stop
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of its context's end")
	}
}

// pause waits for the broker's next backoff and checks that it is the
// backoff of attempt (full jitter in its upper half).
func (f *brokerFixture) pause(t *testing.T, attempt int) {
	t.Helper()
	select {
	case d := <-f.pauses:
		want := min(f.b.cfg.ReconnectMin<<(attempt-1), f.b.cfg.ReconnectMax)
		require.GreaterOrEqual(t, d, want/2, "attempt %d", attempt)
		require.LessOrEqual(t, d, want, "attempt %d", attempt)
	case <-time.After(10 * time.Second):
		t.Fatalf("no backoff within 10 s (attempt %d)", attempt)
	}
}

func (f *brokerFixture) waitUp(t *testing.T, queue string) {
	t.Helper()
	select {
	case q := <-f.up:
		require.Equal(t, queue, q)
	case <-time.After(10 * time.Second):
		t.Fatalf("queue %q not consumed within 10 s", queue)
	}
}

func (f *brokerFixture) conn(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case c := <-f.dialer.conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection within 10 s")
		return nil
	}
}

var errRefused = errors.New("dial tcp 127.0.0.1:5672: connect: connection refused")

// The connection is re-dialled with a backoff that grows with each failed
// attempt, one log line and one outage per outage (not per attempt); a
// connection that dies right after it opens does not earn a fresh backoff,
// one that lived a while does.
func TestRedialBacksOff(t *testing.T) {
	t.Parallel()
	f := setupBroker(t, "q")
	f.dialer.fails = []error{errRefused, errRefused, errRefused}
	f.run(t)
	for attempt := 1; attempt <= 3; attempt++ {
		f.pause(t, attempt)
	}
	c := f.conn(t)
	f.waitUp(t, "q")
	require.Eventually(t, func() bool { return f.b.Ready() == nil }, 10*time.Second, time.Millisecond)
	require.Equal(t, 1, f.logs.count(logCannotConnect), "one line per outage")
	require.Equal(t, 1, f.logs.count(logConnRestored))
	require.Equal(t, float64(3), value(t, f.m.reconnects))
	require.Equal(t, float64(1), value(t, f.m.outages))
	require.Equal(t, float64(1), value(t, f.m.connected))

	// Dies at once: the backoff goes on growing.
	_ = c.Close()
	f.pause(t, 4)
	require.Equal(t, 1, f.logs.count(logConnLost))
	require.Equal(t, float64(2), value(t, f.m.outages))
	c = f.conn(t)
	f.waitUp(t, "q")

	// Lives longer than healthyAfter: the backoff starts afresh.
	f.clock.advance(f.b.healthyAfter() + time.Second)
	_ = c.Close()
	f.pause(t, 1)
	f.conn(t)
	f.waitUp(t, "q")
	require.Equal(t, 3, f.logs.count(logConnLost)+f.logs.count(logCannotConnect))
	require.Equal(t, 6, f.dialer.dialed())
	f.stop(t)
	require.Zero(t, value(t, f.m.connected))
}

// A connection that ends while a queue attaches is re-dialled; the queue is
// not blamed for it.
func TestAttachOnADeadConnectionRedials(t *testing.T) {
	t.Parallel()
	f := setupBroker(t, "q")
	first := true
	f.dialer.attach = func(string, *amqp.ReceiverOptions) (amqpReceiver, error) {
		if first {
			first = false
			return nil, &amqp.ConnError{RemoteErr: &amqp.Error{Condition: amqp.ErrCondConnectionForced}}
		}
		return newFakeReceiver(3), nil
	}
	f.run(t)
	c := f.conn(t)
	f.pause(t, 1)
	require.True(t, isClosed(c.done), "the connection is closed before the re-dial")
	f.conn(t)
	f.waitUp(t, "q")
	require.Zero(t, value(t, f.m.attachFailures.WithLabelValues("q")))
	require.Equal(t, float64(1), value(t, f.m.reconnects))
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// A queue that cannot be attached is retried on its own, with its own
// growing backoff, and named by readiness, while the other queue flows and
// the connection stays up.
func TestBadQueueBacksOffOnItsOwn(t *testing.T) {
	t.Parallel()
	f := setupBroker(t, "missing", "good")
	var (
		mu     sync.Mutex
		exists bool
	)
	good := newFakeReceiver(5)
	f.dialer.attach = func(queue string, _ *amqp.ReceiverOptions) (amqpReceiver, error) {
		mu.Lock()
		defer mu.Unlock()
		if queue == "good" {
			return good, nil
		}
		if !exists {
			return nil, &amqp.SessionError{RemoteErr: &amqp.Error{Condition: amqp.ErrCondNotFound, Description: "NOT_FOUND - no queue 'missing'"}}
		}
		return newFakeReceiver(0), nil
	}
	f.run(t)
	c := f.conn(t)
	f.waitUp(t, "good")
	for attempt := 1; attempt <= 3; attempt++ {
		f.pause(t, attempt)
	}
	require.Eventually(t, func() bool {
		good.mu.Lock()
		defer good.mu.Unlock()
		return good.accepted == 5
	}, 10*time.Second, time.Millisecond, "the good queue's messages flow")
	require.ErrorContains(t, f.b.Ready(), `queue "missing" is not attached`)
	require.ErrorContains(t, f.b.Ready(), "amqp:not-found")
	require.NotContains(t, f.b.Ready().Error(), "good")
	require.Equal(t, float64(1), value(t, f.m.queueAttached.WithLabelValues("good")))
	require.Zero(t, value(t, f.m.queueAttached.WithLabelValues("missing")))
	require.Equal(t, 1, f.logs.count(logQueueFailing), "one line per failing spell")
	require.Eventually(t, func() bool { return c.openSessions() == 1 }, 10*time.Second, time.Millisecond,
		"a failed attach ends its session")

	// The fourth attempt has failed (it waits for its backoff) before the
	// queue appears.
	require.Eventually(t, func() bool { return value(t, f.m.attachFailures.WithLabelValues("missing")) == 4 },
		10*time.Second, time.Millisecond)
	mu.Lock()
	exists = true
	mu.Unlock()
	f.pause(t, 4)
	f.waitUp(t, "missing")
	require.Eventually(t, func() bool { return f.b.Ready() == nil }, 10*time.Second, time.Millisecond)
	require.Equal(t, 1, f.logs.count(logQueueRestored))
	require.Equal(t, float64(4), value(t, f.m.attachFailures.WithLabelValues("missing")))
	require.Zero(t, value(t, f.m.reconnects), "the connection itself never dropped")
	require.Equal(t, 1, f.dialer.dialed())
}

// A link that ends (a detach) is re-attached on a new session with the
// queue's backoff, which starts afresh only once a link has lived a while.
func TestLostLinkIsReattached(t *testing.T) {
	t.Parallel()
	f := setupBroker(t, "q")
	detach := &amqp.LinkError{RemoteErr: &amqp.Error{Condition: amqp.ErrCondDetachForced}}
	end := make(chan struct{})
	f.linkErr = func(ctx context.Context, _ string) error {
		select {
		case <-end:
			return detach
		case <-ctx.Done():
			return nil
		}
	}
	f.run(t)
	c := f.conn(t)
	f.waitUp(t, "q")
	end <- struct{}{}
	f.pause(t, 1)
	f.waitUp(t, "q")
	end <- struct{}{}
	f.pause(t, 2)
	f.waitUp(t, "q")
	f.clock.advance(f.b.healthyAfter() + time.Second) // the third link lives a while
	end <- struct{}{}
	f.pause(t, 1)
	f.waitUp(t, "q")
	require.Equal(t, 3, f.logs.count(logLinkLost))
	require.Equal(t, float64(3), value(t, f.m.attachFailures.WithLabelValues("q")))
	require.Equal(t, 1, c.openSessions(), "each lost link's session is ended")
	require.Zero(t, value(t, f.m.reconnects))
}

// A broker that will not promise unsettled deliveries gets the attach again
// without asking, and one warning for the queue however often it attaches.
func TestSettleModeRefusalFallsBack(t *testing.T) {
	t.Parallel()
	f := setupBroker(t, "q")
	var (
		mu    sync.Mutex
		asked []*amqp.SenderSettleMode
	)
	f.dialer.attach = func(_ string, opts *amqp.ReceiverOptions) (amqpReceiver, error) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, opts.RequestedSenderSettleMode)
		if opts.RequestedSenderSettleMode != nil {
			// go-amqp's own words (link.go, setSettleModes).
			return nil, errors.New(`amqp: sender settlement mode "unsettled" requested, received "mixed" from server`)
		}
		return newFakeReceiver(1), nil
	}
	f.linkErr = func(context.Context, string) error { return &amqp.LinkError{} }
	f.run(t)
	f.waitUp(t, "q")
	f.pause(t, 1)
	f.waitUp(t, "q")
	mu.Lock()
	mode := amqp.SenderSettleModeUnsettled
	require.Equal(t, []*amqp.SenderSettleMode{&mode, nil, &mode, nil}, asked)
	mu.Unlock()
	require.Equal(t, 1, f.logs.count(logMixedSettle))
}

// The backlog tracker says a gap longer than the platform keeps a backlog
// when the queue is consumed again, counting from the last run's watermark
// if that is older; says once per gap that a queue whose messages are held
// has settled nothing for that long; and gives the watermark to save only
// when it moved.
func TestBacklogTracker(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	start := clock.now()
	bl := newBacklog(24*time.Hour, clock.now)

	_, _, lost := bl.consumed()
	require.False(t, lost, "a fresh start has no gap")
	_, ok := bl.watermark()
	require.False(t, ok, "nothing settled, nothing to save")

	bl.restore(start.Add(-48 * time.Hour))
	from, to, lost := bl.consumed()
	require.True(t, lost)
	require.Equal(t, start.Add(-48*time.Hour), from)
	require.Equal(t, start, to)
	at, ok := bl.watermark()
	require.True(t, ok, "the restored watermark counts as the last settled")
	require.True(t, at.Equal(from))
	bl.markSaved(at)
	_, ok = bl.watermark()
	require.False(t, ok, "saved already")

	// Consumed and settling: no gap, a new watermark.
	bl.took()
	clock.advance(time.Minute)
	bl.settled()
	bl.released()
	at, ok = bl.watermark()
	require.True(t, ok)
	require.Equal(t, start.Add(time.Minute), at.UTC())
	bl.markSaved(at)

	// Messages held and nothing settled for longer than the retention:
	// at risk, said once for this gap.
	bl.took()
	clock.advance(24 * time.Hour)
	_, risk := bl.atRisk()
	require.False(t, risk, "exactly the retention is not yet longer")
	clock.advance(time.Second)
	since, risk := bl.atRisk()
	require.True(t, risk)
	require.Equal(t, start.Add(time.Minute), since.UTC())
	_, risk = bl.atRisk()
	require.False(t, risk, "once per gap")
	// A settle ends the gap; the next one is said again.
	bl.settled()
	clock.advance(25 * time.Hour)
	since, risk = bl.atRisk()
	require.True(t, risk)
	require.Equal(t, start.Add(24*time.Hour+time.Minute+time.Second), since.UTC())
	bl.released()
	clock.advance(25 * time.Hour)
	_, risk = bl.atRisk()
	require.False(t, risk, "nothing held, nothing at risk")

	// The link ends, and a link attaches again after the retention.
	bl.unconsumedFromNow()
	gapStart := clock.now()
	clock.advance(30 * time.Hour)
	from, to, lost = bl.consumed()
	require.True(t, lost)
	require.Equal(t, gapStart, from)
	require.Equal(t, 30*time.Hour, to.Sub(from))
}

// checkBacklogs saves only the watermarks that moved, keeps those it could
// not save for the next round, and says a queue at risk once.
func TestCheckBacklogs(t *testing.T) {
	t.Parallel()
	f := setupBroker(t, "a", "b")
	marks := &savedMarks{}
	f.b.cfg.Watermarks = marks
	a, b := f.b.queues[0].backlog, f.b.queues[1].backlog
	ctx := context.Background()

	f.b.checkBacklogs(ctx)
	require.Empty(t, marks.saves, "nothing settled yet")
	a.settled()
	f.b.checkBacklogs(ctx)
	require.Equal(t, []map[string]time.Time{{"a": f.clock.now()}}, marks.saves)
	f.b.checkBacklogs(ctx)
	require.Len(t, marks.saves, 1, "unchanged: not saved again")

	marks.err = errors.New("database away")
	f.clock.advance(time.Minute)
	b.settled()
	f.b.checkBacklogs(ctx)
	marks.err = nil
	f.b.checkBacklogs(ctx)
	require.Equal(t, map[string]time.Time{"b": f.clock.now()}, marks.saves[len(marks.saves)-1], "kept for the next round")

	b.took()
	f.clock.advance(f.b.cfg.BacklogRetention + time.Second)
	f.b.checkBacklogs(ctx)
	f.b.checkBacklogs(ctx)
	require.Equal(t, 1, f.logs.count(LogBacklogAtRisk))
}

// savedMarks is a Watermarks that keeps every save, or fails with err.
type savedMarks struct {
	saves []map[string]time.Time
	err   error
}

func (m *savedMarks) QueueWatermarks(context.Context) (map[string]time.Time, error) { return nil, nil }
func (m *savedMarks) SaveQueueWatermarks(_ context.Context, marks map[string]time.Time) error {
	if m.err != nil {
		return m.err
	}
	utc := map[string]time.Time{}
	for q, at := range marks {
		utc[q] = at.UTC()
	}
	m.saves = append(m.saves, utc)
	return nil
}
