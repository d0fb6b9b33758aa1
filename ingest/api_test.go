package ingest_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/iotdaapi"
	"github.com/cmdtrack/cmdtrack/notification"
)

// testNow is when the tests' answers are received.
var testNow = time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC)

func apiCommand(t *testing.T, body string) *iotdaapi.Command {
	t.Helper()
	var c iotdaapi.Command
	require.NoError(t, json.Unmarshal([]byte(body), &c))
	c.Raw = json.RawMessage(body)
	return &c
}

func TestFromAPICreation(t *testing.T) {
	t.Parallel()
	body := `{"device_id":"d1","command_id":"c1","service_id":"Switch","command_name":"ON_OFF",
		"send_strategy":"immediately","paras":{"value":"ON"},"expire_time":0,"status":"SENT","created_time":"20261122T101010Z"}`
	it, err := ingest.FromAPI(apiCommand(t, body), testNow, limits)
	require.NoError(t, err)
	require.Equal(t, ingest.SourceAPI, it.Source)
	n := it.Notification()
	created := time.Date(2026, 11, 22, 10, 10, 10, 0, time.UTC)
	require.Equal(t, notification.Sent, n.Status)
	require.Equal(t, created.Add(-time.Microsecond), n.EventTime, "no sent_time yet: the latest time it carries, less 1µs")
	require.Equal(t, created, n.CreatedTime)
	require.Equal(t, "d1", n.DeviceID)
	require.JSONEq(t, body, string(n.Payload), "the answer as received")
	require.Equal(t, "Switch", n.Creation.ServiceID)
	require.Equal(t, "ON_OFF", n.Creation.CommandName)
	require.Equal(t, "immediately", n.Creation.SendStrategy)
	require.JSONEq(t, `{"value":"ON"}`, string(n.Creation.Paras))
	require.Equal(t, 0, *n.Creation.ExpireTime)
}

// Each status is timed by the lifecycle time it implies, or else by the
// latest one the record carries, less a microsecond: never as late as what
// it shows, so the platform's own notification of it wins a tie.
func TestFromAPIEventTime(t *testing.T) {
	t.Parallel()
	times := `"created_time":"20261122T101010Z","sent_time":"20261122T101011Z","delivered_time":"20261122T101012Z"`
	at := func(s int) time.Time { return time.Date(2026, 11, 22, 10, 10, s, 0, time.UTC) }
	for _, c := range []struct {
		status, extra string
		want          time.Time
	}{
		{"PENDING", `"created_time":"20261122T101010Z"`, at(10)},
		{"SENT", times, at(11)},
		{"DELIVERED", times, at(12)},
		{"SUCCESSFUL", times + `,"response_time":"2026-11-22T10:10:15.250Z"`, at(15).Add(250 * time.Millisecond)},
		{"FAILED", times + `,"response_time":"20261122T101014Z"`, at(14)},
		{"TIMEOUT", times, at(12)},
		{"EXPIRED", `"created_time":"20261122T101010Z"`, at(10)},
		{"DELIVERED", `"created_time":"20261122T101010Z","sent_time":"20261122T101011Z"`, at(11)},
	} {
		t.Run(c.status, func(t *testing.T) {
			t.Parallel()
			it, err := ingest.FromAPI(apiCommand(t, `{"command_id":"c1","device_id":"d1","status":"`+c.status+`",`+c.extra+`}`), testNow, limits)
			require.NoError(t, err)
			require.Equal(t, c.want.Add(-time.Microsecond), it.Notification().EventTime)
			require.Nil(t, it.Notification().Creation, "nothing of the creation in this answer")
		})
	}
}

// An answer is held to the same rules as a notification: one dated too far
// ahead of its receipt is a dead letter.
func TestFromAPIFutureTime(t *testing.T) {
	t.Parallel()
	it, err := ingest.FromAPI(apiCommand(t, `{"command_id":"c1","status":"SUCCESSFUL","response_time":"20991231T000000Z"}`), testNow, limits)
	require.NoError(t, err)
	require.Nil(t, it.Notification())
	require.Equal(t, notification.ClassFutureTime, it.DeadLetter.Class)
	require.Equal(t, ingest.SourceAPI, it.Source)
}

func TestFromAPIUnusable(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"device_id":"d1","status":"SENT","created_time":"20261122T101010Z"}`,
		`{"command_id":"c1","status":"BORED","created_time":"20261122T101010Z"}`,
		`{"command_id":"c1","status":"sent","created_time":"20261122T101010Z"}`,
		`{"command_id":"c1","status":"SENT","created_time":"22.11.2026"}`,
		`{"command_id":"c1","status":"TIMEOUT"}`,
	} {
		_, err := ingest.FromAPI(apiCommand(t, body), testNow, limits)
		require.Error(t, err, body)
	}
}
