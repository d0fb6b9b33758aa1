package notification_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/notification"
)

// TestDecodeMessageShapes reads the two published samples: the message's
// PENDING with its body beside notify_data, then its FAILED with the body
// inside, as the reference table puts it.
func TestDecodeMessageShapes(t *testing.T) {
	t.Parallel()
	beside := readTestdata(t, "device_message_status_beside.json")
	inside := readTestdata(t, "device_message_status_inside.json")
	for _, body := range [][]byte{beside, inside} {
		// The command decoder skips it, both paths alike (checkFast).
		_, err := notification.Decode(body)
		var skip *notification.SkipError
		require.ErrorAs(t, err, &skip)
		require.Equal(t, notification.ResourceMessageStatus, skip.Resource)
	}

	m, err := notification.DecodeMessage(beside)
	require.NoError(t, err)
	require.Equal(t, "64f1a2b3c4d5e6f7a8b9c0d1_meter4711", m.DeviceID)
	require.Equal(t, "1f6a7e2c-3b4d-4c5e-9f60-7a8b9c0d1e2f", m.MessageID)
	require.Equal(t, notification.MessagePending, m.Status)
	require.False(t, m.Status.Final())
	require.Equal(t, "set-reporting-interval", m.Name)
	require.Equal(t, "$oc/devices/64f1a2b3c4d5e6f7a8b9c0d1_meter4711/sys/messages/down", m.Topic)
	require.Equal(t, utc(2026, 12, 6, 10, 14, 30, 0), m.At)
	require.Equal(t, utc(2026, 12, 6, 10, 14, 30, 0), m.EventTime)
	require.Equal(t, "2b3c4d5e-6f70-4812-9a3b-4c5d6e7f8091", m.RequestID)
	require.Equal(t, "64f1a2b3c4d5e6f7a8b9c0d1", m.ProductID)
	require.Equal(t, "d4922d8a6d4b4a9fa7d1c3b2a1e0f9d8", m.AppID)
	require.Equal(t, "meter4711", m.NodeID)
	require.Empty(t, m.ErrorCode)
	require.Nil(t, m.Tags)
	require.Equal(t, beside, m.Payload)

	m, err = notification.DecodeMessage(inside)
	require.NoError(t, err)
	require.Equal(t, notification.MessageFailed, m.Status)
	require.True(t, m.Status.Final())
	require.Equal(t, utc(2026, 12, 6, 10, 15, 12, 0), m.At)
	require.Equal(t, utc(2026, 12, 6, 10, 15, 12, 345e6), m.EventTime, "event_time_ms")
	require.Equal(t, "IOTDA.014112", m.ErrorCode)
	require.Equal(t, "the device has not subscribed to the topic", m.ErrorMsg)
	require.JSONEq(t, `[{"tag_key":"site","tag_value":"plant-7"}]`, string(m.Tags))
}

// messageBody builds a device message status change with the body in
// notify_data, letting mod change the envelope, header and body first.
func messageBody(tb testing.TB, mod func(env, header, body map[string]any)) []byte {
	tb.Helper()
	header := map[string]any{"device_id": "dev-1", "product_id": "p-1"}
	body := map[string]any{"message_id": "m-1", "name": "cfg", "topic": "t/down", "status": "FAILED",
		"timestamp": "20240101T010000Z", "error_info": map[string]any{"error_code": "IOTDA.014112", "error_msg": "not subscribed"}}
	env := map[string]any{
		"resource": "device.message.status", "event": "update", "event_time": "20240101T010001Z",
		"notify_data": map[string]any{"header": header, "body": body},
	}
	if mod != nil {
		mod(env, header, body)
	}
	b, err := json.Marshal(env)
	require.NoError(tb, err)
	return b
}

