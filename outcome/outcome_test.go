package outcome_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/outcome"
	"github.com/cmdtrack/cmdtrack/store"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func TestRecordObservesStagesOnce(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := outcome.NewMetrics(reg)
	sent := store.CommandState{Status: notification.Sent, ProductID: "p1", Created: at(0), Sent: at(2), LastEvent: at(2)}
	delivered := sent
	delivered.Status, delivered.Delivered, delivered.LastEvent = notification.Delivered, at(5), at(5)
	timeout := delivered
	timeout.Status, timeout.LastEvent = notification.Timeout, at(65)
	late := timeout
	late.Status, late.Response, late.LastEvent = notification.Successful, at(70), at(70)

	m.Record([]store.Change{{CommandID: "c1", After: sent}}) // created: created->sent known
	m.Record([]store.Change{{CommandID: "c1", Existed: true, Before: sent.Previous(), After: delivered}})
	m.Record([]store.Change{{CommandID: "c1", Existed: true, Before: delivered.Previous(), After: timeout}}) // finished
	m.Record([]store.Change{{CommandID: "c1", Existed: true, Before: timeout.Previous(), After: late}})      // final changed
	// A new row straight at a final status, without a creation time.
	m.Record([]store.Change{{CommandID: "c2", After: store.CommandState{Status: notification.Failed, LastEvent: at(9)}}})

	count := func(stage string) (uint64, float64) {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			for _, mt := range mf.GetMetric() {
				if mf.GetName() == "cmdtrack_command_stage_seconds" && mt.GetLabel()[0].GetValue() == stage {
					return mt.GetHistogram().GetSampleCount(), mt.GetHistogram().GetSampleSum()
				}
			}
		}
		return 0, 0
	}
	for stage, want := range map[string]float64{
		outcome.StageCreatedSent: 2, outcome.StageSentDelivered: 3, outcome.StageDeliveredResponse: 65, outcome.StageCreatedFinal: 65,
	} {
		n, sum := count(stage)
		require.Equal(t, uint64(1), n, stage)
		require.InDelta(t, want, sum, 1e-9, stage)
	}
}

type fakeDB struct {
	stuck         map[notification.Status]int64
	stuckMessages int64
	newest        time.Time
	totals        []store.OutcomeTotal
	err           error
	reads         int
}

func (f *fakeDB) OutcomeTotals(context.Context) ([]store.OutcomeTotal, error) { return f.totals, f.err }

func (f *fakeDB) Stuck(context.Context, time.Duration) (map[notification.Status]int64, error) {
	f.reads++
	return f.stuck, f.err
}
func (f *fakeDB) MessagesStuck(context.Context, time.Duration) (int64, error) {
	return f.stuckMessages, f.err
}
func (f *fakeDB) NewestEvent(context.Context) (time.Time, error) { return f.newest, f.err }

func TestDBCollectorOnlyOnTheLeader(t *testing.T) {
	t.Parallel()
	var leader atomic.Bool
	db := &fakeDB{stuck: map[notification.Status]int64{notification.Sent: 4}, stuckMessages: 7, newest: time.Now().Add(-time.Minute)}
	c := outcome.NewDBCollector(db, leader.Load, time.Hour, true, slog.New(slog.DiscardHandler))
	now := time.Now()
	outcome.SetDBClock(c, func() time.Time { return now })
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)

	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	require.Zero(t, n, "not the leader: nothing")

	leader.Store(true)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP cmdtrack_commands_stuck Commands stuck (not final, quiet for longer than CMDTRACK_RECONCILE_THRESHOLD, moved within cmdtrack_settings.stuck_horizon: the view stuck_commands), by status; exported by the replica holding the metrics lease.
