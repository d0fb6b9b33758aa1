package notification_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/notification"
)

// readTestdata returns a file under testdata/.
func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(tb, err)
	return b
}

// v5 builds a valid v5 command status notification, letting mod change the
// envelope, notify_data.header and notify_data.body (as maps) first.
func v5(tb testing.TB, mod func(env, header, body map[string]any)) []byte {
	tb.Helper()
	header := map[string]any{
		"device_id":  "d4922d8a-6c8e-4396-852c-164aefa6638f",
		"product_id": "ABC123456789",
		"app_id":     "app-1",
		"gateway_id": "gw-1",
		"node_id":    "node-1",
		"tags":       []any{map[string]any{"tag_key": "site", "tag_value": "north"}},
	}
	body := map[string]any{
		"command_id":     "cmd-1",
		"status":         "DELIVERED",
		"created_time":   "20240101T000000Z",
		"sent_time":      "20240101T000001Z",
		"delivered_time": "20240101T000002Z",
		"result":         map[string]any{"code": 0},
	}
	env := map[string]any{
		"resource":      notification.ResourceCommandStatus,
		"event":         "update",
		"event_time":    "20240101T000003Z",
		"event_time_ms": "2024-01-01T00:00:03.456Z",
		"request_id":    "req-1",
		"notify_data":   map[string]any{"header": header, "body": body},
	}
	if mod != nil {
		mod(env, header, body)
	}
	b, err := json.Marshal(env)
	require.NoError(tb, err)
	return b
}

func utc(y int, mo time.Month, d, h, mi, s, ns int) time.Time {
	return time.Date(y, mo, d, h, mi, s, ns, time.UTC)
}

func TestDecodeSeed000(t *testing.T) {
	t.Parallel()
	// testdata/seed000.json is the example request of the API reference page
	// (seeds/000), byte for byte, with its misspelled resource.
	body := readTestdata(t, "seed000.json")
	n, err := notification.Decode(body)
	require.NoError(t, err)

	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"CommandID", n.CommandID, "id"},
		{"Status", n.Status, notification.Successful},
		{"Rank", n.Rank(), int16(3)},
		{"EventTime", n.EventTime, utc(2019, 3, 3, 8, 10, 11, 0)},
		{"RequestID", n.RequestID, "3fe58d5e-8697-4849-a165-7db128f7e776"},
		{"DeviceID", n.DeviceID, "d4922d8a-6c8e-4396-852c-164aefa6638f"},
		{"ProductID", n.ProductID, "ABC123456789"},
		{"AppID", n.AppID, "d4922d8a-6c8e-4396-852c-164aefa6638f"},
		{"GatewayID", n.GatewayID, "d4922d8a-6c8e-4396-852c-164aefa6638f"},
		{"NodeID", n.NodeID, "ABC123456789"},
		{"CreatedTime", n.CreatedTime, utc(2015, 12, 12, 12, 12, 12, 0)},
		{"SentTime", n.SentTime, utc(2015, 12, 12, 12, 12, 12, 0)},
		{"DeliveredTime", n.DeliveredTime, utc(2015, 12, 12, 13, 12, 12, 0)},
		{"ResponseTime", n.ResponseTime, utc(2015, 12, 12, 13, 12, 12, 0)},
		{"EventTime location", n.EventTime.Location(), time.UTC},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, c.want, c.got)
		})
	}
	t.Run("Tags", func(t *testing.T) {
		t.Parallel()
		require.True(t, bytes.HasPrefix(n.Tags, []byte("[")), "tags %s", n.Tags)
		require.JSONEq(t, `[{"tag_value":"testTagValue","tag_key":"testTagName"}]`, string(n.Tags))
	})
	t.Run("Result", func(t *testing.T) {
		t.Parallel()
		require.JSONEq(t, `{"key":"value"}`, string(n.Result))
	})
	t.Run("Payload", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, body, n.Payload)
		require.Same(t, &body[0], &n.Payload[0], "Payload aliases body")
	})
}

func TestDecodeResourceSpellings(t *testing.T) {
	t.Parallel()
	for _, resource := range []string{"device.command.status", "device.commmad.status"} {
		t.Run(resource, func(t *testing.T) {
			t.Parallel()
			body := v5(t, func(env, _, _ map[string]any) { env["resource"] = resource })
			n, err := notification.Decode(body)
			require.NoError(t, err)
			require.Equal(t, "cmd-1", n.CommandID)
			require.Equal(t, notification.Delivered, n.Status)
		})
	}
}

