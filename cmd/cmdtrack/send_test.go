package main_test

// `cmdtrack send -message`, `-sync` and `-properties` against the fake API
// over HTTPS and PostgreSQL.

import (
	"context"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/iotdafake"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/store"
)

// sendRun runs `cmdtrack send args...` against api and the database.
func sendRun(t *testing.T, dbURL string, api *iotdafake.Server, args ...string) (string, int) {
	t.Helper()
	cmd := sendCmd(t, dbURL, api, args...)
	out, _ := cmd.CombinedOutput()
	return string(out), cmd.ProcessState.ExitCode()
}

func sendCmd(t *testing.T, dbURL string, api *iotdafake.Server, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t), append([]string{"send"}, args...)...)
	cmd.Env = append(cmd.Environ(), "CMDTRACK_DATABASE_URL="+dbURL, "CMDTRACK_LOG_FORMAT=text")
	for k, v := range apiEnv(api) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

// killDuringCall starts `cmdtrack send args...`, whose call to the API
// (under key) never answers, and kills the process once the API has the
// call: a crash between the call and its answer.
func killDuringCall(t *testing.T, dbURL string, api *iotdafake.Server, key string, args ...string) {
	t.Helper()
	api.SetAnswers(key, iotdafake.Answer{Delay: time.Hour})
	called := make(chan struct{})
	var once sync.Once
	api.OnCall(func(k string) {
		if k == key {
			once.Do(func() { close(called) })
		}
	})
	cmd := sendCmd(t, dbURL, api, args...)
	require.NoError(t, cmd.Start())
	select {
	case <-called:
	case <-time.After(60 * time.Second): // generous: a busy machine starts the binary slowly
		_ = cmd.Process.Kill()
		t.Fatal("cmdtrack send never called the API")
	}
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
}

// platform applies a device.message.status notification as a worker would.
func platform(t *testing.T, st *store.Store, body string) {
	t.Helper()
	it := ingest.Classify([]byte(body), "amqp:test", time.Now(), ingest.Limits{MaxBodyBytes: 1 << 20})
	require.NotNil(t, it.Record, "%+v", it.DeadLetter)
	_, err := st.Apply(context.Background(), []ingest.Item{it})
	require.NoError(t, err)
}

func messageNote(device, id, status string, at time.Time) string {
	return `{"resource":"device.message.status","event":"update","event_time":"` + at.UTC().Format("20060102T150405Z") +
		`","request_id":"platform-` + status + `","notify_data":{"header":{"device_id":"` + device + `","product_id":"meter"},` +
		`"body":{"message_id":"` + id + `","name":"cfg","status":"` + status + `","timestamp":"` + at.UTC().Format("20060102T150405Z") + `"}}}`
}

type sentMessage struct {
	Status, Request string
	ErrorCode       *string
	Pending         *time.Time
}

func readSentMessage(t *testing.T, st *store.Store, device, id string) sentMessage {
	t.Helper()
	var m sentMessage
	require.NoError(t, st.Pool().QueryRow(context.Background(), `SELECT status, coalesce(last_request_id, ''), error_code, pending_time
		FROM device_messages WHERE device_id = $1 AND message_id = $2`, device, id).Scan(&m.Status, &m.Request, &m.ErrorCode, &m.Pending))
	return m
}

