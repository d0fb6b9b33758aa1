package notification_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/notification"
)

// presenceShapes are the two places the platform's documentation puts a
// device status change's body: in notify_data (the reference table), and
// beside notify_data (the page's sample).
var presenceShapes = []string{"device_status_inside.json", "device_status_beside.json"}

func TestDecodePresenceShapes(t *testing.T) {
	t.Parallel()
	for _, name := range presenceShapes {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			body := readTestdata(t, name)
			// The command decoder skips it, both paths alike (checkFast).
			_, err := notification.Decode(body)
			var skip *notification.SkipError
			require.ErrorAs(t, err, &skip)
			require.Equal(t, notification.ResourceDeviceStatus, skip.Resource)

			p, err := notification.DecodePresence(body)
			require.NoError(t, err)
			require.Equal(t, "dev-presence-1", p.DeviceID)
			require.Equal(t, notification.Online, p.Status)
			require.Equal(t, utc(2024, 3, 5, 10, 11, 12, 300e6), p.Since, "status_update_time")
			require.Equal(t, utc(2024, 3, 5, 10, 11, 12, 345e6), p.EventTime, "event_time_ms")
			require.Equal(t, utc(2024, 3, 5, 9, 0, 0, 0), p.LastOnlineTime)
			require.Equal(t, "9a0c7c52-2a4b-4f0e-9d57-1f2e3d4c5b6a", p.RequestID)
			require.Equal(t, "PROD0001", p.ProductID)
			require.Equal(t, "app-presence", p.AppID)
			require.Equal(t, "dev-presence-1", p.GatewayID)
			require.Equal(t, "NODE0001", p.NodeID)
			require.JSONEq(t, `[{"tag_key":"site","tag_value":"north"}]`, string(p.Tags))
			require.Equal(t, body, p.Payload)
		})
	}
	// Both shapes of one change are the same change.
	inside, err := notification.DecodePresence(readTestdata(t, presenceShapes[0]))
	require.NoError(t, err)
	beside, err := notification.DecodePresence(readTestdata(t, presenceShapes[1]))
	require.NoError(t, err)
	require.Equal(t, inside.Key(), beside.Key())
}

// presenceBody builds a device status change with the body in notify_data,
// letting mod change the envelope, header and body first.
func presenceBody(tb testing.TB, mod func(env, header, body map[string]any)) []byte {
	tb.Helper()
	header := map[string]any{"device_id": "dev-1", "product_id": "p-1"}
	body := map[string]any{"status": "OFFLINE", "last_online_time": "20240101T000000Z",
		"status_update_time": "2024-01-01T01:00:00.500Z"}
	env := map[string]any{
		"resource": "device.status", "event": "update", "event_time": "20240101T010001Z",
		"notify_data": map[string]any{"header": header, "body": body},
	}
	if mod != nil {
		mod(env, header, body)
	}
	b, err := json.Marshal(env)
	require.NoError(tb, err)
	return b
}

