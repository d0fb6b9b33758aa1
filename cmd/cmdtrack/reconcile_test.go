package main_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/iotdafake"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/reconcile"
	"github.com/cmdtrack/cmdtrack/store"
)

// stuck stores a notification of status, dated ago before now, as the
// consumer would have.
func stuck(t *testing.T, st *store.Store, id, device string, status notification.Status, ago time.Duration) {
	t.Helper()
	at := time.Now().UTC().Truncate(time.Second).Add(-ago)
	n := &notification.Notification{CommandID: id, DeviceID: device, Status: status, EventTime: at, SentTime: at, Payload: []byte(`{}`)}
	_, err := st.Apply(context.Background(), []ingest.Item{{Source: "amqp:test", Record: n}})
	require.NoError(t, err)
}

func apiTime(ago time.Duration) string {
	return time.Now().UTC().Add(-ago).Format("20060102T150405Z")
}

// apiEnv is what reconcile needs to reach the fake API, plus overrides.
func apiEnv(api *iotdafake.Server, overrides ...string) map[string]string {
	e := map[string]string{
		"CMDTRACK_API_ENDPOINT":   api.URL,
		"CMDTRACK_API_PROJECT_ID": iotdafake.Project,
		"CMDTRACK_API_TOKEN":      iotdafake.Token,
		"CMDTRACK_API_CA_FILE":    api.CAFile,
	}
	for i := 0; i+1 < len(overrides); i += 2 {
		e[overrides[i]] = overrides[i+1]
	}
	return e
}

func status(t *testing.T, st *store.Store, id string) string {
	t.Helper()
	var s string
	require.NoError(t, st.Pool().QueryRow(context.Background(), `SELECT status FROM device_commands WHERE command_id = $1`, id).Scan(&s))
	return s
}

// TestReconcileCommand runs `cmdtrack reconcile` against the API double
// over HTTPS: stuck commands become final, an unknown one is counted and
// left alone; a missing CA file and refused credentials each stop it with
// one line naming the settings to check.
func TestReconcileCommand(t *testing.T) {
	t.Parallel()
	st, _, dbURL := testenv.Schema(t)
	api := iotdafake.Start(t)
	stuck(t, st, "stuck-1", "dev-1", notification.Sent, 3*time.Hour)
	stuck(t, st, "stuck-2", "dev-2", notification.Delivered, 2*time.Hour)
	stuck(t, st, "gone", "dev-3", notification.Sent, 2*time.Hour)
	stuck(t, st, "recent", "dev-4", notification.Sent, 5*time.Minute)
	api.Set(iotdafake.Command{DeviceID: "dev-1", CommandID: "stuck-1", Status: "SUCCESSFUL", ResponseTime: apiTime(150 * time.Minute),
		Result: json.RawMessage(`{"result_code":0}`)})
	api.Set(iotdafake.Command{DeviceID: "dev-2", CommandID: "stuck-2", Status: "TIMEOUT", DeliveredTime: apiTime(2 * time.Hour)})

	run := func(env map[string]string, args ...string) (string, int) {
		cmd := exec.Command(testenv.Binary(t), append([]string{"reconcile"}, args...)...)
		cmd.Env = append(cmd.Environ(), "CMDTRACK_DATABASE_URL="+dbURL, "CMDTRACK_LOG_FORMAT=text")
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}

	start := time.Now()
	out, code := run(apiEnv(api), "-v")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "reconcile: checked 3, updated 2, unchanged 0, unknown 1, failed 0\n")
	require.Contains(t, out, "updated stuck-1 on device dev-1: stored SENT, the API says SUCCESSFUL\n")
	require.Contains(t, out, "updated stuck-2 on device dev-2: stored DELIVERED, the API says TIMEOUT\n")
	t.Logf("cmdtrack reconcile -v (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
	require.Equal(t, "SUCCESSFUL", status(t, st, "stuck-1"))
	require.Equal(t, "TIMEOUT", status(t, st, "stuck-2"))
	require.Equal(t, "SENT", status(t, st, "gone"))
	require.Equal(t, map[string]int{"stuck-1": 1, "stuck-2": 1, "gone": 1}, api.AllCalls())
	api.Set(iotdafake.Command{DeviceID: "dev-4", CommandID: "recent", Status: "SENT", SentTime: apiTime(5 * time.Minute)})

	// The repair command the consumer logs after a long outage (RFC 3339).
	from, to := time.Now().UTC().Add(-30*time.Hour).Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339)
	out, code = run(apiEnv(api), "-since", from, "-until", to)
	require.Equal(t, 0, code, out)
	require.Regexp(t, `reconcile: checked 2, updated [01], unchanged [01], unknown 1, failed 0\n`, out, "the open ones: gone, recent")
	require.Equal(t, 1, api.Calls("recent"))

	// Named: checked whatever the status; the answer changes nothing now.
	out, code = run(apiEnv(api), "stuck-1")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "reconcile: checked 1, updated 0, unchanged 1, unknown 0, failed 0\n")

	// No CA file: the certificate does not verify; stop, naming the settings.
	out, code = run(apiEnv(api, "CMDTRACK_API_CA_FILE", ""), "gone")
	require.Equal(t, 1, code, out)
	t.Logf("no CA file: %s", lastLine(out))
	require.Contains(t, lastLine(out), "certificate")
	require.Contains(t, lastLine(out), "CMDTRACK_API_CA_FILE")

	// Refused credentials: one line naming the credential variables, never
	// the secret itself.
	out, code = run(apiEnv(api, "CMDTRACK_API_TOKEN", "s3cret-wrong-token"), "gone")
	require.Equal(t, 1, code, out)
	t.Logf("refused credentials: %s", lastLine(out))
	require.Contains(t, lastLine(out), "HTTP 401")
	require.Contains(t, lastLine(out), "CMDTRACK_API_TOKEN")
	require.Contains(t, lastLine(out), "CMDTRACK_API_ACCESS_KEY")
	require.NotContains(t, out, "s3cret-wrong-token")
	require.Equal(t, 3, api.Calls("gone"), "the refused run asked once (after the two runs before), and did not retry")

	out, code = run(apiEnv(api), "-threshold", "2h", "stuck-1")
	require.Equal(t, 2, code, out)
	out, code = run(apiEnv(api), "-since", "yesterday")
	require.Equal(t, 2, code, out)
	out, code = run(apiEnv(api, "CMDTRACK_API_ENDPOINT", ""))
	require.Equal(t, 2, code, out)
	require.Contains(t, out, "CMDTRACK_API_ENDPOINT is required by reconcile")
}