func TestDecodeMessageRules(t *testing.T) {
	t.Parallel()
	t.Run("time of the status", func(t *testing.T) {
		t.Parallel()
		m, err := notification.DecodeMessage(messageBody(t, nil))
		require.NoError(t, err)
		require.Equal(t, utc(2024, 1, 1, 1, 0, 0, 0), m.At)
		require.Equal(t, utc(2024, 1, 1, 1, 0, 1, 0), m.EventTime)
		// Without a timestamp the status is timed by the event.
		m, err = notification.DecodeMessage(messageBody(t, func(_, _, b map[string]any) { delete(b, "timestamp") }))
		require.NoError(t, err)
		require.Equal(t, m.EventTime, m.At)
	})
	t.Run("status in any case", func(t *testing.T) {
		t.Parallel()
		m, err := notification.DecodeMessage(messageBody(t, func(_, _, b map[string]any) { b["status"] = "delivered" }))
		require.NoError(t, err)
		require.Equal(t, notification.MessageDelivered, m.Status)
	})
	t.Run("notify_data's body wins over the one beside it", func(t *testing.T) {
		t.Parallel()
		m, err := notification.DecodeMessage(messageBody(t, func(env, _, _ map[string]any) {
			env["body"] = map[string]any{"message_id": "m-2", "status": "PENDING"}
		}))
		require.NoError(t, err)
		require.Equal(t, "m-1", m.MessageID)
	})
	t.Run("other resources are skipped", func(t *testing.T) {
		t.Parallel()
		_, err := notification.DecodeMessage(messageBody(t, func(env, _, _ map[string]any) { env["resource"] = "device.status" }))
		var skip *notification.SkipError
		require.ErrorAs(t, err, &skip)
	})
	for _, c := range []struct {
		name   string
		mod    func(env, header, body map[string]any)
		class  notification.Class
		reason string
	}{
		{"another event", func(env, _, _ map[string]any) { env["event"] = "delete" }, notification.ClassUnknownEvent, `event "delete"`},
		{"no notify_data", func(env, _, _ map[string]any) { delete(env, "notify_data") }, notification.ClassMissingField, "notify_data is missing"},
		{"no body", func(env, _, _ map[string]any) {
			env["notify_data"] = map[string]any{"header": map[string]any{"device_id": "d"}}
		}, notification.ClassMissingField, "body"},
		{"no device", func(_, h, _ map[string]any) { delete(h, "device_id") }, notification.ClassMissingField, "device_id"},
		// A message is named device_id/message_id (webhooks' subjects, the
		// console's /messages/{device}/{id}), split at the first '/'.
		{"a '/' in the device id", func(_, h, _ map[string]any) { h["device_id"] = "prod_node/1" }, notification.ClassInvalidField,
			`notify_data.header.device_id "prod_node/1" holds '/'`},
		{"no message id", func(_, _, b map[string]any) { delete(b, "message_id") }, notification.ClassMissingField, "notify_data.body.message_id"},
		{"no status", func(_, _, b map[string]any) { delete(b, "status") }, notification.ClassMissingField, "notify_data.body.status"},
		{"unknown status", func(_, _, b map[string]any) { b["status"] = "SENT" }, notification.ClassUnknownStatus, `"SENT"`},
		{"status of the wrong type", func(_, _, b map[string]any) { b["status"] = 1 }, notification.ClassInvalidField, "status"},
		{"error_info of the wrong type", func(_, _, b map[string]any) { b["error_info"] = "x" }, notification.ClassInvalidField, "error_info"},
		{"no event time", func(env, _, _ map[string]any) { delete(env, "event_time") }, notification.ClassMissingField, "event_time"},
		{"bad event time", func(env, _, _ map[string]any) { env["event_time"] = "yesterday" }, notification.ClassInvalidTime, "event_time"},
		{"bad timestamp", func(_, _, b map[string]any) { b["timestamp"] = "soon" }, notification.ClassInvalidTime, "notify_data.body.timestamp"},
		{"tags not an array", func(_, h, _ map[string]any) { h["tags"] = map[string]any{} }, notification.ClassInvalidField, "tags"},
		{"NUL in a string", func(_, _, b map[string]any) { b["name"] = "a\x00b" }, notification.ClassUnstorable, "NUL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := notification.DecodeMessage(messageBody(t, c.mod))
			var bad *notification.Error
			require.ErrorAs(t, err, &bad)
			require.Equal(t, c.class, bad.Class, bad.Reason)
			require.Contains(t, bad.Reason, c.reason)
		})
	}
	for _, body := range []string{"", "  ", "\xff", "[]", `{"resource":`} {
		_, err := notification.DecodeMessage([]byte(body))
		var bad *notification.Error
		require.ErrorAs(t, err, &bad, "body %q", body)
	}
}