func TestDecodeEventTime(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name               string
		eventTime, eventMS any // nil: field absent
		want               time.Time
	}{
		{"compact format only", "20190303T081011Z", nil, utc(2019, 3, 3, 8, 10, 11, 0)},
		{"ISO format only", nil, "2019-03-03T08:10:11.000Z", utc(2019, 3, 3, 8, 10, 11, 0)},
		{"event_time only, with empty event_time_ms", "20190303T081011Z", "", utc(2019, 3, 3, 8, 10, 11, 0)},
		{"event_time_ms wins over event_time", "20190303T081011Z", "2019-03-03T08:10:12.345Z", utc(2019, 3, 3, 8, 10, 12, 345e6)},
		{"event_time_ms wins even when earlier", "20190303T081011Z", "2019-03-03T08:10:10.999Z", utc(2019, 3, 3, 8, 10, 10, 999e6)},
		{"offset normalized to UTC", nil, "2019-03-03T16:10:11.123+08:00", utc(2019, 3, 3, 8, 10, 11, 123e6)},
		{"negative offset normalized to UTC", nil, "2019-03-02T22:10:11-10:00", utc(2019, 3, 3, 8, 10, 11, 0)},
		{"nanoseconds truncated to microseconds", nil, "2019-03-03T08:10:11.123456789Z", utc(2019, 3, 3, 8, 10, 11, 123456e3)},
		{"7 digits truncated, not rounded", nil, "2019-03-03T08:10:11.9999999Z", utc(2019, 3, 3, 8, 10, 11, 999999e3)},
		{"ISO in event_time", "2019-03-03T08:10:11Z", nil, utc(2019, 3, 3, 8, 10, 11, 0)},
		{"compact in event_time_ms", nil, "20190303T081011Z", utc(2019, 3, 3, 8, 10, 11, 0)},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			body := v5(t, func(env, _, _ map[string]any) {
				delete(env, "event_time")
				delete(env, "event_time_ms")
				if c.eventTime != nil {
					env["event_time"] = c.eventTime
				}
				if c.eventMS != nil {
					env["event_time_ms"] = c.eventMS
				}
			})
			n, err := notification.Decode(body)
			require.NoError(t, err)
			require.Equal(t, c.want, n.EventTime)
			require.Equal(t, time.UTC, n.EventTime.Location())
		})
	}
}

func TestDecodeStatuses(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want notification.Status
		rank int16
	}{
		{"PENDING", notification.Pending, 0},
		{"SENT", notification.Sent, 1},
		{"DELIVERED", notification.Delivered, 2},
		{"SUCCESSFUL", notification.Successful, 3},
		{"FAILED", notification.Failed, 3},
		{"TIMEOUT", notification.Timeout, 3},
		{"EXPIRED", notification.Expired, 3},
		{"pending", notification.Pending, 0},
		{"sent", notification.Sent, 1},
		{"delivered", notification.Delivered, 2},
		{"successful", notification.Successful, 3},
		{"failed", notification.Failed, 3},
		{"timeout", notification.Timeout, 3},
		{"expired", notification.Expired, 3},
		{"Successful", notification.Successful, 3},
	} {
		t.Run(c.in, func(t *testing.T) {
			t.Parallel()
			rank, ok := c.want.Rank()
			require.True(t, ok)
			require.Equal(t, c.rank, rank)

			body := v5(t, func(_, _, b map[string]any) { b["status"] = c.in })
			n, err := notification.Decode(body)
			require.NoError(t, err)
			require.Equal(t, c.want, n.Status)
			require.Equal(t, c.rank, n.Rank())
		})
	}
}

func TestStatusRankUnknown(t *testing.T) {
	t.Parallel()
	for _, s := range []notification.Status{"", "CANCELLED", "SUCCESS", "FAIL", "successful"} {
		t.Run(string(s), func(t *testing.T) {
			t.Parallel()
			_, ok := s.Rank()
			require.False(t, ok)
		})
	}
}

func TestDecodeOtherResources(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ resource, event, notifyData string }{
		{"device.property", "report", `{"header":{"device_id":"d1","product_id":"p1"},"body":{"services":[{"service_id":"Battery","properties":{"level":80},"event_time":"20240101T000000Z"}]}}`},
		{"device.message", "report", `{"header":{"device_id":"d1"},"body":{"topic":"t","content":"hello"}}`},
		{"device.status", "update", `{"header":{"device_id":"d1"},"body":{"status":"ONLINE","last_online_time":"20240101T000000Z"}}`},
		{"batchtask", "update", `{"body":{"task_id":"t1","status":"Success"}}`},
		{"device.message.status", "update", `{"header":{"device_id":"d1"},"body":{"message_id":"m1","status":"DELIVERED"}}`},
		// Even with a notify_data shaped like ours, only the resource counts.
		{"device", "update", `{"body":{"command_id":"cmd-1","status":"SUCCESSFUL"}}`},
	} {
		t.Run(c.resource+"/"+c.event, func(t *testing.T) {
			t.Parallel()
			body := []byte(`{"resource":"` + c.resource + `","event":"` + c.event +
				`","event_time":"20240101T000000Z","notify_data":` + c.notifyData + `}`)
			_, err := notification.Decode(body)
			var skip *notification.SkipError
			require.ErrorAs(t, err, &skip)
			require.Equal(t, c.resource, skip.Resource)
			require.Equal(t, c.event, skip.Event)
			require.Contains(t, err.Error(), c.resource)
		})
	}
}

