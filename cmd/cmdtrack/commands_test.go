package main_test

// The one-shot commands against a running worker: replay and send.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// TestReplay puts dead letters in the table as an older, stricter decoder
// would have left them, and runs `cmdtrack replay` while a worker runs.
func TestReplay(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s := simulate.Generate(simulate.Config{Commands: 20, Seed: 31})
	ctx := context.Background()
	for i, m := range s.Messages {
		_, err := f.st.Pool().Exec(ctx, `INSERT INTO dead_letters (source, reason_class, reason, body, body_sha256)
			VALUES ('amqp:old', 'unknown_status', 'older decoder', $1, sha256($1))`, m.Body)
		require.NoError(t, err, "message %d", i)
	}
	stillBad := []string{`{"resource":"device.command.status","event":"update"}`, `not json`,
		`{"resource":"device.property","event":"report","notify_data":{}}`}
	for _, b := range stillBad {
		_, err := f.st.Pool().Exec(ctx, `INSERT INTO dead_letters (source, reason_class, reason, body, body_sha256)
			VALUES ('amqp:old', 'x', 'x', $1::bytea, sha256($1::bytea))`, []byte(b))
		require.NoError(t, err)
	}
	w := testenv.StartWorker(t, f.env())
	w.WaitReady(30 * time.Second)

	out, err := exec.Command(testenv.Binary(t)).CombinedOutput()
	require.Error(t, err, "without configuration the worker refuses to start: %s", out)

	cmd := exec.Command(testenv.Binary(t), "replay")
	cmd.Env = append(cmd.Environ(), "CMDTRACK_DATABASE_URL="+f.dbURL, "CMDTRACK_AMQP_URL=amqp://unused", "CMDTRACK_LOG_FORMAT=text")
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), fmt.Sprintf("%d applied, 1 skipped (other resources), 2 still failing", len(s.Messages)))

	bad, err := simulate.Verify(ctx, f.st.Pool(), s.Commands)
	require.NoError(t, err)
	require.Empty(t, bad)
	require.Equal(t, 2, f.count(t, `SELECT count(*) FROM dead_letters`))
	require.Equal(t, 2, f.count(t, `SELECT count(*) FROM dead_letters WHERE replay_count = 1 AND reason_class <> 'x'`))
	stopCleanly(t, w)
}

// TestSendCommandLifecycle sends a command with `cmdtrack send` against a
// local server that plays IoTDA's API, then lets status notifications
// complete the same row, arriving before and after the creation record.
func TestSendCommandLifecycle(t *testing.T) {
	t.Parallel()
	f := setup(t)
	var mu sync.Mutex
	var gotPath, gotInstance, gotToken string
	var gotBody map[string]any
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		gotPath, gotInstance, gotToken = r.URL.Path, r.Header.Get("Instance-Id"), r.Header.Get("X-Auth-Token")
		_ = json.NewDecoder(r.Body).Decode(&gotBody)
		if strings.Contains(r.URL.Path, "/devices/nul/") {
			// Paras PostgreSQL cannot store: the command exists, its record cannot.
			_, _ = w.Write([]byte(`{"device_id":"nul","command_id":"cmd-nul","paras":{"v":"\u0000"},"status":"SENT","created_time":"20261122T101010Z","send_strategy":"immediately"}`))
			return
		}
		if strings.Contains(r.URL.Path, "/devices/missing/") {
			w.WriteHeader(404)
			_, _ = w.Write([]byte(`{"error_code":"IOTDA.014000","error_msg":"The device does not exist."}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"device_id":"dev-1","command_id":"cmd-sent-1","service_id":"Switch","command_name":"ON_OFF",
			"send_strategy":"immediately","paras":{"value":"ON"},"expire_time":0,"status":"SENT","created_time":"20261122T101010Z"}`))
	}))
	defer api.Close()

	// A notification that overtakes the creation record.
	note := func(status, at string, extra string) []byte {
		return []byte(`{"resource":"device.command.status","event":"update","event_time":"` + at + `",
			"notify_data":{"header":{"device_id":"dev-1","product_id":"prod-9"},"body":{"command_id":"cmd-sent-1",
			"status":"` + status + `","created_time":"20261122T101010Z"` + extra + `}}}`)
	}
	f.pub.Send(t, note("DELIVERED", "20261122T101012Z", `,"sent_time":"20261122T101011Z","delivered_time":"20261122T101012Z"`))
	w := testenv.StartWorker(t, f.env())
	w.WaitReady(30 * time.Second)
	require.Eventually(t, func() bool { return f.count(t, `SELECT count(*) FROM device_commands`) == 1 }, 20*time.Second, 20*time.Millisecond)

	run := func(args ...string) (string, int) {
		cmd := exec.Command(testenv.Binary(t), append([]string{"send"}, args...)...)
		cmd.Env = append(cmd.Environ(), "CMDTRACK_DATABASE_URL="+f.dbURL, "CMDTRACK_API_ENDPOINT="+api.URL,
			"CMDTRACK_API_PROJECT_ID=proj1", "CMDTRACK_API_INSTANCE_ID=inst1", "CMDTRACK_API_TOKEN=tok", "CMDTRACK_LOG_FORMAT=text")
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := run("-device", "dev-1", "-service", "Switch", "-command", "ON_OFF", "-paras", `{"value":"ON"}`)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "command cmd-sent-1 SENT on device dev-1")
	mu.Lock()
	require.Equal(t, "/v5/iot/proj1/devices/dev-1/async-commands", gotPath)
	require.Equal(t, "inst1", gotInstance)
	require.Equal(t, "tok", gotToken)
	require.Equal(t, "immediately", gotBody["send_strategy"])
	mu.Unlock()

	out, code = run("-device", "missing", "-paras", `{"value":"ON"}`)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "404")
	out, code = run("-device", "nul", "-paras", `{"value":"ON"}`)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "refused to record")
	out, code = run("-device", "bad id!", "-paras", `{"value":"ON"}`)
	require.Equal(t, 2, code, out)
	out, code = run("-device", "dev-1")
	require.Equal(t, 2, code, out)

	f.pub.Send(t, note("SUCCESSFUL", "20261122T101015Z", `,"response_time":"20261122T101015Z","result":{"ok":true}`))
	require.Eventually(t, func() bool {
		return f.count(t, `SELECT count(*) FROM device_commands WHERE status = 'SUCCESSFUL'`) == 1
	}, 20*time.Second, 20*time.Millisecond)
	var service, name, strategy, product string
	var paras string
	var sent, delivered time.Time
	require.NoError(t, f.st.Pool().QueryRow(context.Background(), `SELECT service_id, command_name, send_strategy, paras::text,
		product_id, sent_time, delivered_time FROM device_commands WHERE command_id = 'cmd-sent-1'`).
		Scan(&service, &name, &strategy, &paras, &product, &sent, &delivered))
	require.Equal(t, []string{"Switch", "ON_OFF", "immediately", `{"value": "ON"}`, "prod-9"}, []string{service, name, strategy, paras, product})
	require.Equal(t, time.Date(2026, 11, 22, 10, 10, 11, 0, time.UTC), sent.UTC())
	require.Equal(t, 3, f.count(t, `SELECT count(*) FROM device_command_events WHERE command_id = 'cmd-sent-1'`))
	stopCleanly(t, w)
}
