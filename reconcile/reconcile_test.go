package reconcile_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/iotdafake"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/iotdaapi"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/reconcile"
	"github.com/cmdtrack/cmdtrack/store"
)

// fixture is a reconciler's world: the fake API, and the fake store (setup)
// or PostgreSQL (setupDB, for the tests of what the store's merge and
// history make of the answers).
type fixture struct {
	st   reconcile.Store
	fake *fakeStore   // nil on PostgreSQL
	db   *store.Store // nil on the fake
	api  *iotdafake.Server
	reg  *prometheus.Registry
	m    *reconcile.Metrics
	logs *testenv.LogBuffer
	// now is the test's "now", whole seconds as the API's times are.
	now time.Time
}

func setup(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	f.fake = newFakeStore()
	f.st = f.fake
	return f
}

func setupDB(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	f.db, _, _ = testenv.Schema(t)
	f.st = f.db
	return f
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	return &fixture{api: iotdafake.Start(t), reg: reg, m: reconcile.NewMetrics(reg), logs: &testenv.LogBuffer{},
		now: time.Now().UTC().Truncate(time.Second)}
}

// reconciler talks to the fake API over HTTPS, trusting its test CA, and
// retries fast.
func (f *fixture) reconciler(t *testing.T, cfg reconcile.Config) *reconcile.Reconciler {
	t.Helper()
	client, err := iotdaapi.New(iotdaapi.Config{
		Endpoint: f.api.URL, ProjectID: iotdafake.Project, Token: iotdafake.Token, CAFile: f.api.CAFile,
	})
	require.NoError(t, err)
	if cfg.Rate == 0 {
		cfg.Rate = 100
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin, cfg.RetryMax = 10*time.Millisecond, 50*time.Millisecond
	}
	log := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return reconcile.New(client, f.st, cfg, log, f.m)
}

// ago is a time before the test's now, in the API's format.
func (f *fixture) ago(d time.Duration) string { return f.now.Add(-d).Format("20060102T150405Z") }

// notify stores a notification as the AMQP consumer would.
func (f *fixture) notify(t *testing.T, id, device string, status notification.Status, at time.Time, result string) {
	t.Helper()
	n := &notification.Notification{CommandID: id, DeviceID: device, Status: status, EventTime: at, Payload: []byte(`{}`)}
	// The lifecycle time its status implies, as IoTDA's notifications carry.
	switch r, _ := status.Rank(); {
	case r == 3 && status != notification.Timeout && status != notification.Expired:
		n.ResponseTime = at
	case r == 2:
		n.DeliveredTime = at
	case r == 1:
		n.SentTime = at
	}
	if result != "" {
		n.Result = json.RawMessage(result)
	}
	if f.fake != nil {
		f.fake.merge(n)
		return
	}
	_, err := f.db.Apply(context.Background(), []ingest.Item{{Source: "amqp:test", Record: n}})
	require.NoError(t, err)
}

type stored struct {
	Status       string
	ResponseTime *time.Time
	Result       *string
}

// row is a command's row in PostgreSQL.
func (f *fixture) row(t *testing.T, id string) stored {
	t.Helper()
	var r stored
	require.NoError(t, f.db.Pool().QueryRow(context.Background(),
		`SELECT status, response_time, result::text FROM device_commands WHERE command_id = $1`, id).
		Scan(&r.Status, &r.ResponseTime, &r.Result))
	return r
}

func (f *fixture) status(t *testing.T, id string) string {
	t.Helper()
	if f.fake != nil {
		return string(f.fake.row(id).Status)
	}
	return f.row(t, id).Status
}

// apiEvents is how many answers were written for the command: its history's
// rows of source "api".
func (f *fixture) apiEvents(t *testing.T, id string) int {
	t.Helper()
	if f.fake != nil {
		return f.fake.answers(id)
	}
	return testenv.Count(t, f.db.Pool(), `SELECT count(*) FROM device_command_events WHERE source = 'api' AND command_id = '`+id+`'`)
}

