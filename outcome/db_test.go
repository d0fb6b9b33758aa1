package outcome_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/outcome"
	"github.com/cmdtrack/cmdtrack/store"
)

// replica is what a worker has of the database's metrics: its lease, its
// exporter and its collector.
type replica struct {
	lease    *store.Lease
	exporter *outcome.Exporter
	reg      *prometheus.Registry
}

func newReplica(t *testing.T, st *store.Store) *replica {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	r := &replica{lease: st.Lease(outcome.LeaseName), reg: prometheus.NewRegistry()}
	t.Cleanup(r.lease.Release)
	r.exporter = outcome.NewExporter(r.lease, st, log, outcome.ExporterOptions{})
	r.reg.MustRegister(outcome.NewDBCollector(st, r.lease.Held, time.Hour, true, log))
	return r
}

// exports reports whether r exports each of the database's metrics (all or
// none: anything else fails), and the finished commands it says.
func (r *replica) exports(t *testing.T) (bool, float64) {
	t.Helper()
	sums := r.sums(t)
	if len(sums) == 0 {
		return false, 0
	}
	for _, name := range []string{"cmdtrack_commands_stuck", "cmdtrack_messages_stuck", "cmdtrack_newest_notification_age_seconds",
		"cmdtrack_commands_finished_total", "cmdtrack_commands_final_changed_total"} {
		require.Contains(t, sums, name, "all the database's metrics or none")
	}
	return true, sums["cmdtrack_commands_finished_total"]
}

// sums are the values of each metric r exports, summed over its series.
func (r *replica) sums(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			out[mf.GetName()] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return out
}

// Two replicas on one database: the database's gauges and counters are
// exported by exactly one of them; when it goes, the other takes over, and
// the counter goes on from where it was.
func TestOneExporterOfTheDatabase(t *testing.T) {
	t.Parallel()
	st, _, _ := testenv.Schema(t)
	ctx := context.Background()
	final := func(id string, s notification.Status) {
		t.Helper()
		_, err := st.Apply(ctx, []ingest.Item{{Source: "test", Record: &notification.Notification{
			CommandID: id, Status: s, EventTime: time.Now(), Payload: []byte(`{}`)}}})
		require.NoError(t, err)
	}
	final("c1", notification.Successful)
	final("c2", notification.Timeout)
	final("c2", notification.Successful) // a final changed

	a, b := newReplica(t, st), newReplica(t, st)
	for range 2 { // ticks again change nothing
		a.exporter.Tick(ctx)
		b.exporter.Tick(ctx)
		require.NotEqual(t, a.lease.Held(), b.lease.Held(), "one holds the lease")
	}
	leader, other := a, b
	if b.lease.Held() {
		leader, other = b, a
	}
	exports, finished := leader.exports(t)
	require.True(t, exports)
	require.Equal(t, 2.0, finished)
	exports, _ = other.exports(t)
	require.False(t, exports, "the other exports nothing")
	require.Zero(t, testenv.Count(t, st.Pool(), `SELECT count(*) FROM outcome_events`), "the leader folded the events")

	final("c3", notification.Failed)
	leader.lease.Release() // the leader stops (Exporter.Loop's end)
	other.exporter.Tick(ctx)
	leader.exporter.Tick(ctx)
	require.True(t, other.lease.Held())
	require.False(t, leader.lease.Held(), "taken by the other")
	exports, finished = other.exports(t)
	require.True(t, exports)
	require.Equal(t, 3.0, finished, "counted on from where it was")
	exports, _ = leader.exports(t)
	require.False(t, exports)
}