// A device message is recorded before it is sent, with the id cmdtrack
// chose, and the answer with it; the platform's notifications, arriving
// twice, complete the same row and win over cmdtrack's records. A refusal
// is recorded FAILED; a call that may have created the message leaves it
// PENDING.
func TestSendMessage(t *testing.T) {
	t.Parallel()
	st, _, dbURL := testenv.Schema(t)
	api := iotdafake.Start(t)

	out, code := sendRun(t, dbURL, api, "-device", "dev-1", "-message", `{"interval":60}`, "-message-id", "msg-1", "-name", "cfg", "-ttl", "5")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "message msg-1 PENDING on device dev-1\n")
	require.JSONEq(t, `{"message_id":"msg-1","name":"cfg","message":{"interval":60},"ttl":5}`, api.Bodies(iotdafake.CreateMessageKey("dev-1"))[0])
	require.Equal(t, "PENDING", readSentMessage(t, st, "dev-1", "msg-1").Status)
	require.Equal(t, map[string]int{"send": 1, "api": 1}, countBySource(t, st, "msg-1"))

	now := time.Now()
	platform(t, st, messageNote("dev-1", "msg-1", "PENDING", now))
	for range 2 {
		platform(t, st, messageNote("dev-1", "msg-1", "DELIVERED", now.Add(time.Second)))
	}
	m := readSentMessage(t, st, "dev-1", "msg-1")
	require.Equal(t, "DELIVERED", m.Status)
	require.Equal(t, "platform-DELIVERED", m.Request)
	require.Equal(t, 1, testenv.Count(t, st.Pool(), `SELECT count(*) FROM device_messages`))
	require.Equal(t, map[string]int{"send": 1, "api": 1, "amqp:test": 2}, countBySource(t, st, "msg-1"))

	// Without -message-id: a UUID; text is sent as a JSON string.
	out, code = sendRun(t, dbURL, api, "-device", "dev-2", "-message", "reboot now")
	require.Equal(t, 0, code, out)
	require.Regexp(t, `message [0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12} PENDING on device dev-2\n`, out)
	require.Contains(t, api.Bodies(iotdafake.CreateMessageKey("dev-2"))[0], `"message":"reboot now"`)

	api.SetAnswers(iotdafake.CreateMessageKey("dev-off"), iotdafake.Offline)
	out, code = sendRun(t, dbURL, api, "-device", "dev-off", "-message", `{}`, "-message-id", "msg-off")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "refused, and is recorded FAILED")
	m = readSentMessage(t, st, "dev-off", "msg-off")
	require.Equal(t, "FAILED", m.Status)
	require.Equal(t, "FAKE.OFFLINE", *m.ErrorCode)

	api.SetAnswers(iotdafake.CreateMessageKey("dev-5xx"), iotdafake.Unavailable)
	out, code = sendRun(t, dbURL, api, "-device", "dev-5xx", "-message", `{}`, "-message-id", "msg-5xx")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "may or may not have been created")
	require.Equal(t, "PENDING", readSentMessage(t, st, "dev-5xx", "msg-5xx").Status)

	out, code = sendRun(t, dbURL, api, "-device", "dev-1", "-message", `{}`, "-message-id", "bad/id")
	require.Equal(t, 2, code, out)
	out, code = sendRun(t, dbURL, api, "-device", "dev-1", "-message", `{}`, "-paras", `{}`)
	require.Equal(t, 2, code, out)
	out, code = sendRun(t, dbURL, api, "-device", "dev-1", "-paras", `{}`, "-product", "meter")
	require.Equal(t, 2, code, out)
	require.Equal(t, 4, testenv.Count(t, st.Pool(), `SELECT count(*) FROM device_messages`), "nothing recorded for a usage error")
}

func countBySource(t *testing.T, st *store.Store, id string) map[string]int {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `SELECT source, count(*) FROM device_message_events WHERE message_id = $1 GROUP BY source`, id)
	require.NoError(t, err)
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		require.NoError(t, rows.Scan(&s, &n))
		out[s] = n
	}
	require.NoError(t, rows.Err())
	return out
}

// cmdtrack dies between sending a message and its answer: the row is
// there, PENDING since the send, and the platform's notification completes
// it.
func TestSendMessageCrashLeavesRow(t *testing.T) {
	t.Parallel()
	st, _, dbURL := testenv.Schema(t)
	api := iotdafake.Start(t)
	before := time.Now().Truncate(time.Second)
	killDuringCall(t, dbURL, api, iotdafake.CreateMessageKey("dev-c"), "-device", "dev-c", "-message", `{}`, "-message-id", "msg-c")
	m := readSentMessage(t, st, "dev-c", "msg-c")
	require.Equal(t, "PENDING", m.Status)
	require.False(t, m.Pending.Before(before), "pending since the send")

	platform(t, st, messageNote("dev-c", "msg-c", "DELIVERED", time.Now()))
	require.Equal(t, "DELIVERED", readSentMessage(t, st, "dev-c", "msg-c").Status)
}

type sentCall struct {
	Status, Kind               string
	ErrorCode, Response, CmdID *string
	HTTPStatus                 *int32
	Finished                   *time.Time
}

func readCalls(t *testing.T, st *store.Store) map[string]sentCall {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `SELECT device_id, status, call_kind, error_code, response::text, command_id,
		http_status, finished_time FROM device_calls`)
	require.NoError(t, err)
	out := map[string]sentCall{}
	for rows.Next() {
		var d string
		var c sentCall
		require.NoError(t, rows.Scan(&d, &c.Status, &c.Kind, &c.ErrorCode, &c.Response, &c.CmdID, &c.HTTPStatus, &c.Finished))
		out[d] = c
	}
	require.NoError(t, rows.Err())
	return out
}

