package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/consumer"
	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/pipeline"
)

// A queue that cannot be attached (deleted, a typo) is retried on its own,
// with backoff, and named by readiness and metrics, while the good queue's
// messages flow. Before, it kept the whole connection re-dialling and no
// queue was consumed.
func TestOneBadQueueDoesNotStopTheOthers(t *testing.T) {
	t.Parallel()
	f := setup(t)
	missing := "/amq/queue/" + testenv.Name("missing-")
	s := simulate.Generate(simulate.Config{Commands: 200, Seed: 51, OutOfOrder: 1, Duplicate: 0.1})
	f.pub.SendAll(t, bodies(s))
	r := f.startWith(t, options{broker: func(c *consumer.BrokerConfig) {
		c.Queues = []string{missing, f.queue}
		c.ReconnectMin, c.ReconnectMax = 200*time.Millisecond, 2*time.Second
	}})
	testenv.WaitStored(t, f.st.Pool(), s, time.Minute)
	require.Eventually(t, func() bool { return r.broker.Ready() != nil }, 10*time.Second, 10*time.Millisecond)
	require.ErrorContains(t, r.broker.Ready(), missing, "readiness names the failing queue")
	require.NotContains(t, r.broker.Ready().Error(), f.queue)
	require.Equal(t, float64(1), r.metric(t, "cmdtrack_queue_attached", "queue", f.queue))
	require.Equal(t, float64(0), r.metric(t, "cmdtrack_queue_attached", "queue", missing))
	// Retried (its backoff's growth is TestBadQueueBacksOffOnItsOwn's).
	require.Eventually(t, func() bool { return r.metric(t, "cmdtrack_queue_failures_total", "queue", missing) >= 2 },
		10*time.Second, 10*time.Millisecond)
	require.Zero(t, r.metric(t, "cmdtrack_broker_reconnects_total"), "the connection itself never dropped")
	require.NoError(t, r.stop())
	testenv.VerifyStream(t, f.st.Pool(), s, f.queue)
}

// failingAccept fails the accept of the first message it sees, as a link
// whose frames cannot be written would.
type failingAccept struct {
	consumer.AMQPReceiver
	failed *atomic.Bool
}

func (f failingAccept) AcceptMessage(ctx context.Context, msg *amqp.Message) error {
	if f.failed.CompareAndSwap(false, true) {
		return errors.New("write tcp: i/o timeout")
	}
	return f.AMQPReceiver.AcceptMessage(ctx, msg)
}

// An accept that fails on a live link aborts the link, so the broker
// delivers the message again now, not when the connection next drops.
// RabbitMQ may not end the aborted link's session in time (on a busy
// machine it once did not within a minute); then the worker closes the
// connection instead, which redelivers too. Either way the messages come
// again while the worker runs, and the connection goes only for that reason.
func TestFailedAcceptIsRedeliveredNow(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s := simulate.Generate(simulate.Config{Commands: 50, Seed: 53})
	var failed atomic.Bool
	logs := &records{}
	r := f.startWith(t, options{log: slog.New(logs), hook: func(b *consumer.Broker) {
		consumer.WrapReceivers(b, func(r consumer.AMQPReceiver) consumer.AMQPReceiver {
			return failingAccept{AMQPReceiver: r, failed: &failed}
		})
	}})
	f.pub.SendAll(t, bodies(s))
	testenv.WaitStored(t, f.st.Pool(), s, time.Minute)
	// The abort fails the accepts that follow on the same link too: each
	// message whose accept failed must come again.
	n := float64(len(s.Messages))
	require.Eventually(t, func() bool {
		failures := r.metric(t, "cmdtrack_settle_failures_total")
		return failures >= 1 && r.metric(t, "cmdtrack_messages_received_total") >= n+failures
	}, 20*time.Second, 20*time.Millisecond, "the messages whose accept failed must come again")
	if r.metric(t, "cmdtrack_broker_reconnects_total") > 0 {
		logs.mu.Lock()
		msgs := slices.Clone(logs.msgs)
		logs.mu.Unlock()
		require.Contains(t, msgs, consumer.LogSessionNotClosed,
			"the connection went, but not because the aborted session did not end in time")
	}
	require.NoError(t, r.stop())
	testenv.VerifyStream(t, f.st.Pool(), s, f.queue)
}