func (f *fixture) metric(name string, labels ...string) float64 {
	mfs, _ := f.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			match := true
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				match = match && found
			}
			if match {
				sum += m.GetCounter().GetValue()
			}
		}
		return sum
	}
	return 0
}

// Commands stuck in SENT and DELIVERED become final, with the API's
// response time and result, recorded in the history; recent and final ones
// are not asked about. Against PostgreSQL: the selection's SQL, the merge
// and the history, end to end.
func TestStuckCommandsBecomeFinal(t *testing.T) {
	t.Parallel()
	f := setupDB(t)
	f.notify(t, "stuck-sent", "dev-1", notification.Sent, f.now.Add(-3*time.Hour), "")
	f.notify(t, "stuck-delivered", "dev-2", notification.Delivered, f.now.Add(-2*time.Hour), "")
	f.notify(t, "recent", "dev-3", notification.Sent, f.now.Add(-10*time.Minute), "")
	f.notify(t, "done", "dev-4", notification.Successful, f.now.Add(-5*time.Hour), `{"ok":true}`)
	f.api.Set(iotdafake.Command{DeviceID: "dev-1", CommandID: "stuck-sent", Status: "SUCCESSFUL",
		CreatedTime: f.ago(3 * time.Hour), SentTime: f.ago(3 * time.Hour), DeliveredTime: f.ago(170 * time.Minute),
		ResponseTime: f.ago(169 * time.Minute), Result: json.RawMessage(`{"result_code":0,"result_detail":{"value":"ON"}}`)})
	f.api.Set(iotdafake.Command{DeviceID: "dev-2", CommandID: "stuck-delivered", Status: "FAILED",
		DeliveredTime: f.ago(2 * time.Hour), ResponseTime: f.ago(110 * time.Minute), Result: json.RawMessage(`{"result_code":1}`)})

	var checks []reconcile.Check
	sum, err := f.reconciler(t, reconcile.Config{}).Run(context.Background(), reconcile.Selection{Threshold: time.Hour},
		func(c reconcile.Check) { checks = append(checks, c) })
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Checked: 2, Updated: 2}, sum)
	require.Equal(t, "checked 2, updated 2, unchanged 0, unknown 0, failed 0", sum.String())
	require.Len(t, checks, 2)
	require.Equal(t, reconcile.Check{CommandID: "stuck-sent", DeviceID: "dev-1", Outcome: reconcile.Updated,
		Stored: notification.Sent, API: notification.Successful}, checks[0], "oldest first")

	r := f.row(t, "stuck-sent")
	require.Equal(t, "SUCCESSFUL", r.Status)
	require.Equal(t, f.now.Add(-169*time.Minute), r.ResponseTime.UTC())
	require.JSONEq(t, `{"result_code":0,"result_detail":{"value":"ON"}}`, *r.Result)
	r = f.row(t, "stuck-delivered")
	require.Equal(t, "FAILED", r.Status)
	require.Equal(t, f.now.Add(-110*time.Minute), r.ResponseTime.UTC())
	require.Equal(t, 1, f.apiEvents(t, "stuck-sent"), "recorded in the history, source api")
	require.Equal(t, 1, f.apiEvents(t, "stuck-delivered"))

	require.Equal(t, map[string]int{"stuck-sent": 1, "stuck-delivered": 1}, f.api.AllCalls())
	require.Equal(t, float64(2), f.metric("cmdtrack_reconcile_checked_total"))
	require.Equal(t, float64(2), f.metric("cmdtrack_reconcile_commands_total", "outcome", "updated"))

	// Again: the rows are final now, nothing is asked.
	sum, err = f.reconciler(t, reconcile.Config{}).Run(context.Background(), reconcile.Selection{Threshold: time.Hour}, nil)
	require.NoError(t, err)
	require.Zero(t, sum.Checked)
}