func TestDecodePresenceRules(t *testing.T) {
	t.Parallel()
	t.Run("time of the change", func(t *testing.T) {
		t.Parallel()
		p, err := notification.DecodePresence(presenceBody(t, nil))
		require.NoError(t, err)
		require.Equal(t, utc(2024, 1, 1, 1, 0, 0, 500e6), p.Since)
		require.Equal(t, utc(2024, 1, 1, 1, 0, 1, 0), p.EventTime)

		// Without status_update_time the change is timed by the event.
		p, err = notification.DecodePresence(presenceBody(t, func(_, _, b map[string]any) { delete(b, "status_update_time") }))
		require.NoError(t, err)
		require.Equal(t, p.EventTime, p.Since)
	})
	t.Run("status in any case", func(t *testing.T) {
		t.Parallel()
		p, err := notification.DecodePresence(presenceBody(t, func(_, _, b map[string]any) { b["status"] = "abnormal" }))
		require.NoError(t, err)
		require.Equal(t, notification.Abnormal, p.Status)
	})
	t.Run("notify_data's body wins over the one beside it", func(t *testing.T) {
		t.Parallel()
		p, err := notification.DecodePresence(presenceBody(t, func(env, _, _ map[string]any) {
			env["body"] = map[string]any{"status": "ONLINE"}
		}))
		require.NoError(t, err)
		require.Equal(t, notification.Offline, p.Status)
	})
	t.Run("other resources are skipped", func(t *testing.T) {
		t.Parallel()
		_, err := notification.DecodePresence(presenceBody(t, func(env, _, _ map[string]any) { env["resource"] = "device.property" }))
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
		{"no status", func(_, _, b map[string]any) { delete(b, "status") }, notification.ClassMissingField, "notify_data.body.status"},
		{"unknown status", func(_, _, b map[string]any) { b["status"] = "SLEEPING" }, notification.ClassUnknownStatus, "SLEEPING"},
		{"status of the wrong type", func(_, _, b map[string]any) { b["status"] = 1 }, notification.ClassInvalidField, "status"},
		{"no event time", func(env, _, _ map[string]any) { delete(env, "event_time") }, notification.ClassMissingField, "event_time"},
		{"bad event time", func(env, _, _ map[string]any) { env["event_time"] = "yesterday" }, notification.ClassInvalidTime, "event_time"},
		{"bad change time", func(_, _, b map[string]any) { b["status_update_time"] = "soon" }, notification.ClassInvalidTime, "status_update_time"},
		{"bad last online time", func(_, _, b map[string]any) { b["last_online_time"] = "20241301T000000Z" }, notification.ClassInvalidTime, "last_online_time"},
		{"tags not an array", func(_, h, _ map[string]any) { h["tags"] = map[string]any{} }, notification.ClassInvalidField, "tags"},
		{"NUL in a string", func(_, h, _ map[string]any) { h["node_id"] = "a\x00b" }, notification.ClassUnstorable, "NUL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := notification.DecodePresence(presenceBody(t, c.mod))
			var bad *notification.Error
			require.ErrorAs(t, err, &bad)
			require.Equal(t, c.class, bad.Class, bad.Reason)
			require.Contains(t, bad.Reason, c.reason)
		})
	}
	for _, body := range []string{"", "  ", "\xff", "[]", `{"resource":`} {
		_, err := notification.DecodePresence([]byte(body))
		var bad *notification.Error
		require.ErrorAs(t, err, &bad, "body %q", body)
	}
}

// Key covers every stored field, and only them.
func TestPresenceKey(t *testing.T) {
	t.Parallel()
	base, err := notification.DecodePresence(presenceBody(t, nil))
	require.NoError(t, err)
	reformatted := bytes.ReplaceAll(presenceBody(t, nil), []byte(","), []byte(",\n "))
	same, err := notification.DecodePresence(reformatted)
	require.NoError(t, err)
	require.Equal(t, base.Key(), same.Key(), "formatting does not change the key")
	for _, mod := range []func(env, header, body map[string]any){
		func(_, _, b map[string]any) { b["status"] = "ONLINE" },
		func(_, _, b map[string]any) { b["status_update_time"] = "2024-01-01T01:00:00.501Z" },
		func(_, _, b map[string]any) { b["last_online_time"] = "20240101T000001Z" },
		func(env, _, _ map[string]any) { env["event_time"] = "20240101T010002Z" },
		func(env, _, _ map[string]any) { env["request_id"] = "r" },
		func(_, h, _ map[string]any) { h["device_id"] = "dev-2" },
		func(_, h, _ map[string]any) { h["app_id"] = "a" },
		func(_, h, _ map[string]any) { h["tags"] = []any{} },
	} {
		p, err := notification.DecodePresence(presenceBody(t, mod))
		require.NoError(t, err)
		require.NotEqual(t, base.Key(), p.Key(), "%+v", p)
	}
}

func FuzzPresence(f *testing.F) {
	for _, name := range presenceShapes {
		f.Add(readTestdata(f, name))
	}
	f.Add(presenceBody(f, nil))
	f.Add([]byte(strings.Replace(string(presenceBody(f, nil)), "OFFLINE", "FROZEN", 1)))
	minTime := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		t.Parallel()
		in := bytes.Clone(body)
		p, err := notification.DecodePresence(body) // must not panic
		require.Equal(t, in, body, "DecodePresence must not modify its input")
		switch e := err.(type) { //nolint:errorlint // its contract: one of these types, never wrapped
		case nil:
			require.NotEmpty(t, p.DeviceID)
			require.NotEmpty(t, p.Status)
			for _, tm := range []time.Time{p.Since, p.EventTime} {
				require.False(t, tm.Before(minTime))
				require.True(t, tm.Before(maxTime))
			}
			require.True(t, json.Valid(p.Payload))
			if p.Tags != nil {
				require.Equal(t, byte('['), p.Tags[0])
			}
			require.Len(t, p.Key(), 32)
		case *notification.SkipError:
			require.NotEqual(t, notification.ResourceDeviceStatus, e.Resource)
		case *notification.Error:
			require.NotEmpty(t, e.Class)
			require.NotEmpty(t, e.Reason)
		default:
			t.Fatalf("DecodePresence returned %T: %v", err, err)
		}
	})
}