// The legacy (v1 / OceanConnect) callbacks of seeds 001, 003 and 004 map
// onto v5 statuses. The async command request and response of seed 002 are
// JSON from the same pages that must not pass for notifications.
func TestDecodeLegacyFormats(t *testing.T) {
	t.Parallel()
	received := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)
	for _, c := range []struct {
		file, command, device string
		status                notification.Status
		at                    time.Time
		fromReceipt           bool
	}{
		{"seed001_legacy_cmd_status.json", "108a9c71462a48e09426e06e844d47ba", "92d3f8da-200a-4143-8d0d-591a7e11de6c",
			notification.Sent, received.Truncate(time.Microsecond), true},
		{"seed003_legacy_nb_cmd_status.json", "***********", "*********",
			notification.Delivered, received.Truncate(time.Microsecond), true},
		{"seed004_legacy_message_confirm.json", "***********", "",
			notification.Delivered, time.Date(2015, 12, 12, 12, 12, 12, 0, time.UTC), false},
	} {
		t.Run(c.file, func(t *testing.T) {
			t.Parallel()
			body := readTestdata(t, c.file)
			n, err := notification.DecodeAt(body, received)
			require.NoError(t, err)
			require.Equal(t, c.command, n.CommandID)
			require.Equal(t, c.device, n.DeviceID)
			require.Equal(t, c.status, n.Status)
			require.Equal(t, c.at, n.EventTime)
			require.Equal(t, c.fromReceipt, n.TimeFromReceipt)
			require.Equal(t, body, n.Payload)
			if c.fromReceipt {
				// A redelivered callback is the same notification.
				again, err := notification.DecodeAt(body, received.Add(time.Minute))
				require.NoError(t, err)
				require.Equal(t, n.Key(), again.Key())
			}
		})
	}
	for _, file := range []string{"seed002_async_command_request.json", "seed002_async_command_response.json"} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			_, err := notification.Decode(readTestdata(t, file))
			var derr *notification.Error
			require.ErrorAs(t, err, &derr)
			require.Equal(t, notification.ClassNotNotify, derr.Class)
			require.Contains(t, derr.Reason, "resource")
		})
	}
}

func TestLegacyCodes(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]notification.Status{
		"SENT": notification.Sent, "DELIVERED": notification.Delivered, "SUCCESS": notification.Successful,
		"SUCCESSFUL": notification.Successful, "FAIL": notification.Failed, "FAILED": notification.Failed,
		"TIMEOUT": notification.Timeout, "EXPIRED": notification.Expired, "CANCELED": notification.Canceled,
		"cancelled": notification.Canceled,
	} {
		body := []byte(`{"deviceId":"d","commandId":"c","result":{"resultCode":"` + code + `","resultDetail":{"x":1}}}`)
		n, err := notification.Decode(body)
		require.NoError(t, err, code)
		require.Equal(t, want, n.Status, code)
		require.JSONEq(t, `{"x":1}`, string(n.Result))
	}
	for status, want := range map[string]notification.Status{
		"sent": notification.Sent, "delivered": notification.Delivered, "executed": notification.Successful,
	} {
		body := []byte(`{"notifyType":"messageConfirm","header":{"requestId":"r1","from":"/devices/d9/services/s","to":"app","status":"` +
			status + `","timestamp":"20240102T030405Z"},"body":{"ok":true}}`)
		n, err := notification.Decode(body)
		require.NoError(t, err, status)
		require.Equal(t, want, n.Status)
		require.Equal(t, "d9", n.DeviceID)
		require.Equal(t, "r1", n.CommandID)
	}
	for body, class := range map[string]notification.Class{
		`{"deviceId":"d","commandId":"c","result":{"resultCode":"LOST"}}`:                                           notification.ClassUnknownStatus,
		`{"deviceId":"d","result":{"resultCode":"SENT"}}`:                                                           notification.ClassMissingField,
		`{"deviceId":"d","commandId":"c"}`:                                                                          notification.ClassMissingField,
		`{"notifyType":"messageConfirm","header":{"requestId":"r","status":"sent"}}`:                                notification.ClassMissingField,
		`{"notifyType":"messageConfirm","header":{"requestId":"r","status":"lost","timestamp":"20240102T030405Z"}}`: notification.ClassUnknownStatus,
		`{"hello":"world"}`: notification.ClassNotNotify,
	} {
		_, err := notification.Decode([]byte(body))
		var derr *notification.Error
		require.ErrorAs(t, err, &derr, body)
		require.Equal(t, class, derr.Class, body)
	}
	_, err := notification.Decode([]byte(`{"notifyType":"deviceDataChanged","deviceId":"d"}`))
	var skip *notification.SkipError
	require.ErrorAs(t, err, &skip)
	// A v5 notification never carries CANCELED.
	_, err = notification.Decode([]byte(`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"CANCELED"}}}`))
	var derr *notification.Error
	require.ErrorAs(t, err, &derr)
	require.Equal(t, notification.ClassUnknownStatus, derr.Class)
}