// A notification that arrives while the API is being asked keeps its state
// when it wins by the merge rule; when the API's answer is the later news,
// the answer wins. Either way the row is what the rule says (PostgreSQL's).
func TestNotificationDuringReconcile(t *testing.T) {
	t.Parallel()
	f := setupDB(t)
	f.notify(t, "overtaken", "dev-1", notification.Delivered, f.now.Add(-2*time.Hour), "")
	f.notify(t, "answer-newer", "dev-2", notification.Delivered, f.now.Add(-2*time.Hour), "")
	// The API saw the command time out (timed by its delivered_time, the
	// latest time the answer carries) ...
	f.api.Set(iotdafake.Command{DeviceID: "dev-1", CommandID: "overtaken", Status: "TIMEOUT",
		DeliveredTime: f.ago(2 * time.Hour)})
	f.api.Set(iotdafake.Command{DeviceID: "dev-2", CommandID: "answer-newer", Status: "SUCCESSFUL",
		DeliveredTime: f.ago(2 * time.Hour), ResponseTime: f.ago(90 * time.Minute), Result: json.RawMessage(`{"v":2}`)})
	f.api.OnCall(func(id string) {
		switch id {
		case "overtaken": // ... while the device's later answer arrives by AMQP.
			f.notify(t, "overtaken", "dev-1", notification.Successful, f.now.Add(-time.Hour), `{"v":1}`)
		case "answer-newer": // a straggler, older than what the API knows
			f.notify(t, "answer-newer", "dev-2", notification.Delivered, f.now.Add(-100*time.Minute), "")
		}
	})

	sum, err := f.reconciler(t, reconcile.Config{}).Run(context.Background(), reconcile.Selection{Threshold: time.Hour}, nil)
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Checked: 2, Updated: 1, Unchanged: 1}, sum)

	r := f.row(t, "overtaken")
	require.Equal(t, "SUCCESSFUL", r.Status, "the later notification wins over the API's TIMEOUT")
	require.JSONEq(t, `{"v":1}`, *r.Result)
	require.Equal(t, 1, f.apiEvents(t, "overtaken"), "the answer is still in the history")
	r = f.row(t, "answer-newer")
	require.Equal(t, "SUCCESSFUL", r.Status)
	require.JSONEq(t, `{"v":2}`, *r.Result)
}

// Two replicas reconciling at once: one holds the lock, the other checks
// nothing, and each command is asked for exactly once.
func TestTwoReplicasAskOnce(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ids := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for i, id := range ids {
		f.notify(t, id, "dev", notification.Sent, f.now.Add(-time.Duration(2+i)*time.Hour), "")
		f.api.SetAnswers(id, iotdafake.Answer{Delay: 50 * time.Millisecond,
			Body: `{"device_id":"dev","command_id":"` + id + `","status":"DELIVERED","delivered_time":"` + f.ago(time.Hour) + `"}`})
	}
	replicas := []*reconcile.Reconciler{f.reconciler(t, reconcile.Config{}), f.reconciler(t, reconcile.Config{})}
	var wg sync.WaitGroup
	start := make(chan struct{})
	sums := make([]reconcile.Summary, 2)
	errs := make([]error, 2)
	for i, r := range replicas {
		wg.Go(func() {
			<-start
			sums[i], errs[i] = r.Run(context.Background(), reconcile.Selection{Threshold: time.Hour}, nil)
		})
	}
	close(start)
	wg.Wait()

	busy := 0
	for _, err := range errs {
		if errors.Is(err, reconcile.ErrBusy) {
			busy++
		} else {
			require.NoError(t, err)
		}
	}
	require.Equal(t, 1, busy, "one replica found the other at work")
	require.Equal(t, len(ids), sums[0].Updated+sums[1].Updated)
	for _, id := range ids {
		require.Equal(t, 1, f.api.Calls(id), id)
	}
}