// Every synchronous call is a row, whatever its outcome: the device's
// answer, the platform's error (device offline, device timeout, 5xx), no
// answer within -timeout, a broken connection, and a crash before the
// answer; each call that ended counts once as call.finished.
func TestSendSyncRecordsEveryOutcome(t *testing.T) {
	t.Parallel()
	st, _, dbURL := testenv.Schema(t)
	api := iotdafake.Start(t)
	api.SetAnswers(iotdafake.CommandKey("dev-off"), iotdafake.Offline)
	api.SetAnswers(iotdafake.CommandKey("dev-slow"), iotdafake.DeviceTimeout)
	api.SetAnswers(iotdafake.CommandKey("dev-5xx"), iotdafake.Unavailable)
	api.SetAnswers(iotdafake.CommandKey("dev-hang"), iotdafake.Hangup)
	api.SetAnswers(iotdafake.CommandKey("dev-late"), iotdafake.Answer{Delay: time.Hour})
	api.SetAnswers(iotdafake.PropertiesKey("dev-poff"), iotdafake.Offline)

	syncCall := func(device string, extra ...string) (string, int) {
		return sendRun(t, dbURL, api, append([]string{"-device", device, "-sync", "-service", "Switch", "-command", "ON_OFF",
			"-paras", `{"value":"ON"}`}, extra...)...)
	}
	out, code := syncCall("dev-ok")
	require.Equal(t, 0, code, out)
	require.Regexp(t, `command call [0-9a-f-]{36} SUCCESSFUL on device dev-ok: \{"result_code":0`, out)
	for _, d := range []string{"dev-off", "dev-slow", "dev-5xx", "dev-hang"} {
		out, code = syncCall(d)
		require.Equal(t, 1, code, "%s: %s", d, out)
	}
	// The limit is cmdtrack's own, short so the test does not wait for the
	// platform's 20 s; the fake never answers.
	out, code = syncCall("dev-late", "-timeout", "1s")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "recorded TIMEOUT")
	out, code = sendRun(t, dbURL, api, "-device", "dev-p", "-properties", `[{"service_id":"Meter","properties":{"interval":60}}]`)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "properties call ")
	out, code = sendRun(t, dbURL, api, "-device", "dev-poff", "-properties", `[{"service_id":"Meter","properties":{"interval":60}}]`)
	require.Equal(t, 1, code, out)
	require.JSONEq(t, `{"service_id":"Switch","command_name":"ON_OFF","paras":{"value":"ON"}}`, api.Bodies(iotdafake.CommandKey("dev-ok"))[0])

	killDuringCall(t, dbURL, api, iotdafake.CommandKey("dev-crash"), "-device", "dev-crash", "-sync", "-paras", `{}`)

	out, code = sendRun(t, dbURL, api, "-device", "dev-ok", "-properties", `{"not":"an array"}`)
	require.Equal(t, 2, code, out)

	calls := readCalls(t, st)
	str := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	want := map[string][3]string{ // status, error code, kind
		"dev-ok": {"SUCCESSFUL", "", "command"}, "dev-off": {"FAILED", "FAKE.OFFLINE", "command"},
		"dev-slow": {"TIMEOUT", "FAKE.TIMEOUT", "command"}, "dev-5xx": {"FAILED", "IOTDA.000001", "command"},
		"dev-hang": {"ERROR", "transport", "command"}, "dev-late": {"TIMEOUT", "timeout", "command"},
		"dev-p": {"SUCCESSFUL", "", "properties"}, "dev-poff": {"FAILED", "FAKE.OFFLINE", "properties"},
		"dev-crash": {"PENDING", "", "command"},
	}
	require.Len(t, calls, len(want))
	for d, w := range want {
		c := calls[d]
		got := [3]string{c.Status, str(c.ErrorCode), c.Kind}
		require.Equal(t, w, got, d)
		require.Equal(t, c.Status != "PENDING", c.Finished != nil, d)
	}
	require.NotNil(t, calls["dev-ok"].Response)
	require.Regexp(t, `^sync-\d+$`, str(calls["dev-ok"].CmdID))
	require.Equal(t, int32(504), *calls["dev-slow"].HTTPStatus)
	require.Equal(t, int32(503), *calls["dev-5xx"].HTTPStatus)
	require.Nil(t, calls["dev-hang"].HTTPStatus)

	require.Equal(t, map[string]int{"SUCCESSFUL": 2, "FAILED": 3, "TIMEOUT": 2, "ERROR": 1}, finishedByStatus(t, st))
}

func finishedByStatus(t *testing.T, st *store.Store) map[string]int {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `SELECT status, sum(cardinality(command_ids))::int FROM outcome_events
		WHERE kind = $1 GROUP BY status`, store.KindCallFinished)
	require.NoError(t, err)
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		require.NoError(t, rows.Scan(&s, &n))
		out[s] = n
	}
	require.NoError(t, rows.Err())
	return out
}
