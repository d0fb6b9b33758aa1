package reconcile_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/iotdafake"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/reconcile"
)

// pending stores a device message PENDING since at, as a notification
// would.
func (f *fixture) pending(t *testing.T, device, id string, at time.Time) {
	t.Helper()
	m := &notification.Message{DeviceID: device, MessageID: id, Status: notification.MessagePending, EventTime: at, At: at,
		Payload: []byte(`{}`)}
	f.message(t, m)
}

func (f *fixture) message(t *testing.T, m *notification.Message) {
	t.Helper()
	if f.fake != nil {
		f.fake.mergeMessage(m)
		return
	}
	_, err := f.db.Apply(context.Background(), []ingest.Item{{Source: "amqp:test", Record: m}})
	require.NoError(t, err)
}

func (f *fixture) messageStatus(t *testing.T, device, id string) string {
	t.Helper()
	if f.fake != nil {
		return string(f.fake.message(device, id).Status)
	}
	var s string
	require.NoError(t, f.db.Pool().QueryRow(context.Background(),
		`SELECT status FROM device_messages WHERE device_id = $1 AND message_id = $2`, device, id).Scan(&s))
	return s
}

// A threshold run also asks about the messages PENDING longer than the
// threshold, within the stuck horizon, and counts them as commands are: one
// the API knows as delivered is updated, one it does not know is counted
// and left alone; recent, final and long-forgotten ones are not asked.
func TestStuckMessagesAsked(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.pending(t, "dev-1", "m-stuck", f.now.Add(-3*time.Hour))
	f.pending(t, "dev-2", "m-gone", f.now.Add(-2*time.Hour))
	f.pending(t, "dev-3", "m-recent", f.now.Add(-5*time.Minute))
	f.pending(t, "dev-4", "m-forgotten", f.now.Add(-4*24*time.Hour))
	f.message(t, &notification.Message{DeviceID: "dev-5", MessageID: "m-done", Status: notification.MessageDelivered,
		EventTime: f.now.Add(-5 * time.Hour), Payload: []byte(`{}`)})
	// The same message id on another device is another message.
	f.pending(t, "dev-2", "m-stuck", f.now.Add(-90*time.Minute))
	f.api.SetMessage("dev-1", iotdafake.Message{MessageID: "m-stuck", Status: "DELIVERED",
		CreatedTime: f.ago(3 * time.Hour), FinishedTime: f.ago(150 * time.Minute)})
	f.api.SetMessage("dev-2", iotdafake.Message{MessageID: "m-stuck", Status: "PENDING", CreatedTime: f.ago(90 * time.Minute)})

	var checks []reconcile.Check
	sum, err := f.reconciler(t, reconcile.Config{}).Run(context.Background(), reconcile.Selection{Threshold: time.Hour},
		func(c reconcile.Check) { checks = append(checks, c) })
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Checked: 3, Updated: 1, Unchanged: 1, Unknown: 1}, sum)
	require.Equal(t, reconcile.Check{MessageID: "m-stuck", DeviceID: "dev-1", Outcome: reconcile.Updated,
		Stored: "PENDING", API: "DELIVERED"}, checks[0], "oldest first")
	require.Equal(t, "DELIVERED", f.messageStatus(t, "dev-1", "m-stuck"))
	require.Equal(t, "PENDING", f.messageStatus(t, "dev-2", "m-stuck"))
	require.Equal(t, "PENDING", f.messageStatus(t, "dev-2", "m-gone"))
	for _, k := range []string{iotdafake.MessageKey("dev-3", "m-recent"), iotdafake.MessageKey("dev-4", "m-forgotten"),
		iotdafake.MessageKey("dev-5", "m-done")} {
		require.Zero(t, f.api.Calls(k), k)
	}
	require.Equal(t, 1.0, f.metric("cmdtrack_reconcile_messages_total", "outcome", "updated"))
	require.Equal(t, 1.0, f.metric("cmdtrack_reconcile_messages_total", "outcome", "unknown"))
	require.Equal(t, 3.0, f.metric("cmdtrack_reconcile_checked_total"))

	// Window and named runs are about commands.
	sum, err = f.reconciler(t, reconcile.Config{}).Run(context.Background(), reconcile.Selection{Since: f.now.Add(-5 * time.Hour)}, nil)
	require.NoError(t, err)
	require.Zero(t, sum.Checked)
}

// Against PostgreSQL: the stuck_messages selection, the merge and the
// history. The answer is recorded with source api; the platform's own
// notification of the same change, redelivered afterwards, wins over it.
func TestStuckMessageBecomesFinal(t *testing.T) {
	t.Parallel()
	f := setupDB(t)
	f.pending(t, "dev-1", "m-1", f.now.Add(-3*time.Hour))
	f.pending(t, "dev-2", "m-2", f.now.Add(-10*time.Minute))
	f.api.SetMessage("dev-1", iotdafake.Message{MessageID: "m-1", Status: "FAILED", CreatedTime: f.ago(3 * time.Hour),
		FinishedTime: f.ago(2 * time.Hour), ErrorInfo: &iotdafake.ErrorInfo{ErrorCode: "IOTDA.014112", ErrorMsg: "not subscribed"}})

	r := f.reconciler(t, reconcile.Config{})
	sum, err := r.Run(context.Background(), reconcile.Selection{Threshold: time.Hour}, nil)
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Checked: 1, Updated: 1}, sum)
	var status, code string
	var last time.Time
	q := `SELECT status, error_code, last_event_time FROM device_messages WHERE device_id = 'dev-1' AND message_id = 'm-1'`
	require.NoError(t, f.db.Pool().QueryRow(context.Background(), q).Scan(&status, &code, &last))
	require.Equal(t, []string{"FAILED", "IOTDA.014112"}, []string{status, code})
	require.Equal(t, f.now.Add(-2*time.Hour-time.Microsecond), last.UTC())
	require.Equal(t, 1, testenv.Count(t, f.db.Pool(), `SELECT count(*) FROM device_message_events WHERE source = 'api'`))

	// Asked again, it is not stuck any more.
	sum, err = r.Run(context.Background(), reconcile.Selection{Threshold: time.Hour}, nil)
	require.NoError(t, err)
	require.Zero(t, sum.Checked)

	// The platform's notification of that failure, late: it wins the tie.
	at := f.now.Add(-2 * time.Hour)
	f.message(t, &notification.Message{DeviceID: "dev-1", MessageID: "m-1", Status: notification.MessageFailed, EventTime: at,
		At: at, ErrorCode: "IOTDA.014112", ErrorMsg: "not subscribed", RequestID: "platform", Payload: []byte(`{}`)})
	var req string
	require.NoError(t, f.db.Pool().QueryRow(context.Background(), `SELECT last_request_id, last_event_time FROM device_messages
		WHERE device_id = 'dev-1' AND message_id = 'm-1'`).Scan(&req, &last))
	require.Equal(t, "platform", req)
	require.Equal(t, at, last.UTC())
}