// A 429 with Retry-After holds every call back for as long as it says, then
// the command is asked again and stored.
func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.notify(t, "c1", "dev", notification.Sent, f.now.Add(-3*time.Hour), "")
	f.notify(t, "c2", "dev", notification.Sent, f.now.Add(-2*time.Hour), "")
	for _, id := range []string{"c1", "c2"} {
		f.api.Set(iotdafake.Command{DeviceID: "dev", CommandID: id, Status: "EXPIRED", CreatedTime: f.ago(3 * time.Hour)})
	}
	f.api.Throttle(1) // Retry-After: 1

	sum, err := f.reconciler(t, reconcile.Config{}).Run(context.Background(), reconcile.Selection{Threshold: time.Hour}, nil)
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Checked: 2, Updated: 2}, sum)
	times := f.api.CallTimes("c1")
	require.Len(t, times, 2)
	require.GreaterOrEqual(t, times[1].Sub(times[0]), 950*time.Millisecond, "waited as Retry-After said")
	require.Equal(t, float64(1), f.metric("cmdtrack_reconcile_api_errors_total", "class", "rate_limited"))
	require.Equal(t, "EXPIRED", f.status(t, "c1"))
}

// 401 stops the run at once: nothing more is asked, nothing written.
func TestAuthFailureStops(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.notify(t, "c1", "dev", notification.Sent, f.now.Add(-3*time.Hour), "")
	f.notify(t, "c2", "dev", notification.Sent, f.now.Add(-2*time.Hour), "")
	f.api.SetAnswers("c1", iotdafake.Answer{Status: 401, Body: `{"error_code":"APIGW.0301","error_msg":"Incorrect IAM authentication information"}`})
	f.api.Set(iotdafake.Command{DeviceID: "dev", CommandID: "c2", Status: "EXPIRED", CreatedTime: f.ago(3 * time.Hour)})

	sum, err := f.reconciler(t, reconcile.Config{}).Run(context.Background(), reconcile.Selection{Threshold: time.Hour}, nil)
	var stop *reconcile.StopError
	require.ErrorAs(t, err, &stop)
	require.Equal(t, iotdaapi.ClassAuth, stop.Class)
	require.ErrorContains(t, err, "HTTP 401")
	require.Zero(t, sum.Checked)
	require.Equal(t, map[string]int{"c1": 1}, f.api.AllCalls(), "no retry, no further call")
	require.Equal(t, "SENT", f.status(t, "c2"))
	require.Equal(t, float64(1), f.metric("cmdtrack_reconcile_api_errors_total", "class", "auth"))
}

// A command the API does not know is counted and left as it is; so is
// one it answers with garbage (logged with its id), and one whose calls
// keep failing after the attempts; a 5xx that passes is retried to success.
func TestBadAnswers(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for i, id := range []string{"unknown", "garbage", "down", "flaky"} {
		f.notify(t, id, "dev", notification.Sent, f.now.Add(-time.Duration(5-i)*time.Hour), "")
	}
	f.api.SetAnswers("garbage", iotdafake.Answer{Body: `<html>maintenance</html>`})
	f.api.SetAnswers("down", iotdafake.Answer{Status: 503, Body: `{"error_code":"IOTDA.000002","error_msg":"Internal server error."}`})
	ok := `{"device_id":"dev","command_id":"flaky","status":"SUCCESSFUL","response_time":"` + f.ago(time.Hour) + `"}`
	f.api.SetAnswers("flaky", iotdafake.Answer{Status: 502}, iotdafake.Answer{Status: 500}, iotdafake.Answer{Body: ok})

	var checks []reconcile.Check
	sum, err := f.reconciler(t, reconcile.Config{Attempts: 3}).Run(context.Background(), reconcile.Selection{Threshold: time.Hour},
		func(c reconcile.Check) { checks = append(checks, c) })
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Checked: 4, Updated: 1, Unknown: 1, Failed: 2}, sum)
	require.Equal(t, map[string]int{"unknown": 1, "garbage": 1, "down": 3, "flaky": 3}, f.api.AllCalls())
	for _, id := range []string{"unknown", "garbage", "down"} {
		require.Equal(t, "SENT", f.status(t, id), id)
		require.Zero(t, f.apiEvents(t, id), "nothing written for %s", id)
	}
	require.Equal(t, "SUCCESSFUL", f.status(t, "flaky"))
	require.Equal(t, reconcile.Unknown, checks[0].Outcome)
	require.ErrorContains(t, checks[1].Err, "decode show command response")
	require.ErrorContains(t, checks[2].Err, "gave up after 3 attempts")
	require.Contains(t, f.logs.String(), `"command_id":"garbage"`)
	require.Equal(t, float64(1), f.metric("cmdtrack_reconcile_api_errors_total", "class", "bad_response"))
	require.Equal(t, float64(5), f.metric("cmdtrack_reconcile_api_errors_total", "class", "unavailable"))
}