# TYPE cmdtrack_commands_stuck gauge
cmdtrack_commands_stuck{status="DELIVERED"} 0
cmdtrack_commands_stuck{status="PENDING"} 0
cmdtrack_commands_stuck{status="SENT"} 4
# HELP cmdtrack_messages_stuck Device messages stuck (PENDING, quiet for longer than CMDTRACK_RECONCILE_THRESHOLD, moved within cmdtrack_settings.stuck_horizon: stuck_messages(quiet)); exported by the replica holding the metrics lease.
# TYPE cmdtrack_messages_stuck gauge
cmdtrack_messages_stuck 7
`), "cmdtrack_commands_stuck", "cmdtrack_messages_stuck"))
	age, err := testutil.GatherAndCount(reg, "cmdtrack_newest_notification_age_seconds")
	require.NoError(t, err)
	require.Equal(t, 1, age)

	db.err = errors.New("database away")
	now = now.Add(outcome.DBReadInterval)
	n, err = testutil.GatherAndCount(reg)
	require.NoError(t, err)
	require.Zero(t, n, "a failed read exports nothing")
}

// Scrapes closer together than DBReadInterval share one reading of the
// database; the age is still the scrape's.
func TestDBCollectorReadsAtMostOncePerInterval(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	db := &fakeDB{stuck: map[notification.Status]int64{notification.Sent: 4}, newest: now.Add(-time.Minute)}
	c := outcome.NewDBCollector(db, func() bool { return true }, time.Hour, true, slog.New(slog.DiscardHandler))
	outcome.SetDBClock(c, func() time.Time { return now })
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	age := func() string {
		t.Helper()
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "cmdtrack_newest_notification_age_seconds" {
				return fmt.Sprint(mf.GetMetric()[0].GetGauge().GetValue())
			}
		}
		return "none"
	}
	require.Equal(t, "60", age())
	now = now.Add(outcome.DBReadInterval - time.Second)
	db.stuck[notification.Sent] = 5
	require.Equal(t, "69", age(), "the age is the scrape's")
	require.Equal(t, 1, db.reads, "one reading for both scrapes")
	now = now.Add(time.Second)
	require.Equal(t, "70", age())
	require.Equal(t, 2, db.reads, "read again once the interval has passed")
}

// The counters are the database's totals, by product and status, or by
// status alone without the product label.
func TestDBCollectorCounters(t *testing.T) {
	t.Parallel()
	db := &fakeDB{stuck: map[notification.Status]int64{}, totals: []store.OutcomeTotal{
		{Kind: store.KindFinished, ProductID: "p1", Status: "SUCCESSFUL", Count: 3},
		{Kind: store.KindFinished, ProductID: "p2", Status: "SUCCESSFUL", Count: 2},
		{Kind: store.KindFinished, ProductID: "", Status: "FAILED", Count: 1},
		{Kind: store.KindFinalChanged, ProductID: "p1", Status: "SUCCESSFUL", FromStatus: "TIMEOUT", Count: 1},
		{Kind: store.KindFinalChanged, ProductID: "p2", Status: "SUCCESSFUL", FromStatus: "TIMEOUT", Count: 4},
	}}
	const help = `# HELP cmdtrack_commands_final_changed_total Final statuses replaced by a later final status (a TIMEOUT, then a late SUCCESSFUL), by the status before and after; read from the database by the replica holding the metrics lease.
# TYPE cmdtrack_commands_final_changed_total counter
cmdtrack_commands_final_changed_total{from="TIMEOUT",to="SUCCESSFUL"} 5
# HELP cmdtrack_commands_finished_total Commands whose stored status became final (SUCCESSFUL, FAILED, TIMEOUT, EXPIRED, CANCELED) for the first time, by product and that status, whoever wrote it; read from the database by the replica holding the metrics lease.
# TYPE cmdtrack_commands_finished_total counter
`
	for label, want := range map[bool]string{
		true: `cmdtrack_commands_finished_total{product_id="",status="FAILED"} 1
cmdtrack_commands_finished_total{product_id="p1",status="SUCCESSFUL"} 3
cmdtrack_commands_finished_total{product_id="p2",status="SUCCESSFUL"} 2
`,
		false: `cmdtrack_commands_finished_total{product_id="",status="FAILED"} 1
