package ingest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/notification"
)

// samples holds a usable message for every resource of the kinds table:
// a kind added without one fails TestEveryResourceDecodesToItsKind.
var samples = map[string]string{
	notification.ResourceCommandStatus: `{"resource":"device.command.status","event":"update","event_time":"20261201T100000Z",` +
		`"notify_data":{"header":{"device_id":"d-1"},"body":{"command_id":"c-1","status":"SENT"}}}`,
	notification.ResourceDeviceStatus: `{"resource":"device.status","event":"update","event_time":"20261201T100000Z",` +
		`"notify_data":{"header":{"device_id":"d-1"},"body":{"status":"ONLINE"}}}`,
	notification.ResourceMessageStatus: `{"resource":"device.message.status","event":"update","event_time":"20261201T100000Z",` +
		`"notify_data":{"header":{"device_id":"d-1"},"body":{"message_id":"m-1","status":"DELIVERED"}}}`,
}

// TestEveryResourceDecodesToItsKind holds the kinds table together: every
// resource a kind lists is classified as that kind, whose records name it,
// and no resource or name stands twice.
func TestEveryResourceDecodesToItsKind(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 10, 0, 1, 0, time.UTC)
	names := map[string]bool{}
	resources := map[string]bool{}
	for _, k := range kinds {
		require.False(t, names[k.Name], "kind %q stands twice", k.Name)
		names[k.Name] = true
		// A kind cmdtrack records itself (calls) reads no resource and has
		// no decoder; every other kind has both.
		require.Equal(t, len(k.Resources) == 0, k.Decode == nil, "kind %q: resources and a decoder go together", k.Name)
		for _, r := range k.Resources {
			require.False(t, resources[r], "resource %q stands twice", r)
			resources[r] = true
			body, ok := samples[r]
			require.True(t, ok, "no sample for resource %q: add one to samples", r)
			it := Classify([]byte(body), "test", at, Limits{MaxBodyBytes: 1 << 20})
			require.Nil(t, it.DeadLetter, "%s", r)
			require.NotNil(t, it.Record, "%s", r)
			require.Equal(t, k.Name, it.Record.Kind(), "%s", r)
			require.Equal(t, body, string(it.Payload()), "%s", r)
			require.Equal(t, at.Add(-time.Second), it.EventTime(), "%s", r)
		}
	}
	require.Equal(t, Kinds(), func() []string {
		var out []string
		for _, k := range kinds {
			out = append(out, k.Name)
		}
		return out
	}())
}

// TestEveryKindJudgesItsTimes: for every kind, each time its sample claims
// that lies further ahead than the skew makes a dead letter that names it.
func TestEveryKindJudgesItsTimes(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, k := range kinds {
		if len(k.Resources) == 0 {
			continue // recorded by cmdtrack, not decoded: notification's tests judge its times
		}
		body := samples[k.Resources[0]]
		it := Classify([]byte(body), "test", at.Add(-2*time.Hour), Limits{MaxBodyBytes: 1 << 20})
		require.NotNil(t, it.DeadLetter, "%s: an event time 2 h ahead", k.Name)
		require.Equal(t, notification.ClassFutureTime, it.DeadLetter.Class, "%s", k.Name)
		require.Contains(t, it.DeadLetter.Reason, "event time 2026-12-01T10:00:00Z is 2h0m0s ahead", k.Name)
	}
}