// Named commands are checked whatever their status; one cmdtrack does not
// hold, or holds without a device id, cannot be asked about and fails.
func TestNamedCommands(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.notify(t, "final", "dev", notification.Failed, f.now.Add(-time.Minute), `{"e":1}`)
	f.notify(t, "nodevice", "", notification.Sent, f.now.Add(-time.Hour), "")
	f.api.Set(iotdafake.Command{DeviceID: "dev", CommandID: "final", Status: "FAILED", ResponseTime: f.ago(time.Minute), Result: json.RawMessage(`{"e":1}`)})

	var checks []reconcile.Check
	sum, err := f.reconciler(t, reconcile.Config{}).Run(context.Background(),
		reconcile.Selection{IDs: []string{"final", "nodevice", "absent", "final"}},
		func(c reconcile.Check) { checks = append(checks, c) })
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Checked: 3, Unchanged: 1, Failed: 2}, sum)
	require.Equal(t, map[string]int{"final": 1}, f.api.AllCalls())
	require.ErrorContains(t, checks[0].Err, "not in device_commands")
	require.ErrorContains(t, checks[2].Err, "no device id")
}

// A window run checks what was open during the window, however recently
// it moved; it leaves what last moved more than Lookback before the window.
func TestWindow(t *testing.T) {
	t.Parallel()
	f := setup(t)
	from, to := f.now.Add(-30*time.Hour), f.now.Add(-5*time.Hour)
	f.notify(t, "before-lookback", "dev", notification.Sent, from.Add(-reconcile.Lookback-time.Hour), "")
	f.notify(t, "open-at-start", "dev", notification.Delivered, from.Add(-time.Hour), "")
	f.notify(t, "in-window", "dev", notification.Sent, from.Add(time.Hour), "")
	f.notify(t, "after-window", "dev", notification.Sent, to.Add(time.Hour), "")

	sum, err := f.reconciler(t, reconcile.Config{}).Run(context.Background(), reconcile.Selection{Since: from, Until: to}, nil)
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Checked: 2, Unknown: 2}, sum)
	require.Equal(t, map[string]int{"open-at-start": 1, "in-window": 1}, f.api.AllCalls())
}

// With Remember (the daemon), a command whose answer changed nothing is not
// asked again before the threshold has passed once more.
func TestRememberSpacesRechecks(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.notify(t, "stuck", "dev", notification.Delivered, f.now.Add(-2*time.Hour), "")
	f.api.Set(iotdafake.Command{DeviceID: "dev", CommandID: "stuck", Status: "DELIVERED", DeliveredTime: f.ago(2 * time.Hour)})
	r := f.reconciler(t, reconcile.Config{})
	r.Remember(24 * time.Hour)
	for range 3 {
		_, err := r.Run(context.Background(), reconcile.Selection{Threshold: time.Hour}, nil)
		require.NoError(t, err)
	}
	require.Equal(t, 1, f.api.Calls("stuck"))
}