// A leader whose session is gone (the database restarted, the connection
// was cut) finds out at its next tick and stops exporting, and another
// replica takes the lease.
func TestLeaseLostWithItsSession(t *testing.T) {
	t.Parallel()
	st, _, _ := testenv.Schema(t)
	ctx := context.Background()
	a, b := newReplica(t, st), newReplica(t, st)
	a.exporter.Tick(ctx)
	require.True(t, a.lease.Held())
	_, err := st.Pool().Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
		AND (classid::bigint << 32 | objid::bigint) = (hashtextextended($1 || ':' || current_schema(), 0))`,
		outcome.LeaseName)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		b.exporter.Tick(ctx)
		return b.lease.Held()
	}, 10*time.Second, 20*time.Millisecond, "the other replica takes the lease once the session is gone")
	a.exporter.Tick(ctx)
	require.False(t, a.lease.Held())
	exports, _ := a.exports(t)
	require.False(t, exports)
}

// folds is a Folder that counts its folds, and says each on done.
type folds struct {
	n    atomic.Int64
	done chan struct{}
}

func (f *folds) FoldOutcomes(context.Context) (int64, error) {
	f.n.Add(1)
	if f.done != nil {
		f.done <- struct{}{}
	}
	return 0, nil
}

// A replica that serves no /metrics takes no lease, and folds on every tick.
func TestExporterWithoutLeaseFolds(t *testing.T) {
	t.Parallel()
	var f folds
	e := outcome.NewExporter(nil, &f, slog.New(slog.DiscardHandler), outcome.ExporterOptions{})
	e.Tick(context.Background())
	e.Tick(context.Background())
	require.Equal(t, int64(2), f.n.Load())
	require.Equal(t, outcome.DBReadInterval, outcome.ExporterInterval(e), "without webhooks, as often as the metrics are read")
}

// keeps is a Lease that is always held, and counts its Keeps.
type keeps struct{ n atomic.Int64 }

func (k *keeps) Keep(context.Context) (bool, error) { k.n.Add(1); return true, nil }
func (k *keeps) Held() bool                         { return true }
func (k *keeps) Release()                           {}

// With webhook routes, the Exporter folds (and so dispatches, with the
// routes the database holds) every second by default; it keeps its lease no more often than without them.
func TestExporterDispatchesToRoutes(t *testing.T) {
	t.Parallel()
	routes := []store.WebhookRoute{{Endpoint: "default"}, {Endpoint: "billing", Types: []string{store.KindFinished}, Products: []string{"p1"}}}
	log := slog.New(slog.DiscardHandler)
	require.Equal(t, outcome.DispatchInterval, outcome.ExporterInterval(outcome.NewExporter(nil, &folds{}, log, outcome.ExporterOptions{Routes: routes})))
	require.Equal(t, time.Second, outcome.DispatchInterval)

	f := folds{done: make(chan struct{})}
	var lease keeps
	e := outcome.NewExporter(&lease, &f, log, outcome.ExporterOptions{Routes: routes, Interval: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Loop(ctx) }()
	for range 5 {
		select {
		case <-f.done:
		case <-time.After(time.Minute): // a bound against a hang only: the folds come every millisecond
			t.Fatal("the Exporter does not fold")
		}
	}
	cancel()
	go func() {
		for range f.done { // a fold under way when ctx ended
		}
	}()
	<-done
	close(f.done)
	require.Equal(t, int64(1), lease.n.Load(), "the lease kept once per DBReadInterval, not per fold")
}

// Device messages are counted as commands are: from the database, once
// whatever is redelivered, by the replica holding the lease, and the ones
// stuck PENDING are a gauge; synchronous calls, as cmdtrack send records
// them, are a counter of their own.
func TestMessageOutcomesExported(t *testing.T) {
	t.Parallel()
	st, _, _ := testenv.Schema(t)
	ctx := context.Background()
	now := time.Now()
	msg := func(device, id string, s notification.MessageStatus, ago time.Duration) ingest.Item {
		return ingest.Item{Source: "test", Record: &notification.Message{DeviceID: device, MessageID: id, Status: s,
			EventTime: now.Add(-ago), At: now.Add(-ago), ProductID: "p1", Payload: []byte(`{}`)}}
	}
	first := []ingest.Item{
		msg("d1", "m1", notification.MessageDelivered, time.Minute),
		msg("d2", "m1", notification.MessageFailed, 3*time.Minute), // the same id on another device
		msg("d3", "m2", notification.MessagePending, 2*time.Hour),  // stuck: quiet longer than the hour
		msg("d3", "m3", notification.MessagePending, time.Minute),  // not yet
	}
	retried := []ingest.Item{msg("d2", "m1", notification.MessageDelivered, 2*time.Minute)}
	for _, batch := range [][]ingest.Item{first, retried, first, retried} { // redelivered: counted once
		_, err := st.Apply(ctx, batch)
		require.NoError(t, err)
	}
	for _, id := range []string{"call-1", "call-2"} { // cmdtrack send -sync's two records, the outcome twice
		call := notification.Call{CallID: id, CallKind: notification.CallCommand, DeviceID: "d4", ProductID: "p1",
			Status: notification.CallPending, EventTime: now.Add(-time.Minute), Payload: []byte(`{}`)}
		done := call
		done.Status, done.EventTime = notification.CallSuccessful, now
		for _, c := range []*notification.Call{&call, &done, &done} {
			_, err := st.Apply(ctx, []ingest.Item{{Source: "send", Record: c}})
			require.NoError(t, err)
		}
	}

	a, b := newReplica(t, st), newReplica(t, st)
	a.exporter.Tick(ctx)
	b.exporter.Tick(ctx)
	leader, other := a, b
	if b.lease.Held() {
		leader, other = b, a
	}
	require.Empty(t, other.sums(t), "the other exports nothing")
	want := map[string]float64{
		"cmdtrack_messages_finished_total":      2, // d1/m1 DELIVERED, d2/m1 FAILED first
		"cmdtrack_messages_final_changed_total": 1, // d2/m1 FAILED -> DELIVERED
		"cmdtrack_messages_stuck":               1,
		"cmdtrack_calls_finished_total":         2,
		"cmdtrack_commands_stuck":               0,
	}
	got := leader.sums(t)
	for name, n := range want {
		require.Equal(t, n, got[name], name)
	}
	require.NotContains(t, got, "cmdtrack_commands_finished_total", "no command finished")
	require.Zero(t, testenv.Count(t, st.Pool(), `SELECT count(*) FROM outcome_events`), "the leader folded the events")
}