func TestDecodeDeadLetter(t *testing.T) {
	t.Parallel()
	valid := v5(t, nil)
	for _, c := range []struct {
		name    string
		body    []byte
		class   notification.Class
		mention string // the Reason must contain it
	}{
		{"empty body", []byte{}, notification.ClassEmpty, "empty"},
		{"nil body", nil, notification.ClassEmpty, "empty"},
		{"whitespace body", []byte(" \r\n\t  \n"), notification.ClassEmpty, "empty"},
		{"invalid UTF-8", bytes.Replace(valid, []byte(`"cmd-1"`), []byte("\"cmd-\xff\xfe1\""), 1), notification.ClassNotUTF8, "UTF-8"},
		{"Latin-1 body", []byte("{\"resource\":\"device.command.status\",\"event\":\"update\",\"request_id\":\"caf\xe9\"}"), notification.ClassNotUTF8, "UTF-8"},
		{"invalid JSON: truncated", valid[:len(valid)/2], notification.ClassInvalidJSON, "JSON"},
		{"invalid JSON: trailing comma", []byte(`{"resource":"device.command.status","event":"update",}`), notification.ClassInvalidJSON, "JSON"},
		{"invalid JSON: two objects", append(append([]byte{}, valid...), valid...), notification.ClassInvalidJSON, "JSON"},
		{"invalid JSON: HTML error page", []byte("<html><body>502 Bad Gateway</body></html>"), notification.ClassInvalidJSON, "JSON"},
		{"top-level array", []byte(`[` + string(valid) + `]`), notification.ClassInvalidJSON, "array"},
		{"top-level number", []byte(`42`), notification.ClassInvalidJSON, "number"},
		{"top-level string", []byte(`"device.command.status"`), notification.ClassInvalidJSON, "string"},
		{"top-level null", []byte(`null`), notification.ClassNotNotify, "resource"},
		{"missing resource", v5(t, func(env, _, _ map[string]any) { delete(env, "resource") }), notification.ClassNotNotify, "resource"},
		{"empty resource", v5(t, func(env, _, _ map[string]any) { env["resource"] = "" }), notification.ClassNotNotify, "resource"},
		{"resource of wrong type", v5(t, func(env, _, _ map[string]any) { env["resource"] = 7 }), notification.ClassInvalidField, "resource"},
		{"wrong event", v5(t, func(env, _, _ map[string]any) { env["event"] = "create" }), notification.ClassUnknownEvent, "event"},
		{"missing event", v5(t, func(env, _, _ map[string]any) { delete(env, "event") }), notification.ClassUnknownEvent, "event"},
		{"notify_data missing", v5(t, func(env, _, _ map[string]any) { delete(env, "notify_data") }), notification.ClassMissingField, "notify_data"},
		{"notify_data null", v5(t, func(env, _, _ map[string]any) { env["notify_data"] = nil }), notification.ClassMissingField, "notify_data"},
		{"notify_data a string", v5(t, func(env, _, _ map[string]any) { env["notify_data"] = "{}" }), notification.ClassInvalidField, "notify_data"},
		{"notify_data an array", v5(t, func(env, _, _ map[string]any) { env["notify_data"] = []any{} }), notification.ClassInvalidField, "notify_data"},
		{"body missing", v5(t, func(env, h, _ map[string]any) { env["notify_data"] = map[string]any{"header": h} }), notification.ClassMissingField, "notify_data.body"},
		{"body null", v5(t, func(env, h, _ map[string]any) { env["notify_data"] = map[string]any{"header": h, "body": nil} }), notification.ClassMissingField, "notify_data.body"},
		{"body a string", v5(t, func(env, h, _ map[string]any) { env["notify_data"] = map[string]any{"header": h, "body": "x"} }), notification.ClassInvalidField, "notify_data.body"},
		{"command_id missing", v5(t, func(_, _, b map[string]any) { delete(b, "command_id") }), notification.ClassMissingField, "command_id"},
		{"command_id empty", v5(t, func(_, _, b map[string]any) { b["command_id"] = "" }), notification.ClassMissingField, "command_id"},
		{"command_id of wrong type", v5(t, func(_, _, b map[string]any) { b["command_id"] = 12345 }), notification.ClassInvalidField, "notify_data.body.command_id"},
		{"status missing", v5(t, func(_, _, b map[string]any) { delete(b, "status") }), notification.ClassMissingField, "status"},
		{"status empty", v5(t, func(_, _, b map[string]any) { b["status"] = "" }), notification.ClassMissingField, "status"},
		{"unknown status", v5(t, func(_, _, b map[string]any) { b["status"] = "CANCELLED_X" }), notification.ClassUnknownStatus, "CANCELLED_X"},
		{"legacy status SUCCESS", v5(t, func(_, _, b map[string]any) { b["status"] = "SUCCESS" }), notification.ClassUnknownStatus, "SUCCESS"},
		{"status with spaces", v5(t, func(_, _, b map[string]any) { b["status"] = " SENT " }), notification.ClassUnknownStatus, "SENT"},
		{"status of wrong type", v5(t, func(_, _, b map[string]any) { b["status"] = 3 }), notification.ClassInvalidField, "notify_data.body.status"},
		{"header of wrong type", v5(t, func(env, _, b map[string]any) { env["notify_data"] = map[string]any{"header": "h", "body": b} }), notification.ClassInvalidField, "notify_data.header"},
		{"device_id of wrong type", v5(t, func(_, h, _ map[string]any) { h["device_id"] = true }), notification.ClassInvalidField, "notify_data.header.device_id"},
		{"event time missing", v5(t, func(env, _, _ map[string]any) { delete(env, "event_time"); delete(env, "event_time_ms") }), notification.ClassMissingField, "event_time"},
		{"event_time of wrong type", v5(t, func(env, _, _ map[string]any) { env["event_time"] = 20190303 }), notification.ClassInvalidField, "event_time"},
		{"unparseable event_time", v5(t, func(env, _, _ map[string]any) { delete(env, "event_time_ms"); env["event_time"] = "2019-13-45" }), notification.ClassInvalidTime, "event_time"},
		{"unparseable event_time_ms", v5(t, func(env, _, _ map[string]any) { env["event_time_ms"] = "1551600611000" }), notification.ClassInvalidTime, "event_time_ms"},
		{"unparseable sent_time", v5(t, func(_, _, b map[string]any) { b["sent_time"] = "20151212 121212" }), notification.ClassInvalidTime, "notify_data.body.sent_time"},
		{"unparseable created_time", v5(t, func(_, _, b map[string]any) { b["created_time"] = "yesterday" }), notification.ClassInvalidTime, "notify_data.body.created_time"},
		{"unparseable delivered_time", v5(t, func(_, _, b map[string]any) { b["delivered_time"] = "20151232T121212Z" }), notification.ClassInvalidTime, "notify_data.body.delivered_time"},
		{"unparseable response_time", v5(t, func(_, _, b map[string]any) { b["response_time"] = "2015-12-12T12:12:12" }), notification.ClassInvalidTime, "notify_data.body.response_time"},
		{"year 1900 in event_time_ms", v5(t, func(env, _, _ map[string]any) { env["event_time_ms"] = "1900-03-03T08:10:11.000Z" }), notification.ClassInvalidTime, "event_time_ms"},
		{"year 2500 in event_time_ms", v5(t, func(env, _, _ map[string]any) { env["event_time_ms"] = "2500-03-03T08:10:11.000Z" }), notification.ClassInvalidTime, "event_time_ms"},
		{"year 9999 in event_time", v5(t, func(env, _, _ map[string]any) { delete(env, "event_time_ms"); env["event_time"] = "99991231T235959Z" }), notification.ClassInvalidTime, "event_time"},
		{"year 1900 in created_time", v5(t, func(_, _, b map[string]any) { b["created_time"] = "19000101T000000Z" }), notification.ClassInvalidTime, "created_time"},
		{"year 9999 in response_time", v5(t, func(_, _, b map[string]any) { b["response_time"] = "99991231T235959Z" }), notification.ClassInvalidTime, "response_time"},
		{"tags an object", v5(t, func(_, h, _ map[string]any) { h["tags"] = map[string]any{"tag_key": "k", "tag_value": "v"} }), notification.ClassInvalidField, "tags"},
		{"tags a string", v5(t, func(_, h, _ map[string]any) { h["tags"] = "site=north" }), notification.ClassInvalidField, "tags"},
		{"tags a number", v5(t, func(_, h, _ map[string]any) { h["tags"] = 1 }), notification.ClassInvalidField, "tags"},
		{"NUL in command_id", v5(t, func(_, _, b map[string]any) { b["command_id"] = "cmd\x001" }), notification.ClassUnstorable, "NUL"},
		{"NUL in result", v5(t, func(_, _, b map[string]any) { b["result"] = map[string]any{"out": "a\x00"} }), notification.ClassUnstorable, "NUL"},
		{"NUL in a key", v5(t, func(_, _, b map[string]any) { b["result"] = map[string]any{"\x00": 1} }), notification.ClassUnstorable, "NUL"},
		{"escaped backslash then NUL", []byte(strings.Replace(string(valid), `"cmd-1"`, `"cmd-1\\\u0000"`, 1)), notification.ClassUnstorable, "NUL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := notification.Decode(c.body)
			require.Error(t, err)
			var derr *notification.Error
			require.ErrorAs(t, err, &derr)
			require.Equal(t, c.class, derr.Class, "reason: %s", derr.Reason)
			require.NotEmpty(t, derr.Reason)
			require.Contains(t, derr.Reason, c.mention)
			require.Equal(t, string(c.class)+": "+derr.Reason, err.Error())
		})
	}
}

