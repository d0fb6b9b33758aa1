package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/pipeline"
)

// These tests run the pipeline's logic (batching, the grace period, settle
// failures, retry and backoff) against fakes, in milliseconds, with no
// broker or database. The same pipeline against RabbitMQ and PostgreSQL is
// tested in consumer/ and cmd/cmdtrack/.

// fakeStore is an Applier that records batches and fails on demand.
type fakeStore struct {
	mu      sync.Mutex
	batches [][]ingest.Item
	// fail, when set, is asked before each attempt; a non-nil error fails it.
	fail     func(attempt int, items []ingest.Item) error
	attempts int
	// hold, when set, blocks every attempt until it is closed or ctx ends.
	hold chan struct{}
}

func (s *fakeStore) Apply(ctx context.Context, items []ingest.Item) ([]ingest.Result, error) {
	s.mu.Lock()
	s.attempts++
	attempt := s.attempts
	s.mu.Unlock()
	if s.hold != nil {
		select {
		case <-s.hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if s.fail != nil {
		if err := s.fail(attempt, items); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	s.batches = append(s.batches, append([]ingest.Item(nil), items...))
	s.mu.Unlock()
	res := make([]ingest.Result, len(items))
	for i := range items {
		res[i] = items[i].Result()
	}
	return res, nil
}

func (s *fakeStore) sizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, b := range s.batches {
		out = append(out, len(b))
	}
	return out
}

func (s *fakeStore) stored() int {
	n := 0
	for _, k := range s.sizes() {
		n += k
	}
	return n
}

// writeError is an Applier's error as the store translates it.
type writeError struct {
	class string
	retry bool
}

func (e writeError) Error() string { return e.class + " error" }
func (e writeError) Retry() bool   { return e.retry }
func (e writeError) Class() string { return e.class }

// fakeDelivery records how the pipeline answered it.
type fakeDelivery struct {
	item      ingest.Item
	settleErr error
	settled   atomic.Int32
	abandoned atomic.Int32
	result    ingest.Result
}

func (d *fakeDelivery) Item() ingest.Item { return d.item }

func (d *fakeDelivery) Settle(_ context.Context, res ingest.Result) error {
	d.result = res
	d.settled.Add(1)
	return d.settleErr
}

func (d *fakeDelivery) Abandon() { d.abandoned.Add(1) }

// fakeSource is one receiver fed through a channel; closing broken makes its
// next Next fail as a broken link would.
type fakeSource struct {
	in     chan *fakeDelivery
	broken chan struct{}
	runs   atomic.Int32
	// gate, when set, holds every Next until it is closed; a Next that
	// ends for ctx meanwhile leaves what had arrived in in, as a receiver
	// does when intake ends before it takes what its link holds.
	gate chan struct{}
}

func newFakeSource() *fakeSource {
	return &fakeSource{in: make(chan *fakeDelivery, 10000), broken: make(chan struct{})}
}

func (s *fakeSource) Run(ctx context.Context, consume func(context.Context, pipeline.Receiver) error) error {
	s.runs.Add(1)
	return consume(ctx, s)
}

func (s *fakeSource) Ready() error                { return nil }
func (s *fakeSource) Connected() bool             { return true }
func (s *fakeSource) Close(context.Context) error { return nil }

func (s *fakeSource) Next(ctx context.Context) (pipeline.Delivery, error) {
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	select {
	case d := <-s.in:
		return d, nil
	case <-s.broken:
		return nil, errors.New("link detached")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *fakeSource) Prefetched() pipeline.Delivery {
	select {
	case d := <-s.in:
		return d
	default:
		return nil
	}
}

func (s *fakeSource) send(n int) []*fakeDelivery {
	out := make([]*fakeDelivery, n)
	for i := range out {
		out[i] = &fakeDelivery{item: note(i)}
		s.in <- out[i]
	}
	return out
}

func note(i int) ingest.Item {
	return ingest.Item{Source: "fake", Record: &notification.Notification{
		CommandID: "c" + string(rune('a'+i%26)), Status: notification.Sent, EventTime: time.Now()}}
}

type fixture struct {
	store *fakeStore
	src   *fakeSource
	reg   *prometheus.Registry
	p     *pipeline.Pipeline
	clock *fakeClock
	// stopping is closed when stop ends intake, before the drain.
	stopping chan struct{}
}

// fakeClock is the pipeline's clock for progress and stalls; tests move it.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func setup(t *testing.T, cfg pipeline.Config) *fixture {
	t.Helper()
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 8
	}
	if cfg.BatchWait == 0 {
		cfg.BatchWait = 5 * time.Millisecond
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin, cfg.RetryMax = time.Millisecond, 4*time.Millisecond
	}
	reg := prometheus.NewRegistry()
	st := &fakeStore{}
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	p := pipeline.New(st, cfg, slog.New(slog.DiscardHandler), pipeline.NewMetrics(reg))
	pipeline.SetClock(p, clock.now)
	return &fixture{store: st, src: newFakeSource(), reg: reg, p: p, clock: clock, stopping: make(chan struct{})}
}

// run runs the pipeline until the returned stop is called; stop returns
// Run's error and how long the drain took.
func (f *fixture) run(t *testing.T, grace time.Duration, sources ...pipeline.Source) (stop func() (time.Duration, error)) {
	t.Helper()
	if len(sources) == 0 {
		sources = []pipeline.Source{f.src}
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f.p.Run(ctx, grace, sources...) }()
	var once sync.Once
	var err error
	var took time.Duration
	stop = func() (time.Duration, error) {
		once.Do(func() {
			start := time.Now()
			cancel()
			close(f.stopping)
			select {
			case err = <-errc:
			case <-time.After(10 * time.Second):
				t.Fatal("pipeline did not stop within 10s")
			}
			took = time.Since(start)
		})
		return took, err
	}
	t.Cleanup(func() { _, _ = stop() })
	return stop
}

func (f *fixture) counter(t *testing.T, name string) float64 {
	t.Helper()
	fams, err := f.reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, fam := range fams {
		if fam.GetName() != name {
			continue
		}
		for _, m := range fam.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func requireSettledOnce(t *testing.T, ds []*fakeDelivery) {
	t.Helper()
	for i, d := range ds {
		require.Equal(t, int32(1), d.settled.Load()+d.abandoned.Load(), "delivery %d answered once", i)
		require.Equal(t, int32(1), d.settled.Load(), "delivery %d settled", i)
	}
}

// A backlog already in hand fills whole batches without waiting; the rest
// go as a smaller batch once the wait is over.
func TestBatchesFillFromWhatIsInHand(t *testing.T) {
	t.Parallel()
	f := setup(t, pipeline.Config{BatchSize: 8, BatchWait: time.Hour, Writers: 1})
	ds := f.src.send(20)
	stop := f.run(t, time.Second)
	require.Eventually(t, func() bool { return f.store.stored() == 16 }, 5*time.Second, time.Millisecond)
	require.Equal(t, []int{8, 8}, f.store.sizes(), "two full batches without waiting an hour")
	_, err := stop()
	require.NoError(t, err)
	require.Equal(t, []int{8, 8, 4}, f.store.sizes(), "the last four are written at shutdown")
	requireSettledOnce(t, ds)
	require.Equal(t, float64(20), f.counter(t, "cmdtrack_messages_applied_total"))
	require.Equal(t, float64(3), f.counter(t, "cmdtrack_batches_total"))
}

// A full batch says a backlog waits in the queues: the pipeline is Busy
// for a second after it; a batch that is not full says nothing.
func TestBusyWhileBatchesFill(t *testing.T) {
	t.Parallel()
	f := setup(t, pipeline.Config{BatchSize: 8, BatchWait: time.Hour, Writers: 1})
	stop := f.run(t, time.Second)
	require.False(t, f.p.Busy(), "nothing arrived yet")
	f.src.send(8)
	require.Eventually(t, func() bool { return f.store.stored() == 8 }, 5*time.Second, time.Millisecond)
	require.True(t, f.p.Busy(), "a full batch")
	f.clock.advance(999 * time.Millisecond)
	require.True(t, f.p.Busy(), "within a second of it")
	f.clock.advance(time.Millisecond)
	require.False(t, f.p.Busy(), "a second after it")
	f.src.send(3)
	_, err := stop()
	require.NoError(t, err)
	require.Equal(t, []int{8, 3}, f.store.sizes())
	require.False(t, f.p.Busy(), "three are not a backlog")
}

// Deliveries that had arrived when intake ended are in hand: the drain
// writes them, in full batches, rather than leaving them to their sender.
// (Under load, TestBatchesFillFromWhatIsInHand lost its last four so.)
// TestAppliedCountedByKind: cmdtrack_messages_applied_total has a series
// for every kind of the ingest table, at 0 before any arrives, and counts
// each record under its own kind.
func TestAppliedCountedByKind(t *testing.T) {
	t.Parallel()
	f := setup(t, pipeline.Config{BatchSize: 8, BatchWait: time.Hour, Writers: 1})
	for _, kind := range ingest.ReceivedKinds() {
		require.Zero(t, f.kindCount(t, kind), kind)
	}
	ds := f.src.send(3)
	presence := &fakeDelivery{item: ingest.Item{Source: "fake", Record: &notification.Presence{
		DeviceID: "d", Status: notification.Online, EventTime: time.Now()}}}
	f.src.in <- presence
	stop := f.run(t, time.Second)
	_, err := stop()
	require.NoError(t, err)
	requireSettledOnce(t, append(ds, presence))
	require.Equal(t, float64(3), f.kindCount(t, notification.KindCommand))
	require.Equal(t, float64(1), f.kindCount(t, notification.KindPresence))
}

// kindCount is cmdtrack_messages_applied_total{kind}, or -1 if the series
// does not exist.
func (f *fixture) kindCount(t *testing.T, kind string) float64 {
	t.Helper()
	fams, err := f.reg.Gather()
	require.NoError(t, err)
	for _, fam := range fams {
		if fam.GetName() != "cmdtrack_messages_applied_total" {
			continue
		}
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

func TestShutdownWritesWhatHadArrived(t *testing.T) {
	t.Parallel()
	f := setup(t, pipeline.Config{BatchSize: 8, BatchWait: time.Hour, Writers: 1})
	f.src.gate = make(chan struct{}) // Next sees only the shutdown
	ds := f.src.send(20)
	stop := f.run(t, time.Second)
	_, err := stop()
	require.NoError(t, err)
	require.Equal(t, []int{8, 8, 4}, f.store.sizes())
	requireSettledOnce(t, ds)
}

// A lone message waits at most BatchWait for company.
func TestBatchWaitBoundsLatency(t *testing.T) {
	t.Parallel()
	f := setup(t, pipeline.Config{BatchSize: 100, BatchWait: 20 * time.Millisecond})
	f.run(t, time.Second)
	start := time.Now()
	ds := f.src.send(1)
	// With room for 99 more, only the wait's end writes it.
	require.Eventually(t, func() bool { return ds[0].settled.Load() == 1 }, 5*time.Second, time.Millisecond)
	require.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond, "it waited for company")
}

// While the database fails, the batch is retried with backoff, nothing is
// settled and readiness says so; when it is back, everything is stored once.
func TestRetryWhileTheDatabaseFails(t *testing.T) {
	t.Parallel()
	f := setup(t, pipeline.Config{BatchSize: 4, RetryMin: 2 * time.Millisecond, RetryMax: 8 * time.Millisecond})
	var down atomic.Bool
	down.Store(true)
	f.store.fail = func(int, []ingest.Item) error {
		if down.Load() {
			return writeError{class: "connection", retry: true}
		}
		return nil
	}
	f.run(t, time.Second)
	start := time.Now()
	ds := f.src.send(4)
	require.Eventually(t, func() bool { return f.p.Ready() != nil }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return f.counter(t, "cmdtrack_database_errors_total") >= 5 }, 5*time.Second, time.Millisecond, "retried")
	for _, d := range ds {
		require.Zero(t, d.settled.Load()+d.abandoned.Load(), "nothing is answered while the write fails")
	}
	// Backoff (2 ms at least between attempts) bounds the attempts by the
	// time that passed; a busy machine only makes them fewer.
	failures := f.counter(t, "cmdtrack_database_errors_total")
	require.LessOrEqual(t, failures, float64(time.Since(start)/(2*time.Millisecond))+1, "with backoff, not a spin")
	require.Positive(t, f.labeled(t, "cmdtrack_database_errors_total", "connection"), "counted by the error's class")
	require.Zero(t, f.labeled(t, "cmdtrack_database_errors_total", "other"))
	down.Store(false)
	require.Eventually(t, func() bool { return ds[3].settled.Load() == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, f.p.Ready())
	requireSettledOnce(t, ds)
	require.Equal(t, []int{4}, f.store.sizes())
}

// SIGTERM while the database is down: the drain gives up after the grace
// period, abandons what it holds (the sender redelivers it) and says why.
func TestGraceRunsOutWhileTheDatabaseIsDown(t *testing.T) {
	t.Parallel()
	f := setup(t, pipeline.Config{BatchSize: 4})
	f.store.fail = func(int, []ingest.Item) error { return &net.OpError{Op: "dial", Err: errors.New("refused")} }
	stop := f.run(t, 50*time.Millisecond)
	ds := f.src.send(10)
	require.Eventually(t, func() bool { return f.counter(t, "cmdtrack_database_errors_total") > 0 }, 5*time.Second, time.Millisecond)
	_, err := stop()
	require.ErrorIs(t, err, pipeline.ErrGraceRanOut)
	for i, d := range ds {
		require.Zero(t, d.settled.Load(), "delivery %d: nothing settled that was not stored", i)
		require.LessOrEqual(t, d.abandoned.Load(), int32(1), "delivery %d abandoned at most once", i)
	}
	require.Zero(t, f.store.stored())
}

// A clean shutdown writes and settles everything in hand before returning:
// the batch being written, and the one still filling.
func TestShutdownDrainsWhatIsInHand(t *testing.T) {
	t.Parallel()
	f := setup(t, pipeline.Config{BatchSize: 3, BatchWait: time.Hour, Writers: 1})
	f.store.hold = make(chan struct{})
	stop := f.run(t, 5*time.Second)
	ds := f.src.send(5)
	require.Eventually(t, func() bool {
		f.store.mu.Lock()
		defer f.store.mu.Unlock()
		return f.store.attempts > 0
	}, 5*time.Second, time.Millisecond)
	// The held write ends only once the drain has begun.
	go func() { <-f.stopping; close(f.store.hold) }()
	_, err := stop()
	require.NoError(t, err)
	requireSettledOnce(t, ds)
	require.Equal(t, []int{3, 2}, f.store.sizes())
}

// A settle that fails (the link died after the commit) is counted; the
// message comes again and changes nothing. The other deliveries of the batch
// are still settled, and the pipeline goes on.
func TestSettleFailuresAreCountedNotFatal(t *testing.T) {
	t.Parallel()
	f := setup(t, pipeline.Config{BatchSize: 4, BatchWait: time.Hour})
	f.run(t, time.Second)
	ds := make([]*fakeDelivery, 4)
	for i := range ds {
		ds[i] = &fakeDelivery{item: note(i)}
	}
	ds[1].settleErr = errors.New("link detached")
	for _, d := range ds {
		f.src.in <- d
	}
	require.Eventually(t, func() bool { return ds[3].settled.Load() == 1 }, 5*time.Second, time.Millisecond)
	require.Equal(t, float64(1), f.counter(t, "cmdtrack_settle_failures_total"))
	require.Equal(t, float64(3), f.counter(t, "cmdtrack_messages_applied_total"))
	more := f.src.send(4)
	require.Eventually(t, func() bool { return more[3].settled.Load() == 1 }, 5*time.Second, time.Millisecond)
}

// A broken link abandons the batch it was filling (the broker redelivers
// it) and the source's error reaches Run.
func TestBrokenStreamAbandonsItsBatch(t *testing.T) {
	t.Parallel()
	f := setup(t, pipeline.Config{BatchSize: 10, BatchWait: time.Hour})
	stop := f.run(t, time.Second)
	ds := f.src.send(3)
	// All three taken: the batch waits for more, which never come.
	require.Eventually(t, func() bool { return len(f.src.in) == 0 }, 5*time.Second, time.Millisecond)
	close(f.src.broken)
	require.Eventually(t, func() bool { return ds[2].abandoned.Load() == 1 }, 5*time.Second, time.Millisecond)
	_, err := stop()
	require.ErrorContains(t, err, "link detached")
	for _, d := range ds {
		require.Zero(t, d.settled.Load())
	}
}

// Each delivery's result says what became of it, and the metrics count it
// by outcome: applied, dead-lettered (by class), skipped.
func TestResultsAndOutcomeMetrics(t *testing.T) {
	t.Parallel()
	f := setup(t, pipeline.Config{BatchSize: 3, BatchWait: time.Hour})
	f.run(t, time.Second)
	ds := []*fakeDelivery{
		{item: note(0)},
		{item: ingest.Unusable("fake", []byte("x"), notification.ClassInvalidJSON, "not json")},
		{item: ingest.Item{Source: "fake"}},
	}
	for _, d := range ds {
		f.src.in <- d
	}
	require.Eventually(t, func() bool { return ds[2].settled.Load() == 1 }, 5*time.Second, time.Millisecond)
	require.Equal(t, ingest.Applied, ds[0].result.Outcome)
	require.Equal(t, ingest.DeadLettered, ds[1].result.Outcome)
	require.Equal(t, ingest.Skipped, ds[2].result.Outcome)
	require.Equal(t, float64(1), f.counter(t, "cmdtrack_messages_applied_total"))
	require.Equal(t, float64(1), f.counter(t, "cmdtrack_messages_skipped_total"))
	require.Equal(t, float64(1), f.labeled(t, "cmdtrack_messages_dead_lettered_total", "invalid_json"))
}

// A dead letter the database refuses cannot be retried into success: Run
// stops with the error instead of wedging the stream.
func TestUnstorableDeadLetterIsFatal(t *testing.T) {
	t.Parallel()
	f := setup(t, pipeline.Config{BatchSize: 1})
	f.store.fail = func(int, []ingest.Item) error { return fmt.Errorf("apply: %w", writeError{class: "data"}) }
	stop := f.run(t, time.Second)
	ds := f.src.send(1)
	require.Eventually(t, func() bool { return ds[0].abandoned.Load() == 1 }, 5*time.Second, time.Millisecond)
	_, err := stop()
	require.ErrorContains(t, err, "unstorable batch")
	require.Equal(t, float64(1), f.labeled(t, "cmdtrack_database_errors_total", "data"))
	f.store.mu.Lock()
	defer f.store.mu.Unlock()
	require.Equal(t, 1, f.store.attempts, "not retried")
}

// The inbox feeds the same batches: Submit returns once the commit is done,
// with the result; after intake ends it refuses at once.
func TestInboxSubmit(t *testing.T) {
	t.Parallel()
	f := setup(t, pipeline.Config{BatchSize: 4, BatchWait: time.Millisecond})
	inbox := pipeline.NewInbox()
	stop := f.run(t, time.Second, f.src, inbox)
	ctx := context.Background()
	res, err := inbox.Submit(ctx, note(1), nil)
	require.NoError(t, err)
	require.Equal(t, ingest.Applied, res.Outcome)
	res, err = inbox.Submit(ctx, ingest.Unusable("http", []byte("x"), notification.ClassInvalidJSON, "bad"), nil)
	require.NoError(t, err)
	require.Equal(t, ingest.DeadLettered, res.Outcome)
	require.Equal(t, notification.ClassInvalidJSON, res.DeadLetter.Class)
	_, err = stop()
	require.NoError(t, err)
	_, err = inbox.Submit(ctx, note(2), nil)
	require.ErrorIs(t, err, pipeline.ErrStopping)
}

// A submission whose batch cannot be stored before the grace runs out is
// told so (the HTTP receiver answers 503, and the platform retries).
func TestInboxNotStored(t *testing.T) {
	t.Parallel()
	f := setup(t, pipeline.Config{BatchSize: 1})
	f.store.fail = func(int, []ingest.Item) error { return &net.OpError{Op: "dial", Err: errors.New("refused")} }
	inbox := pipeline.NewInbox()
	stop := f.run(t, 30*time.Millisecond, inbox)
	errc := make(chan error, 1)
	go func() { _, err := inbox.Submit(context.Background(), note(1), nil); errc <- err }()
	require.Eventually(t, func() bool { return f.counter(t, "cmdtrack_database_errors_total") > 0 }, 5*time.Second, time.Millisecond)
	_, err := stop()
	require.ErrorIs(t, err, pipeline.ErrGraceRanOut)
	require.ErrorIs(t, <-errc, pipeline.ErrNotStored)
}

// labeled is the value of the counter name whose label has value label.
func (f *fixture) labeled(t *testing.T, name, label string) float64 {
	t.Helper()
	fams, err := f.reg.Gather()
	require.NoError(t, err)
	for _, fam := range fams {
		for _, m := range fam.GetMetric() {
			for _, lp := range m.GetLabel() {
				if fam.GetName() == name && lp.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// Deliveries in hand with nothing stored or settled for StallTimeout is a
// wedge, which liveness reports; progress, or nothing in hand, is not.
func TestStalled(t *testing.T) {
	t.Parallel()
	f := setup(t, pipeline.Config{BatchSize: 2, StallTimeout: 50 * time.Millisecond})
	f.store.hold = make(chan struct{})
	f.run(t, time.Second)
	f.clock.advance(time.Hour)
	require.NoError(t, f.p.Stalled(), "nothing in hand is no wedge, however long")
	ds := f.src.send(2)
	require.Eventually(t, func() bool {
		f.store.mu.Lock()
		defer f.store.mu.Unlock()
		return f.store.attempts > 0
	}, 5*time.Second, time.Millisecond)
	require.NoError(t, f.p.Stalled(), "the wait starts when the first delivery is taken")
	f.clock.advance(40 * time.Millisecond)
	require.NoError(t, f.p.Stalled(), "not yet StallTimeout")
	f.clock.advance(20 * time.Millisecond)
	require.ErrorContains(t, f.p.Stalled(), "2 messages in hand")
	close(f.store.hold)
	require.Eventually(t, func() bool { return ds[1].settled.Load() == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, f.p.Stalled())
}

// Writes that fail (the database is away) are retried and reported by
// readiness; liveness does not ask for a restart, which would not help.
func TestFailingWritesAreNoWedge(t *testing.T) {
	t.Parallel()
	f := setup(t, pipeline.Config{BatchSize: 2, StallTimeout: 30 * time.Millisecond})
	f.store.fail = func(int, []ingest.Item) error { return &net.OpError{Op: "dial", Err: errors.New("refused")} }
	f.run(t, time.Second)
	f.src.send(2)
	require.Eventually(t, func() bool { return f.p.Ready() != nil }, 5*time.Second, time.Millisecond)
	f.clock.advance(time.Hour)
	require.NoError(t, f.p.Stalled())
}

// A submission whose caller gave up (the HTTP receiver answered 503) while
// the database was away is dropped before the next attempt, not written
// for nobody once the database is back, and let go of at once: its release
// is called and its bytes leave the inbox's count.
func TestInboxDropsWhatNobodyWaitsFor(t *testing.T) {
	t.Parallel()
	f := setup(t, pipeline.Config{BatchSize: 4, BatchWait: time.Millisecond})
	var down atomic.Bool
	down.Store(true)
	tried := make(chan struct{}, 1)
	f.store.fail = func(int, []ingest.Item) error {
		if !down.Load() {
			return nil
		}
		select {
		case tried <- struct{}{}:
		default:
		}
		return &net.OpError{Op: "dial", Err: errors.New("refused")}
	}
	inbox := pipeline.NewInbox()
	stop := f.run(t, time.Second, inbox)
	ctx, giveUp := context.WithCancel(context.Background())
	released := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		_, err := inbox.Submit(ctx, ingest.Unusable("http", []byte("gone"), notification.ClassInvalidJSON, "bad"),
			func() { close(released) })
		errc <- err
	}()
	<-tried // in a batch, failing to be written
	require.Equal(t, int64(4), inbox.HeldBytes())
	giveUp()
	require.ErrorIs(t, <-errc, context.Canceled)
	select {
	case <-released: // while the database is still away
	case <-time.After(10 * time.Second):
		t.Fatal("a submission nobody waits for is still held while the database is away")
	}
	require.Zero(t, inbox.HeldBytes())
	require.InDelta(t, 1.0, f.counter(t, "cmdtrack_messages_dropped_total"), 0)

	down.Store(false)
	res, err := inbox.Submit(context.Background(), note(1), nil)
	require.NoError(t, err)
	require.Equal(t, ingest.Applied, res.Outcome)
	require.Equal(t, []int{1}, f.store.sizes(), "only the submission still waited for is written")
	_, err = stop()
	require.NoError(t, err)
}