cmdtrack_commands_finished_total{product_id="",status="SUCCESSFUL"} 5
`,
	} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(outcome.NewDBCollector(db, func() bool { return true }, time.Hour, label, slog.New(slog.DiscardHandler)))
		require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(help+want),
			"cmdtrack_commands_finished_total", "cmdtrack_commands_final_changed_total"), "product label %v", label)
	}
}

// Each kind of outcome event is its own counter (messages', calls', beside
// commands'), labelled as its line in the table says; a kind without a line
// is not exported.
func TestDBCollectorCountersByKind(t *testing.T) {
	t.Parallel()
	db := &fakeDB{stuck: map[notification.Status]int64{}, totals: []store.OutcomeTotal{
		{Kind: store.KindFinished, ProductID: "p1", Status: "SUCCESSFUL", Count: 3},
		{Kind: store.KindMessageFinished, ProductID: "p1", Status: "DELIVERED", Count: 5},
		{Kind: store.KindMessageFinished, ProductID: "p2", Status: "DELIVERED", Count: 1},
		{Kind: store.KindMessageFinished, ProductID: "p2", Status: "TIMEOUT", Count: 2},
		{Kind: store.KindMessageFinalChanged, ProductID: "p1", Status: "DELIVERED", FromStatus: "FAILED", Count: 1},
		{Kind: store.KindMessageFinalChanged, ProductID: "p2", Status: "DELIVERED", FromStatus: "FAILED", Count: 2},
		{Kind: store.KindCallFinished, ProductID: "p3", Status: "ERROR", Count: 4},
		{Kind: "batch.finished", ProductID: "p1", Status: "Success", Count: 9},
	}}
	const help = `# HELP cmdtrack_calls_finished_total Synchronous commands and property sets sent through cmdtrack (device_calls) that reached a final status, by product and that status; read from the database by the replica holding the metrics lease.
# TYPE cmdtrack_calls_finished_total counter
%s# HELP cmdtrack_messages_final_changed_total Device messages' final statuses replaced by a later final status (a FAILED, then a DELIVERED of a message the platform retried), by the status before and after; read from the database by the replica holding the metrics lease.
# TYPE cmdtrack_messages_final_changed_total counter
cmdtrack_messages_final_changed_total{from="FAILED",to="DELIVERED"} 3
# HELP cmdtrack_messages_finished_total Device messages (device.message.status) whose stored status became final (DELIVERED, FAILED, TIMEOUT) for the first time, by product and that status, whoever wrote it; read from the database by the replica holding the metrics lease.
# TYPE cmdtrack_messages_finished_total counter
%s`
	for label, want := range map[bool][2]string{
		true: {`cmdtrack_calls_finished_total{product_id="p3",status="ERROR"} 4
`, `cmdtrack_messages_finished_total{product_id="p1",status="DELIVERED"} 5
cmdtrack_messages_finished_total{product_id="p2",status="DELIVERED"} 1
cmdtrack_messages_finished_total{product_id="p2",status="TIMEOUT"} 2
`},
		false: {`cmdtrack_calls_finished_total{product_id="",status="ERROR"} 4
`, `cmdtrack_messages_finished_total{product_id="",status="DELIVERED"} 6
cmdtrack_messages_finished_total{product_id="",status="TIMEOUT"} 2
`},
	} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(outcome.NewDBCollector(db, func() bool { return true }, time.Hour, label, slog.New(slog.DiscardHandler)))
		require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(help, want[0], want[1])),
			"cmdtrack_messages_finished_total", "cmdtrack_messages_final_changed_total", "cmdtrack_calls_finished_total"),
			"product label %v", label)
		mfs, err := reg.Gather()
		require.NoError(t, err)
		var total float64
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if c := m.GetCounter(); c != nil {
					total += c.GetValue()
				}
			}
		}
		require.Equal(t, 3.0+8+3+4, total, "every kind with a line, once; batch.finished has none")
	}
}