// cmdtrack asks for unsettled deliveries; should a broker send messages
// already settled (at-most-once), each is counted. Here the test makes
// RabbitMQ do so by asking for it.
func TestPresettledDeliveriesAreCounted(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s := simulate.Generate(simulate.Config{Commands: 20, Seed: 55})
	f.pub.SendAll(t, bodies(s))
	logs := &records{}
	r := f.startWith(t, options{log: slog.New(logs), hook: func(b *consumer.Broker) {
		consumer.AskSenderSettleMode(b, amqp.SenderSettleModeSettled)
	}})
	testenv.WaitStored(t, f.st.Pool(), s, time.Minute)
	require.Eventually(t, func() bool {
		return r.metric(t, "cmdtrack_messages_presettled_total", "queue", f.queue) == float64(len(s.Messages))
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop())
	// The line the README tells of, once, not once per message.
	logs.mu.Lock()
	defer logs.mu.Unlock()
	presettled := slices.DeleteFunc(slices.Clone(logs.msgs), func(m string) bool { return m != consumer.LogPresettled })
	require.Len(t, presettled, 1, "logged once: %q", logs.msgs)

	// Asked for unsettled, RabbitMQ sends none settled.
	f2 := setup(t)
	f2.pub.SendAll(t, bodies(s))
	r2 := f2.startWith(t, options{})
	testenv.WaitStored(t, f2.st.Pool(), s, time.Minute)
	require.NoError(t, r2.stop())
	require.Zero(t, r2.metric(t, "cmdtrack_messages_presettled_total"))
	require.Equal(t, float64(len(s.Messages)), r2.metric(t, "cmdtrack_messages_received_total"))
}

// downStore is a database that is away.
type downStore struct{}

func (downStore) Apply(context.Context, []ingest.Item) ([]ingest.Result, error) {
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
}

// With the database away and a backlog of large messages, what the worker
// holds is bounded in bytes (CMDTRACK_AMQP_MAX_BYTES), not only in count.
// Before, it held a whole credit's worth of them.
func TestHeldBytesBoundedWhileTheDatabaseIsAway(t *testing.T) {
	t.Parallel()
	f := setup(t)
	const size, budget = 64 << 10, 1 << 20
	big := make([][]byte, 100)
	for i := range big {
		// device.message notifications share the queues and can be large.
		big[i] = []byte(fmt.Sprintf(`{"resource":"device.message","event":"report","n":%d,"pad":"%s"}`, i, strings.Repeat("x", size)))
	}
	f.pub.SendAll(t, big)
	r := f.startWith(t, options{applier: downStore{}, broker: func(c *consumer.BrokerConfig) {
		c.Credit, c.MaxBytes, c.Limits.MaxBodyBytes = 1024, budget, 256<<10
	}})
	require.Eventually(t, func() bool { return r.metric(t, "cmdtrack_messages_held_bytes") > 0 }, 10*time.Second, 10*time.Millisecond)
	var peak float64
	var mu sync.Mutex
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		peak = max(peak, r.metric(t, "cmdtrack_messages_held_bytes"))
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	require.LessOrEqual(t, peak, float64(budget), "held bytes stay within the budget")
	require.LessOrEqual(t, r.metric(t, "cmdtrack_messages_unsettled"), float64(budget/size))
	err := r.stop()
	require.ErrorIs(t, err, pipeline.ErrGraceRanOut)
}

// memoryMarks is a Watermarks in memory.
type memoryMarks struct {
	mu    sync.Mutex
	marks map[string]time.Time
}

func (m *memoryMarks) QueueWatermarks(context.Context) (map[string]time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.marks), nil
}

func (m *memoryMarks) SaveQueueWatermarks(_ context.Context, marks map[string]time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	maps.Copy(m.marks, marks)
	return nil
}

func (m *memoryMarks) get(q string) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.marks[q]
}

// records keeps the messages of the log records at warn level and above.
type records struct {
	mu   sync.Mutex
	msgs []string
}

func (r *records) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// A worker started after its queue went unconsumed for longer than the
// platform keeps a backlog (the last run's watermark says when) says that
// notifications may be lost; while it runs, it saves when it last consumed.
func TestBacklogGapAcrossRestarts(t *testing.T) {
	t.Parallel()
	f := setup(t)
	marks := &memoryMarks{marks: map[string]time.Time{f.queue: time.Now().Add(-48 * time.Hour)}}
	logs := &records{}
	s := simulate.Generate(simulate.Config{Commands: 20, Seed: 57})
	f.pub.SendAll(t, bodies(s))
	r := f.startWith(t, options{log: slog.New(logs), broker: func(c *consumer.BrokerConfig) {
		c.Watermarks, c.WatermarkInterval, c.BacklogRetention = marks, 50*time.Millisecond, 24*time.Hour
	}})
	testenv.WaitStored(t, f.st.Pool(), s, time.Minute)
	require.Eventually(t, func() bool { return time.Since(marks.get(f.queue)) < time.Minute }, 10*time.Second, 20*time.Millisecond,
		"the watermark follows what is settled")
	require.NoError(t, r.stop())
	logs.mu.Lock()
	defer logs.mu.Unlock()
	require.Contains(t, logs.msgs, consumer.LogBacklogLost)
	require.Equal(t, 1.0, r.metric(t, "cmdtrack_backlog_gaps_total", "queue", f.queue, "when", "lost"))
}

// While the database is away and the queue's messages are held, a gap longer
// than the platform keeps the backlog is said as it happens.
func TestBacklogAtRiskWhileTheDatabaseIsAway(t *testing.T) {
	t.Parallel()
	f := setup(t)
	logs := &records{}
	f.pub.SendAll(t, bodies(simulate.Generate(simulate.Config{Commands: 5, Seed: 59})))
	r := f.startWith(t, options{applier: downStore{}, log: slog.New(logs), broker: func(c *consumer.BrokerConfig) {
		c.WatermarkInterval, c.BacklogRetention = 50*time.Millisecond, 500*time.Millisecond
	}})
	require.Eventually(t, func() bool {
		logs.mu.Lock()
		defer logs.mu.Unlock()
		return slices.Contains(logs.msgs, consumer.LogBacklogAtRisk)
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, 1.0, r.metric(t, "cmdtrack_backlog_gaps_total", "queue", f.queue, "when", "at_risk"))
	require.ErrorIs(t, r.stop(), pipeline.ErrGraceRanOut)
}
