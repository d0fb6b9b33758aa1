package notification_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/notification"
)

// fuzzSeedFiles are the JSON examples of the platform documents in
// shared/seeds, copied byte for byte into testdata/.
var fuzzSeedFiles = []string{
	"seed000.json",                        // v5 device.command.status (seed 000)
	"seed001_legacy_cmd_status.json",      // legacy command status callback (seed 001)
	"seed002_async_command_request.json",  // async command request (seed 002)
	"seed002_async_command_response.json", // async command response (seed 002)
	"seed003_legacy_nb_cmd_status.json",   // legacy NB-IoT command status (seed 003)
	"seed004_legacy_message_confirm.json", // legacy messageConfirm (seed 004)
}

func FuzzDecode(f *testing.F) {
	seed000 := readTestdata(f, "seed000.json")
	for _, name := range fuzzSeedFiles {
		f.Add(readTestdata(f, name))
	}
	var compact bytes.Buffer
	require.NoError(f, json.Compact(&compact, seed000))
	s := compact.String()
	for _, mutated := range []string{
		s,
		replace(s, "device.commmad.status", "device.command.status"),
		replace(s, "device.commmad.status", "device.property"),
		replace(s, `"SUCCESSFUL"`, `"pending"`),
		replace(s, `"SUCCESSFUL"`, `"CANCELLED_X"`),
		replace(s, `"SUCCESSFUL"`, `3`),
		replace(s, `"2019-03-03T08:10:11.000Z"`, `"2019-03-03T16:10:11.123456789+08:00"`),
		replace(s, `"2019-03-03T08:10:11.000Z"`, `""`),
		replace(s, `"20151212T121212Z"`, `"99991231T235959Z"`),
		replace(s, `"id"`, `"id\u0000"`),
		replace(s, `"id"`, `"id\\u0000"`),
		replace(s, `"id"`, `"\ud83d\ude00"`),
		replace(s, `{"key":"value"}`, `[1,2.5e3,null,true,"x"]`),
		replace(s, `"tags":[`, `"tags":{"x":[`),
		s[:len(s)/2],
		"",
		" ",
		"null",
		"[]",
		`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	} {
		f.Add([]byte(mutated))
	}

	minTime := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	inRange := func(t *testing.T, name string, tm time.Time) {
		t.Helper()
		require.False(t, tm.Before(minTime), "%s %v before 1970", name, tm)
		require.True(t, tm.Before(maxTime), "%s %v after 2099", name, tm)
		require.Equal(t, time.UTC, tm.Location(), name)
		require.Zero(t, tm.Nanosecond()%1000, "%s %v finer than microseconds", name, tm)
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		t.Parallel()
		in := bytes.Clone(body)
		n, err := notification.Decode(body) // must not panic
		require.Equal(t, in, body, "Decode must not modify its input")

		switch e := err.(type) { //nolint:errorlint // Decode's contract: one of these types, never wrapped
		case nil:
			require.NotEmpty(t, n.CommandID)
			rank, ok := n.Status.Rank()
			require.True(t, ok, "unknown status %q", n.Status)
			require.Equal(t, rank, n.Rank())
			require.False(t, n.EventTime.IsZero())
			inRange(t, "EventTime", n.EventTime)
			for name, tm := range map[string]time.Time{
				"CreatedTime": n.CreatedTime, "SentTime": n.SentTime,
				"DeliveredTime": n.DeliveredTime, "ResponseTime": n.ResponseTime,
			} {
				if !tm.IsZero() {
					inRange(t, name, tm)
				}
			}
			require.Equal(t, body, n.Payload)
			require.True(t, utf8.Valid(n.Payload))
			require.True(t, json.Valid(n.Payload))
			if n.Tags != nil {
				require.True(t, json.Valid(n.Tags))
				require.Equal(t, byte('['), n.Tags[0])
			}
			if n.Result != nil {
				require.True(t, json.Valid(n.Result))
				require.NotEqual(t, "null", string(n.Result))
			}
			k := n.Key()
			require.Len(t, k, 32)
			require.Equal(t, k, n.Key(), "Key must be deterministic")
		case *notification.SkipError:
			require.NotEmpty(t, e.Resource)
			require.NotEqual(t, notification.ResourceCommandStatus, e.Resource)
			require.NotEmpty(t, e.Error())
		case *notification.Error:
			require.NotEmpty(t, e.Class)
			require.NotEmpty(t, e.Reason)
		default:
			t.Fatalf("Decode returned %T: %v", err, err)
		}
	})
}

// replace replaces the first old in s, which must contain it.
func replace(s, old, repl string) string {
	if !strings.Contains(s, old) {
		panic("fuzz seed mutation: " + old + " not found")
	}
	return strings.Replace(s, old, repl, 1)
}