// A backslash-escaped backslash followed by u0000 is the text `\u0000`, not
// a NUL: it is storable and must not be dead-lettered.
func TestDecodeLiteralBackslashU0000(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, raw, want string // raw: JSON string literal put in result.out
	}{
		{"escaped backslash", `"a\\u0000"`, `a\u0000`},
		{"two escaped backslashes", `"a\\\\u0000"`, `a\\u0000`},
		{"plain u0000", `"u0000"`, `u0000`},
		{"unicode escape of backslash", `"\u005cu0000"`, `\u0000`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			body := []byte(`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z",` +
				`"notify_data":{"body":{"command_id":"cmd-1","status":"SENT","result":{"out":` + c.raw + `}}}}`)
			n, err := notification.Decode(body)
			require.NoError(t, err)
			var result struct{ Out string }
			require.NoError(t, json.Unmarshal(n.Result, &result))
			require.Equal(t, c.want, result.Out)
		})
	}
}

func TestDecodeOptionalFieldsAbsent(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		body string
	}{
		{"minimal", `{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"PENDING"}}}`},
		{"nulls", `{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","request_id":null,"notify_data":{"header":{"tags":null},"body":{"command_id":"c","status":"PENDING","result":null,"sent_time":null}}}`},
		{"empty strings", `{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","request_id":"","notify_data":{"header":{"device_id":""},"body":{"command_id":"c","status":"PENDING","sent_time":""}}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			n, err := notification.Decode([]byte(c.body))
			require.NoError(t, err)
			require.Equal(t, "c", n.CommandID)
			require.Equal(t, utc(2024, 1, 1, 0, 0, 0, 0), n.EventTime)
			require.Empty(t, n.RequestID)
			require.Empty(t, n.DeviceID)
			require.Nil(t, n.Tags)
			require.Nil(t, n.Result)
			require.True(t, n.CreatedTime.IsZero())
			require.True(t, n.SentTime.IsZero())
			require.True(t, n.DeliveredTime.IsZero())
			require.True(t, n.ResponseTime.IsZero())
		})
	}
}

// keyBase is a compact notification; keyVariants below rewrite it.
const keyBase = `{"resource":"device.command.status","event":"update","event_time":"20190303T081011Z","event_time_ms":"2019-03-03T08:10:11.123Z","request_id":"r-1","notify_data":{"header":{"device_id":"d-1","product_id":"p-1","tags":[{"tag_key":"k","tag_value":"v"}]},"body":{"command_id":"c-1","status":"SUCCESSFUL","sent_time":"20190303T081000Z","result":{"a":1,"b":"x"}}}}`

func decodeKey(t *testing.T, body string) []byte {
	t.Helper()
	n, err := notification.Decode([]byte(body))
	require.NoError(t, err)
	k1, k2 := n.Key(), n.Key()
	require.Equal(t, k1, k2, "Key is deterministic")
	require.NotEmpty(t, k1)
	return k1
}

func TestKeySame(t *testing.T) {
	t.Parallel()
	base := decodeKey(t, keyBase)
	for _, c := range []struct{ name, body string }{
		{"identical", keyBase},
		{"reordered keys and whitespace outside result and tags", `
{
  "notify_data" : {
    "body" : { "result" : {"a":1,"b":"x"}, "status" : "SUCCESSFUL", "sent_time" : "20190303T081000Z", "command_id" : "c-1" },
    "header" : { "tags" : [{"tag_key":"k","tag_value":"v"}], "product_id" : "p-1", "device_id" : "d-1" }
  },
  "request_id" : "r-1",
  "event_time_ms" : "2019-03-03T08:10:11.123Z",
  "event_time" : "20190303T081011Z",
  "event" : "update",
  "resource" : "device.command.status"
}`},
		{"misspelled resource", strings.Replace(keyBase, "device.command.status", "device.commmad.status", 1)},
		{"lowercase status", strings.Replace(keyBase, `"SUCCESSFUL"`, `"successful"`, 1)},
		{"same instant with offset", strings.Replace(keyBase, `"2019-03-03T08:10:11.123Z"`, `"2019-03-03T16:10:11.123+08:00"`, 1)},
		{"same instant below microseconds", strings.Replace(keyBase, `"2019-03-03T08:10:11.123Z"`, `"2019-03-03T08:10:11.123000999Z"`, 1)},
		{"same sent_time in ISO format", strings.Replace(keyBase, `"20190303T081000Z"`, `"2019-03-03T08:10:00Z"`, 1)},
		{"unused event_time differs", strings.Replace(keyBase, `"20190303T081011Z"`, `"20190303T000000Z"`, 1)},
		{"surrounding whitespace of result", strings.Replace(keyBase, `"result":{"a":1,"b":"x"}`, `"result":  {"a":1,"b":"x"}  `, 1)},
		{"unknown extra field", strings.Replace(keyBase, `"request_id"`, `"x_extra":1,"request_id"`, 1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, base, decodeKey(t, c.body))
		})
	}
}

// Key's documentation says two deliveries of the same notification have the
// same key "whatever channel or JSON formatting they came with", but result
// and tags are hashed as raw bytes, so formatting inside them changes the key.
func TestKeySameFormattingInsideResultAndTags(t *testing.T) {
	t.Parallel()
	seed := readTestdata(t, "seed000.json")
	var compact bytes.Buffer
	require.NoError(t, json.Compact(&compact, seed))
	for _, c := range []struct{ name, a, b string }{
		{"seed000 pretty vs compact", string(seed), compact.String()},
		{"whitespace inside result", keyBase, strings.Replace(keyBase, `{"a":1,"b":"x"}`, `{ "a" : 1, "b" : "x" }`, 1)},
		{"key order inside result", keyBase, strings.Replace(keyBase, `{"a":1,"b":"x"}`, `{"b":"x","a":1}`, 1)},
		{"whitespace inside tags", keyBase, strings.Replace(keyBase, `[{"tag_key":"k","tag_value":"v"}]`, `[ {"tag_key": "k", "tag_value": "v"} ]`, 1)},
		{"key order inside tags", keyBase, strings.Replace(keyBase, `{"tag_key":"k","tag_value":"v"}`, `{"tag_value":"v","tag_key":"k"}`, 1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, decodeKey(t, c.a), decodeKey(t, c.b))
		})
	}
}

func TestKeyDiffers(t *testing.T) {
	t.Parallel()
	base := decodeKey(t, keyBase)
	for _, c := range []struct{ name, old, new string }{
		{"status", `"SUCCESSFUL"`, `"FAILED"`},
		{"event time", `"2019-03-03T08:10:11.123Z"`, `"2019-03-03T08:10:11.124Z"`},
		{"event time by a microsecond", `"2019-03-03T08:10:11.123Z"`, `"2019-03-03T08:10:11.123001Z"`},
		{"result value", `{"a":1,"b":"x"}`, `{"a":2,"b":"x"}`},
		{"result absent", `,"result":{"a":1,"b":"x"}`, ``},
		{"command id", `"c-1"`, `"c-2"`},
		{"request id", `"r-1"`, `"r-2"`},
		{"device id", `"d-1"`, `"d-2"`},
		{"product id", `"p-1"`, `"p-2"`},
		{"tags", `"tag_value":"v"`, `"tag_value":"w"`},
		{"sent time", `"sent_time":"20190303T081000Z"`, `"sent_time":"20190303T081001Z"`},
		{"sent time absent", `,"sent_time":"20190303T081000Z"`, ``},
		{"delivered time added", `"sent_time"`, `"delivered_time":"20190303T081000Z","sent_time"`},
		// Length-prefixed fields: moving text from one field to the next
		// must not collide.
		{"text moved between fields", `"device_id":"d-1","product_id":"p-1"`, `"device_id":"d-1p","product_id":"-1"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			require.Contains(t, keyBase, c.old)
			require.NotEqual(t, base, decodeKey(t, strings.Replace(keyBase, c.old, c.new, 1)))
		})
	}
}

