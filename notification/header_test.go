package notification_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/notification"
)

// headedKind is a kind whose decoder places the header, and how to decode
// one of its notifications around a header: head + header + tail.
type headedKind struct {
	name, seed, head, otherCase, tail string
	device                            string // the seed's device
	// needsDevice: a notification without a header's device_id is a dead
	// letter, whose span does not matter.
	needsDevice bool
	decode      func(body []byte) (payload []byte, start, end int, err error)
}

var headedKinds = []headedKind{
	{
		name: "command", seed: "testdata/seed000.json", device: "d4922d8a-6c8e-4396-852c-164aefa6638f",
		head:      `{"resource":"device.command.status","event":"update","event_time":"20261101T000001Z","notify_data":{"header": `,
		otherCase: `{"resource":"device.command.status","event":"update","event_time":"20261101T000001Z","notify_data":{"Header":{"device_id":"x"}`,
		tail:      `,"body":{"command_id":"c1","status":"SENT"}}}`,
		decode: func(body []byte) ([]byte, int, int, error) {
			n, err := notification.Decode(body)
			return n.Payload, n.HeaderStart, n.HeaderEnd, err
		},
	},
	{
		name: "message", seed: "testdata/device_message_status_inside.json", device: "64f1a2b3c4d5e6f7a8b9c0d1_meter4711",
		needsDevice: true,
		head:        `{"resource":"device.message.status","event":"update","event_time":"20261101T000001Z","notify_data":{"header": `,
		otherCase:   `{"resource":"device.message.status","event":"update","event_time":"20261101T000001Z","notify_data":{"Header":{"device_id":"x"}`,
		tail:        `,"body":{"message_id":"m1","status":"DELIVERED"}}}`,
		decode: func(body []byte) ([]byte, int, int, error) {
			m, err := notification.DecodeMessage(body)
			return m.Payload, m.HeaderStart, m.HeaderEnd, err
		},
	},
}

// The decoders place notify_data.header's object in the payload (the store
// keeps it once), for every kind whose history keeps it so: exactly the
// object, whitespace around it left out, on the fast path and on
// encoding/json's (this package's tests hold each fast answer to
// encoding/json's, the span included).
func TestHeaderSpan(t *testing.T) {
	t.Parallel()
	for _, k := range headedKinds {
		seed, err := os.ReadFile(k.seed)
		require.NoError(t, err)
		for name, tc := range map[string]struct {
			body   string
			device string // "" when no span
		}{
			"seed":          {body: string(seed), device: k.device},
			"fast":          {body: k.head + `{"device_id":"dev-1","tags":[{"a":"}"}]} ` + k.tail, device: "dev-1"},
			"escaped value": {body: k.head + `{"device_id":"d\u00e9v"}` + k.tail, device: "dév"},
			"null":          {body: k.head + `null` + k.tail},
			"other case":    {body: k.otherCase + k.tail},
			"twice":         {body: k.head + `{"device_id":"x"},"header":{"device_id":"y"}` + k.tail},
		} {
			t.Run(k.name+"/"+name, func(t *testing.T) {
				payload, start, end, err := k.decode([]byte(tc.body))
				if k.needsDevice && name == "null" {
					require.Error(t, err)
					return
				}
				require.NoError(t, err)
				if tc.device == "" {
					require.Zero(t, end)
					return
				}
				raw := payload[start:end]
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
}