// Key covers every stored field, and only them; both shapes of one change
// are one change.
func TestMessageKey(t *testing.T) {
	t.Parallel()
	base, err := notification.DecodeMessage(messageBody(t, nil))
	require.NoError(t, err)
	reformatted := bytes.ReplaceAll(messageBody(t, nil), []byte(","), []byte(",\n "))
	same, err := notification.DecodeMessage(reformatted)
	require.NoError(t, err)
	require.Equal(t, base.Key(), same.Key(), "formatting does not change the key")
	beside, err := notification.DecodeMessage(messageBody(t, func(env, _, b map[string]any) {
		env["notify_data"] = map[string]any{"header": env["notify_data"].(map[string]any)["header"]}
		env["body"] = b
	}))
	require.NoError(t, err)
	require.Equal(t, base.Key(), beside.Key(), "the body beside notify_data is the same change")
	for _, mod := range []func(env, header, body map[string]any){
		func(_, _, b map[string]any) { b["status"] = "TIMEOUT" },
		func(_, _, b map[string]any) { b["timestamp"] = "20240101T010002Z" },
		func(_, _, b map[string]any) { b["message_id"] = "m-2" },
		func(_, _, b map[string]any) { b["name"] = "other" },
		func(_, _, b map[string]any) { b["topic"] = "other" },
		func(_, _, b map[string]any) {
			b["error_info"] = map[string]any{"error_code": "X", "error_msg": "not subscribed"}
		},
		func(_, _, b map[string]any) {
			b["error_info"] = map[string]any{"error_code": "IOTDA.014112", "error_msg": "x"}
		},
		func(env, _, _ map[string]any) { env["event_time"] = "20240101T010002Z" },
		func(env, _, _ map[string]any) { env["request_id"] = "r" },
		func(_, h, _ map[string]any) { h["device_id"] = "dev-2" },
		func(_, h, _ map[string]any) { h["product_id"] = "p-2" },
		func(_, h, _ map[string]any) { h["app_id"] = "a" },
		func(_, h, _ map[string]any) { h["gateway_id"] = "g" },
		func(_, h, _ map[string]any) { h["node_id"] = "n" },
		func(_, h, _ map[string]any) { h["tags"] = []any{} },
	} {
		m, err := notification.DecodeMessage(messageBody(t, mod))
		require.NoError(t, err)
		require.NotEqual(t, base.Key(), m.Key(), "%+v", m)
	}
}

func FuzzMessage(f *testing.F) {
	f.Add(readTestdata(f, "device_message_status_beside.json"))
	f.Add(readTestdata(f, "device_message_status_inside.json"))
	f.Add(messageBody(f, nil))
	minTime := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		t.Parallel()
		in := bytes.Clone(body)
		m, err := notification.DecodeMessage(body) // must not panic
		require.Equal(t, in, body, "DecodeMessage must not modify its input")
		switch e := err.(type) { //nolint:errorlint // its contract: one of these types, never wrapped
		case nil:
			require.NotEmpty(t, m.DeviceID)
			require.NotEmpty(t, m.MessageID)
			_, known := m.Status.Rank()
			require.True(t, known)
			for _, tm := range []time.Time{m.At, m.EventTime} {
				require.False(t, tm.Before(minTime))
				require.True(t, tm.Before(maxTime))
			}
			require.True(t, json.Valid(m.Payload))
			if m.Tags != nil {
				require.Equal(t, byte('['), m.Tags[0])
			}
			require.Len(t, m.Key(), 32)
		case *notification.SkipError:
			require.NotEqual(t, notification.ResourceMessageStatus, e.Resource)
		case *notification.Error:
			require.NotEmpty(t, e.Class)
			require.NotEmpty(t, e.Reason)
		default:
			t.Fatalf("DecodeMessage returned %T: %v", err, err)
		}
	})
}