func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

// TestReconcileWorker runs two workers with CMDTRACK_RECONCILE_INTERVAL
// against the API double: the stuck commands become final, each asked
// about once between both replicas, the metrics say so, and both stop
// cleanly on SIGTERM.
func TestReconcileWorker(t *testing.T) {
	t.Parallel()
	f := setup(t)
	api := iotdafake.Start(t)
	ids := []string{"w1", "w2", "w3", "w4", "w5", "w6"}
	for i, id := range ids {
		stuck(t, f.st, id, "dev", notification.Delivered, time.Duration(2+i)*time.Hour)
		api.Set(iotdafake.Command{DeviceID: "dev", CommandID: id, Status: "SUCCESSFUL", ResponseTime: apiTime(90 * time.Minute)})
	}
	env := f.env()
	for k, v := range apiEnv(api, "CMDTRACK_RECONCILE_INTERVAL", "1s", "CMDTRACK_RECONCILE_RATE", "20") {
		env[k] = v
	}
	workers := []*testenv.Worker{testenv.StartWorker(t, env), testenv.StartWorker(t, env)}
	for _, w := range workers {
		w.WaitReady(30 * time.Second)
	}
	require.Eventually(t, func() bool {
		return f.count(t, `SELECT count(*) FROM device_commands WHERE status = 'SUCCESSFUL'`) == len(ids)
	}, 30*time.Second, 50*time.Millisecond)
	// More rounds, on whichever replica holds the lock: none asks again.
	runs := func() (n float64) {
		for _, w := range workers {
			n += metricSum(t, w, "cmdtrack_reconcile_runs_total")
		}
		return n
	}
	before := runs()
	require.Eventually(t, func() bool { return runs() >= before+2 }, 30*time.Second, 50*time.Millisecond)
	for _, id := range ids {
		require.Equal(t, 1, api.Calls(id), id)
	}
	var checked float64
	for _, w := range workers {
		checked += metricSum(t, w, "cmdtrack_reconcile_checked_total")
	}
	require.Equal(t, float64(len(ids)), checked)
	require.Equal(t, len(ids), f.count(t, `SELECT count(*) FROM device_command_events WHERE source = 'api'`))
	stopCleanly(t, workers...)
	for _, w := range workers {
		require.Zero(t, w.LogCount(reconcile.LogStopped))
	}
}

// Refused credentials stop the worker's reconciling with one error line
// naming the variables; the worker itself goes on consuming.
func TestReconcileWorkerRefusedCredentials(t *testing.T) {
	t.Parallel()
	f := setup(t)
	api := iotdafake.Start(t)
	stuck(t, f.st, "c1", "dev", notification.Sent, 2*time.Hour)
	env := f.env()
	for k, v := range apiEnv(api, "CMDTRACK_RECONCILE_INTERVAL", "1s", "CMDTRACK_API_TOKEN", "s3cret-wrong-token") {
		env[k] = v
	}
	w := testenv.StartWorker(t, env)
	w.WaitReady(30 * time.Second)
	require.Eventually(t, func() bool { return w.LogCount(reconcile.LogStopped) == 1 }, 20*time.Second, 50*time.Millisecond)
	time.Sleep(1500 * time.Millisecond)
	require.Equal(t, 1, w.LogCount(reconcile.LogStopped), "one line, no retry loop")
	require.Equal(t, 1, api.Calls("c1"), "asked once")
	require.Contains(t, w.Output(), "CMDTRACK_API_TOKEN")
	require.NotContains(t, w.Output(), "s3cret-wrong-token")

	code, _ := w.Get("/readyz")
	require.Equal(t, 200, code, "consuming goes on")
	stopCleanly(t, w)
}