func TestParseTime(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want time.Time // zero: an error is expected
	}{
		{"20151212T121212Z", utc(2015, 12, 12, 12, 12, 12, 0)},
		{"20190303T081011Z", utc(2019, 3, 3, 8, 10, 11, 0)},
		{"2019-03-03T08:10:11.000Z", utc(2019, 3, 3, 8, 10, 11, 0)},
		{"2019-03-03T08:10:11Z", utc(2019, 3, 3, 8, 10, 11, 0)},
		{"2019-03-03T08:10:11.5Z", utc(2019, 3, 3, 8, 10, 11, 5e8)},
		{"2019-03-03T16:10:11.123+08:00", utc(2019, 3, 3, 8, 10, 11, 123e6)},
		{"2019-03-03T08:10:11.123+00:00", utc(2019, 3, 3, 8, 10, 11, 123e6)},
		{"2019-03-03T08:10:11.123456Z", utc(2019, 3, 3, 8, 10, 11, 123456e3)},
		{"2019-03-03T08:10:11.123456789Z", utc(2019, 3, 3, 8, 10, 11, 123456e3)},
		{"2019-03-03T08:10:11.1234569Z", utc(2019, 3, 3, 8, 10, 11, 123456e3)},
		{"1970-01-01T00:00:00Z", utc(1970, 1, 1, 0, 0, 0, 0)},
		{"19700101T000000Z", utc(1970, 1, 1, 0, 0, 0, 0)},
		{"1970-01-01T08:00:00+08:00", utc(1970, 1, 1, 0, 0, 0, 0)},
		{"2099-12-31T23:59:59.999999999Z", utc(2099, 12, 31, 23, 59, 59, 999999e3)},
		{"20991231T235959Z", utc(2099, 12, 31, 23, 59, 59, 0)},
		{"20240229T120000Z", utc(2024, 2, 29, 12, 0, 0, 0)},

		{"", time.Time{}},
		{"now", time.Time{}},
		{"1551600611000", time.Time{}},
		{"20151212121212Z", time.Time{}},
		{"20151212T121212", time.Time{}},
		{"2015121xT121212Z", time.Time{}},
		{"20151312T121212Z", time.Time{}},
		{"20230229T120000Z", time.Time{}},
		{"20151212T251212Z", time.Time{}},
		{"2015-12-12", time.Time{}},
		{"2015-12-12 12:12:12", time.Time{}},
		{"2015-12-12T12:12:12", time.Time{}},
		{"2015/12/12T12:12:12Z", time.Time{}},
		{"Sat, 12 Dec 2015 12:12:12 GMT", time.Time{}},
		{"1969-12-31T23:59:59Z", time.Time{}},
		{"1969-12-31T23:59:59.9999999Z", time.Time{}},
		{"1970-01-01T07:59:59+08:00", time.Time{}},
		{"19000101T000000Z", time.Time{}},
		{"1900-01-01T00:00:00Z", time.Time{}},
		{"0001-01-01T00:00:00Z", time.Time{}},
		{"2100-01-01T00:00:00Z", time.Time{}},
		{"21000101T000000Z", time.Time{}},
		{"2500-01-01T00:00:00Z", time.Time{}},
		{"99991231T235959Z", time.Time{}},
		{"9999-12-31T23:59:59.999Z", time.Time{}},
	} {
		t.Run(c.in, func(t *testing.T) {
			t.Parallel()
			got, err := notification.ParseTime(c.in)
			if c.want.IsZero() {
				require.Error(t, err)
				require.Contains(t, err.Error(), `"`+c.in+`"`)
				require.True(t, got.IsZero())
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, got)
			require.Equal(t, time.UTC, got.Location())
		})
	}
}

