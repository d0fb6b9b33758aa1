package notification_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/notification"
)

// The decoders place notify_data.header's object in the payload (the store
// keeps it once): exactly the object, whitespace around it left out, on the
// fast path and on encoding/json's (this package's tests hold each fast
// answer to encoding/json's, the span included).
func TestHeaderSpan(t *testing.T) {
	t.Parallel()
	seed, err := os.ReadFile("testdata/seed000.json")
	require.NoError(t, err)
	const tail = `,"body":{"command_id":"c1","status":"SENT"}}}`
	const head = `{"resource":"device.command.status","event":"update","event_time":"20261101T000001Z","notify_data":{"header": `
	for name, tc := range map[string]struct {
		body   string
		device string // "" when no span
	}{
		"seed":          {body: string(seed), device: "d4922d8a-6c8e-4396-852c-164aefa6638f"},
		"fast":          {body: head + `{"device_id":"dev-1","tags":[{"a":"}"}]} ` + tail, device: "dev-1"},
		"escaped value": {body: head + `{"device_id":"d\u00e9v"}` + tail, device: "dév"},
		"null":          {body: head + `null` + tail},
		"other case":    {body: `{"resource":"device.command.status","event":"update","event_time":"20261101T000001Z","notify_data":{"Header":{"device_id":"x"}` + tail},
		"twice":         {body: head + `{"device_id":"x"},"header":{"device_id":"y"}` + tail},
	} {
		t.Run(name, func(t *testing.T) {
			n, err := notification.Decode([]byte(tc.body))
			require.NoError(t, err)
			if tc.device == "" {
				require.Zero(t, n.HeaderEnd)
				return
			}
			raw := n.Payload[n.HeaderStart:n.HeaderEnd]
			require.Equal(t, byte('{'), raw[0])
			require.Equal(t, byte('}'), raw[len(raw)-1])
			var h struct {
				DeviceID string `json:"device_id"`
			}
			require.NoError(t, json.Unmarshal(raw, &h))
			require.Equal(t, tc.device, h.DeviceID)
		})
	}
}
