package ingest_test

import (
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/notification"
)

var limits = ingest.Limits{MaxBodyBytes: 1024}

// An empty body must become a storable dead letter (its body column is NOT
// NULL), or it would crash-loop the worker.
func TestEmptyBodyIsStorable(t *testing.T) {
	t.Parallel()
	for _, body := range [][]byte{nil, {}} {
		it := ingest.Classify(body, "test", time.Now(), limits)
		require.NotNil(t, it.DeadLetter)
		require.NotNil(t, it.DeadLetter.Body)
		require.Equal(t, notification.ClassEmpty, it.DeadLetter.Class)
		it = ingest.Unusable("test", body, notification.ClassEmpty, "no body")
		require.NotNil(t, it.DeadLetter.Body)
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	valid := `{"resource":"device.command.status","event":"update","event_time":"20261101T000000Z",` +
		`"notify_data":{"header":{"device_id":"d1"},"body":{"command_id":"c1","status":"SENT"}}}`
	presence := `{"resource":"device.status","event":"update","event_time":"20261101T000000Z",` +
		`"notify_data":{"header":{"device_id":"d1"},"body":{"status":"OFFLINE","status_update_time":"2026-11-01T00:00:00Z",` +
		`"last_online_time":"20261031T000000Z"}}}`
	for _, c := range []struct {
		name    string
		body    string
		outcome ingest.Outcome
		class   notification.Class
	}{
		{"v5 notification", valid, ingest.Applied, ""},
		{"legacy callback", `{"deviceId":"d","commandId":"c2","result":{"resultCode":"SENT"}}`, ingest.Applied, ""},
		{"other resource", `{"resource":"device.property","event":"report"}`, ingest.Skipped, ""},
		{"device status change", presence, ingest.Applied, ""},
		{"device status change, body beside notify_data", `{"resource":"device.status","event":"update","event_time":"20261101T000000Z",` +
			`"notify_data":{"header":{"device_id":"d1"}},"body":{"status":"ONLINE"}}`, ingest.Applied, ""},
		{"device status change without notify_data", `{"resource":"device.status","event":"update"}`, ingest.DeadLettered, notification.ClassMissingField},
		{"device status change, unknown status", strings.Replace(presence, "OFFLINE", "DOZING", 1), ingest.DeadLettered, notification.ClassUnknownStatus},
		{"device status change from the future", strings.Replace(presence, "2026-11-01T00:00:00Z", "2026-11-01T02:00:00Z", 1),
			ingest.DeadLettered, notification.ClassFutureTime},
		{"device status change, last online in the future", strings.Replace(presence, "20261031T000000Z", "20261102T000000Z", 1),
			ingest.DeadLettered, notification.ClassFutureTime},
		{"too large", `{"pad":"` + strings.Repeat("x", 2000) + `"}`, ingest.DeadLettered, notification.ClassTooLarge},
		{"not json", `not json`, ingest.DeadLettered, notification.ClassInvalidJSON},
		{"unknown status", strings.Replace(valid, "SENT", "BORED", 1), ingest.DeadLettered, notification.ClassUnknownStatus},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			it := ingest.Classify([]byte(c.body), "amqp:q", at, limits)
			require.Equal(t, "amqp:q", it.Source)
			res := it.Result()
			require.Equal(t, c.outcome, res.Outcome)
			if c.outcome == ingest.Applied {
				require.Equal(t, c.body, string(it.Payload()))
				require.False(t, it.EventTime().IsZero())
			}
			if c.class != "" {
				require.Equal(t, c.class, res.DeadLetter.Class)
				require.Equal(t, c.body, string(res.DeadLetter.Body), "a dead letter keeps the body byte for byte")
				require.NotEmpty(t, res.DeadLetter.Reason)
			}
		})
	}
}

// A notification dated further ahead of its receipt than clocks can differ
// is a dead letter: the merge takes the latest event, so one FAILED dated
// 2099 would otherwise win against every genuine notification after it.
func TestFutureTimesAreDeadLetters(t *testing.T) {
	t.Parallel()
	received := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	note := func(eventTime, extra string) []byte {
		return []byte(`{"resource":"device.command.status","event":"update","event_time":"` + eventTime + `",` +
			`"notify_data":{"header":{"device_id":"d1"},"body":{"command_id":"c1","status":"FAILED"` + extra + `}}}`)
	}
	lim := ingest.Limits{MaxBodyBytes: 4096, MaxFutureSkew: time.Hour}
	for _, c := range []struct {
		name   string
		body   []byte
		future bool
	}{
		{"year 2099", note("20991231T235959Z", ""), true},
		{"two hours ahead", note("20261101T140000Z", ""), true},
		{"created in the future", note("20261101T115900Z", `,"created_time":"20300101T000000Z"`), true},
		{"response time in the future", note("20261101T115900Z", `,"response_time":"20261102T000000Z"`), true},
		{"within the skew", note("20261101T125900Z", ""), false},
		{"in the past", note("20261101T080000Z", `,"created_time":"20261101T070000Z"`), false},
		{"legacy callback, timed by its receipt", []byte(`{"deviceId":"d","commandId":"c2","result":{"resultCode":"FAIL"}}`), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			it := ingest.Classify(c.body, "http", received, lim)
			if !c.future {
				require.NotNil(t, it.Notification(), "%+v", it.DeadLetter)
				return
			}
			require.NotNil(t, it.DeadLetter)
			require.Equal(t, notification.ClassFutureTime, it.DeadLetter.Class)
			require.Contains(t, it.DeadLetter.Reason, "CMDTRACK_MAX_FUTURE_SKEW")
			require.Equal(t, c.body, it.DeadLetter.Body)
		})
	}
	// The same rule holds for a notification built from the command API.
	n := &notification.Notification{CommandID: "c3", Status: notification.Sent,
		EventTime: received.Add(2 * time.Hour), Payload: []byte(`{}`)}
	require.NotNil(t, ingest.Accept(n, "api", received, lim).DeadLetter)
}

// Of a message larger than the limit only a prefix is kept, with the whole
// message's length and digest (so that a redelivery lands once).
func TestTooLargeKeepsAPrefix(t *testing.T) {
	t.Parallel()
	body := []byte(`{"pad":"` + strings.Repeat("x", 200<<10) + `"}`)
	it := ingest.Classify(body, "amqp:q", time.Now(), ingest.Limits{MaxBodyBytes: 100 << 10})
	dl := it.DeadLetter
	require.NotNil(t, dl)
	require.Equal(t, notification.ClassTooLarge, dl.Class)
	require.Equal(t, body[:ingest.DeadLetterPrefix], dl.Body)
	require.Equal(t, len(body), dl.Length)
	sum := sha256.Sum256(body)
	require.Equal(t, sum[:], dl.SHA256)
}