// PostgreSQL's jsonb also refuses lone UTF-16 surrogate escapes ("Unicode low
// surrogate must follow a high surrogate"), checked against PostgreSQL 15; the
// decoder says so itself. (Numbers beyond numeric's range, such as 1e1000000,
// are left to the store, which isolates and dead-letters them: see
// store.TestDataErrorPoisonsOnlyItsMessage.)
func TestDecodeUnstorableForJSONB(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, raw string }{
		{"lone high surrogate", `"\ud800"`},
		{"lone high surrogate at end", `"x\uD800"`},
		{"lone low surrogate", `"\udc00x"`},
		{"reversed surrogate pair", `"\ude00\ud83d"`},
		{"high then non-surrogate", `"\ud800\u0041"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			body := []byte(`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z",` +
				`"notify_data":{"body":{"command_id":"cmd-1","status":"SENT","result":{"out":` + c.raw + `}}}}`)
			_, err := notification.Decode(body)
			var derr *notification.Error
			require.ErrorAs(t, err, &derr)
			require.Equal(t, notification.ClassUnstorable, derr.Class)
		})
	}
}

// A valid surrogate pair is storable.
func TestDecodeSurrogatePair(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{`"\ud83d\ude00"`, `"\uD83D\uDE00"`, `"😀"`} {
		t.Run(raw, func(t *testing.T) {
			t.Parallel()
			body := []byte(`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z",` +
				`"notify_data":{"body":{"command_id":"cmd-1","status":"SENT","result":{"out":` + raw + `}}}}`)
			n, err := notification.Decode(body)
			require.NoError(t, err)
			require.JSONEq(t, `{"out":"😀"}`, string(n.Result))
		})
	}
}