// A threshold run asks only about commands that moved within the stuck
// horizon (cmdtrack_settings.stuck_horizon, 3 days): one left open a year
// ago would otherwise be asked about every run for ever. A window that
// covers it, or its id, still asks; a longer horizon takes it in again.
func TestThresholdStaysInHorizon(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.notify(t, "year-old", "dev", notification.Sent, f.now.Add(-365*24*time.Hour), "")
	f.notify(t, "beyond", "dev", notification.Delivered, f.now.Add(-73*time.Hour), "")
	f.notify(t, "within", "dev", notification.Sent, f.now.Add(-71*time.Hour), "")
	f.notify(t, "recent", "dev", notification.Sent, f.now.Add(-2*time.Hour), "")

	r := f.reconciler(t, reconcile.Config{})
	sum, err := r.Run(context.Background(), reconcile.Selection{Threshold: time.Hour}, nil)
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Checked: 2, Unknown: 2}, sum)
	require.Equal(t, map[string]int{"within": 1, "recent": 1}, f.api.AllCalls())

	sum, err = r.Run(context.Background(), reconcile.Selection{IDs: []string{"year-old"}}, nil)
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Checked: 1, Unknown: 1}, sum)
	sum, err = r.Run(context.Background(), reconcile.Selection{Since: f.now.Add(-74 * time.Hour)}, nil)
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Checked: 3, Unknown: 3}, sum, "the window takes what moved since 48 h before it")
	require.Equal(t, map[string]int{"year-old": 1, "beyond": 1, "within": 2, "recent": 2}, f.api.AllCalls())

	f.fake.setHorizon(4 * 24 * time.Hour)
	sum, err = r.Run(context.Background(), reconcile.Selection{Threshold: time.Hour}, nil)
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Checked: 3, Unknown: 3}, sum)
	require.Equal(t, 2, f.api.Calls("beyond"))
	require.Equal(t, 1, f.api.Calls("year-old"))

	// A horizon no longer than the threshold selects nothing, and says so.
	f.fake.setHorizon(time.Hour)
	sum, err = r.Run(context.Background(), reconcile.Selection{Threshold: time.Hour}, nil)
	require.NoError(t, err)
	require.Zero(t, sum.Checked)
	require.Contains(t, f.logs.String(), "raise cmdtrack_settings.stuck_horizon")
}

// An answer about another device than the one asked about is refused, as
// one about another command is: nothing is written, and the row keeps its
// device.
func TestAnswerAboutAnotherDevice(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.notify(t, "c1", "dev-1", notification.Sent, f.now.Add(-2*time.Hour), "")
	f.api.Set(iotdafake.Command{DeviceID: "dev-other", CommandID: "c1", Status: "SUCCESSFUL", ResponseTime: f.ago(time.Hour)})

	var checks []reconcile.Check
	sum, err := f.reconciler(t, reconcile.Config{}).Run(context.Background(), reconcile.Selection{Threshold: time.Hour},
		func(c reconcile.Check) { checks = append(checks, c) })
	require.NoError(t, err)
	require.Equal(t, reconcile.Summary{Checked: 1, Failed: 1}, sum)
	require.ErrorContains(t, checks[0].Err, `device "dev-other"`)
	require.Equal(t, "SENT", f.status(t, "c1"))
	require.Zero(t, f.apiEvents(t, "c1"))
	require.Equal(t, "dev-1", f.fake.row("c1").DeviceID)
	require.Equal(t, float64(1), f.metric("cmdtrack_reconcile_api_errors_total", "class", "bad_response"))
}

// A database that fails ends the run, in either mode, before any call is
// spent on an answer that could not be recorded.
func TestDatabaseDownAsksNothing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.notify(t, "c1", "dev", notification.Sent, f.now.Add(-2*time.Hour), "")
	errDown := errors.New("database away")
	f.fake.down = errDown
	for _, sel := range []reconcile.Selection{{Threshold: time.Hour}, {Since: f.now.Add(-3 * time.Hour)}, {IDs: []string{"c1"}}} {
		sum, err := f.reconciler(t, reconcile.Config{}).Run(context.Background(), sel, nil)
		require.ErrorIs(t, err, errDown, "%+v", sel)
		require.Zero(t, sum.Checked)
	}
	require.Empty(t, f.api.AllCalls())
}
