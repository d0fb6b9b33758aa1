package notification_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/notification"
)

// The fast path must answer exactly as encoding/json does (decodeStd), for
// every input: the same notification, field for field and key for key, or
// the same error. These tests hold it to that on the seeds, the
// simulator's traffic, edge cases written for the scanner, and mutations of
// all of those; every other test of DecodeAt does too (export_test.go).

// edgeBodies are cases written against the fast path's assumptions: what
// it must leave to encoding/json, and what it must read as encoding/json
// does.
var edgeBodies = []string{
	// Keys encoding/json would match to a field although they are spelled
	// otherwise: escaped, another case, Unicode folding (ſ is s, K is k).
	`{"\u0072esource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	`{"Resource":"device.property","resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	`{"reſource":"device.property","resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","EVENT":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","Status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"Body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"header":{"TAGS":{}},"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","\u0073tatus":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT","ſtatus":"FAILED"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT","Unrelated":1,"x\u0041":2}}}`,
	// Repeated members: encoding/json keeps the last string and merges
	// objects.
	`{"resource":"device.property","resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT"}},"notify_data":{"header":{"device_id":"d"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c"},"body":{"status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT"},"body":null}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"header":{"device_id":"a"},"header":{"product_id":"p"},"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"header":{"tags":[1],"tags":null},"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","request_id":"a","request_id":null,"notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.property","event":"report","event":"update","notify_data":{}}`,
	`{"resource":"device.property","event":"report","x":1,"x":2,"notify_data":{"body":5,"body":[]}}`,
	// Nulls and types.
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"header":null,"body":{"command_id":"c","status":"SENT","result":null}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"header":[],"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"header":{"node_id":7},"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT","result":  [ 1 , 2 ]  }}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"header":{"tags":  [ ]  },"body":{"command_id":"c","status":"SENT","result":"text"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"header":{"tags":"[]"},"body":{"command_id":"c","status":"SENT","result":0}}}`,
	`{"resource":"device.command.status","event":"update","event_time":null,"event_time_ms":"2024-01-01T00:00:00.5Z","notify_data":{"body":{"command_id":"c","status":"SENT","result":false}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"yesterday","event_time_ms":"2024-01-01T00:00:00.5Z","notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","event_time_ms":"","notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":null}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":"x"}`,
	`{"resource":"device.property","event":"report","notify_data":"x"}`,
	`{"resource":"device.property","event":7,"notify_data":{}}`,
	`{"resource":"device.property","event":null}`,
	`{"resource":"device.property"}`,
	`{"resource":"Device.Command.Status","event":"update"}`,
	`{"resource":"device.command.status ","event":"update"}`,
	`{"resource":null,"commandId":"c","result":{"resultCode":"SENT"}}`,
	`{"resource":"","commandId":"c","result":{"resultCode":"SENT"}}`,
	`{"resource":"device.command.status","event":"Update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	// Escapes in values the fast path keeps, and in those it does not.
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c\u0031","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"S\u0045NT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"header":{"device_id":"d\"q"},"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.\u0070roperty","event":"report"}`,
	`{"resource":"device.property","event":"rep\/ort"}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT","result":{"s":"\ud83d\ude00 \" \\ \/ \b \f \n \r \t"}}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT","result":{"s":"\ud800"}}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT","result":{"s":"\u0000"}}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT","result":{"s":"\x"}}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT","result":{"s":"\u00"}}}}`,
	`{"resource":"device.property","event":"report","notify_data":{"s":"\u0000"}}`,
	"{\"resource\":\"device.command.status\",\"event\":\"update\",\"event_time\":\"20240101T000000Z\",\"notify_data\":{\"body\":{\"command_id\":\"c\",\"status\":\"SENT\",\"result\":\"tab\there\"}}}",
	"{\"resource\":\"device.command.status\",\"event\":\"update\",\"event_time\":\"20240101T000000Z\",\"notify_data\":{\"body\":{\"command_id\":\"c\",\"status\":\"SENT\",\"result\":\"del\x7f\"}}}",
	// Statuses: case, look-alikes, what v5 never sends.
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"sUcCeSsFuL"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"ſent"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"CANCELED"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT "}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"","status":"SENT"}}}`,
	// Times.
	`{"resource":"device.command.status","event":"update","event_time_ms":"2024-01-01T08:00:00.123456789+08:00","notify_data":{"body":{"command_id":"c","status":"SENT","sent_time":"2023-12-31T23:59:59Z"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT","sent_time":"20240230T000000Z"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"21000101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	// Numbers, literals and structure.
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","n":[0,-0,1.5,-2e10,3E+2,4e-2,1e1000000],"notify_data":{"body":{"command_id":"c","status":"SENT","result":-0.0e0}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","n":01,"notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","n":1.,"notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","n":.5,"notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","n":+1,"notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","n":[true,false,null],"notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","n":nul,"notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","n":truex,"notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","n":[1,],"notify_data":{"body":{"command_id":"c","status":"SENT"}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT",}}}`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT"}}} `,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT"}}} x`,
	`{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT"}}}{}`,
	"\ufeff{\"resource\":\"device.property\",\"event\":\"report\"}",
	"\v{\"resource\":\"device.property\",\"event\":\"report\"}",
	"\u00a0{\"resource\":\"device.property\",\"event\":\"report\"}",
	" \t\r\n{ \"resource\" : \"device.property\" , \"event\" : \"report\" } \t\r\n",
	`{"resource":"device.property" "event":"report"}`,
	`{"resource":"device.property",,"event":"report"}`,
	`{"resource" "device.property"}`,
	`{resource:"device.property"}`,
	`{"resource":'device.property'}`,
	`{"resource":"device.property"`,
	`{"resource":"device.property`,
	`{"resource":"device.property","x":"\`,
	`{"resource":"device.property","x":[}`,
	`{"resource":"device.property","x":{]}`,
	`[{"resource":"device.property"}]`,
	`"device.property"`,
	`null`,
	`{}`,
	``,
	`{"commandId":"c","result":{"resultCode":"SENT"}}`,
	`{"notifyType":"messageConfirm","header":{"requestId":"r","status":"sent","timestamp":"20240102T030405Z"}}`,
}

// messageEdgeBodies are edgeBodies for device messages: both body shapes,
// and what the message's fast path must leave to encoding/json.
var messageEdgeBodies = func() []string {
	const head = `{"resource":"device.message.status","event":"update","event_time":"20240101T000000Z","request_id":"r",`
	const hdr = `"header":{"device_id":"d","product_id":"p","tags":[{"tag_key":"k"}]}`
	const body = `{"message_id":"m","name":"n","topic":"t/down","status":"FAILED","timestamp":"20240101T000001Z","error_info":{"error_code":"E1","error_msg":"no"}}`
	out := []string{
		head + `"notify_data":{` + hdr + `,"body":` + body + `}}`,
		head + `"notify_data":{` + hdr + `},"body":` + body + `}`,
		`{"body":` + body + `,"notify_data":{` + hdr + `},"event_time":"20240101T000000Z","event":"update","resource":"device.message.status"}`,
		head + `"notify_data":{` + hdr + `,"body":` + body + `},"body":{"message_id":"decoy","status":"PENDING","timestamp":"20991231T000000Z"}}`,
		head + `"notify_data":{` + hdr + `,"body":null},"body":` + body + `}`,
		head + `"notify_data":{` + hdr + `,"body":{}},"body":` + body + `}`,
		head + `"notify_data":{` + hdr + `}}`,
		head + `"notify_data":{` + hdr + `},"body":null}`,
	}
	// Each change is made to the first two: the body in notify_data, and
	// the body beside it.
	for _, c := range [][2]string{
		// In the body.
		{`"FAILED"`, `"delivered"`}, {`"FAILED"`, `"DELIVRED"`}, {`"FAILED"`, `"ſailed"`}, {`"FAILED"`, `null`},
		{`"FAILED"`, `1`}, {`"FAILED"`, `"FAIL\u0045D"`}, {`"FAILED"`, `""`},
		{`"m"`, `""`}, {`"m"`, `null`}, {`"m"`, `7`}, {`"m"`, `"m\u0031"`}, {`"m"`, `"m","message_id":"m2"`},
		{`"message_id"`, `"Message_ID"`}, {`"message_id"`, `"me\u0073sage_id"`}, {`"name"`, `"NAME"`},
		{`"n"`, `"\u0000"`}, {`"n"`, `"\ud800"`}, {`"n"`, `"é ✓"`}, {`"t/down"`, `"t\/down"`},
		{`"20240101T000001Z"`, `"yesterday"`}, {`"20240101T000001Z"`, `"2024-01-01T08:00:01.5+08:00"`},
		{`"20240101T000001Z"`, `null`}, {`"20240101T000001Z"`, `""`},
		{`{"error_code":"E1","error_msg":"no"}`, `null`}, {`{"error_code":"E1","error_msg":"no"}`, `"E1"`},
		{`{"error_code":"E1","error_msg":"no"}`, `{"ERROR_CODE":"E1"}`},
		{`{"error_code":"E1","error_msg":"no"}`, `{"error_code":"E1"},"error_info":{"error_msg":"no"}`},
		{`"error_msg":"no"`, `"error_msg":"no","x":[1,{"y":null}]`},
		{`"status"`, `"extra":{"status":"PENDING"},"status"`},
		// Around it.
		{`"device.message.status"`, `"device.message.Status"`}, {`"update"`, `"delete"`}, {`"update"`, `null`},
		{`"resource"`, `"RESOURCE"`}, {`"resource":`, `"resource":"device.status","resource":`},
		{`"request_id":"r",`, `"request_id":"r","Body":{},`}, {`"request_id":"r",`, `"request_id":"r","body":7,`},
		{`"20240101T000000Z"`, `"20240101T000000Z","event_time_ms":"2024-01-01T00:00:00.123Z"`},
		{`"20240101T000000Z"`, `"20240101T000000Z","event_time_ms":"later"`},
		{`"20240101T000000Z"`, `null`},
		{`"device_id":"d"`, `"device_id":""`}, {`"device_id":"d"`, `"device_id":"d\"q"`},
		{`"device_id":"d"`, `"Device_Id":"d"`}, {`[{"tag_key":"k"}]`, `{"tag_key":"k"}`}, {`[{"tag_key":"k"}]`, `null`},
		{`"header":`, `"header":null,"header":`}, {`"notify_data":{`, `"notify_data":null,"x":{`},
	} {
		out = append(out, replace(out[0], c[0], c[1]), replace(out[1], c[0], c[1]))
	}
	return out
}()

// nested returns v inside depth arrays.
func nested(depth int, v string) string {
	return strings.Repeat("[", depth) + v + strings.Repeat("]", depth)
}

// diffBodies are every body the differential tests start from.
func diffBodies(tb testing.TB) [][]byte {
	tb.Helper()
	var bodies [][]byte
	add := func(b []byte) {
		bodies = append(bodies, b)
		var compact bytes.Buffer
		if json.Compact(&compact, b) == nil && !bytes.Equal(compact.Bytes(), b) {
			bodies = append(bodies, compact.Bytes())
		}
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(tb, err)
	require.NotEmpty(tb, files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(tb, err)
		add(b)
	}
	for _, s := range edgeBodies {
		add([]byte(s))
	}
	for _, s := range messageEdgeBodies {
		add([]byte(s))
	}
	minimal := `{"resource":"device.command.status","event":"update","event_time":"20240101T000000Z","notify_data":{"body":{"command_id":"c","status":"SENT","result":%s}}}`
	for _, depth := range []int{1, 60, 63, 64, 65, 200, 10001} {
		add([]byte(strings.Replace(minimal, "%s", nested(depth, "1"), 1)))
		add([]byte(`{"resource":"device.property","event":"report","notify_data":` + nested(depth, "{}") + `}`))
	}
	add([]byte(keyBase))
	add(v5(tb, nil))
	// The simulator's traffic: valid notifications of every status, the
	// misspelt resource, poison messages and another resource's pushes.
	sim := simulate.Generate(simulate.Config{Commands: 60, Seed: 7, Poison: 0.3, Foreign: 0.3, Presence: true})
	for _, m := range sim.Messages {
		add(m.Body)
	}
	// Device messages: both body shapes, the decoy beside notify_data,
	// their poison.
	sim = simulate.Generate(simulate.Config{Commands: 40, Seed: 8, Poison: 0.2, MessageShare: 1})
	for _, m := range sim.Messages {
		add(m.Body)
	}
	return bodies
}

// agree decodes body with both decoders and fails t where they differ.
func agree(t *testing.T, body []byte) (sure bool) {
	t.Helper()
	at := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)
	in := bytes.Clone(body)
	n, sure, err := notification.DecodeFast(body)
	require.Equal(t, in, body, "the fast path must not modify its input")
	want, wantErr := notification.DecodeStd(body, at)
	if sure {
		require.Empty(t, notification.Disagreement(n, err, want, wantErr), "body %q", body)
	}
	got, gotErr := notification.DecodeAt(body, at)
	require.Empty(t, notification.Disagreement(got, gotErr, want, wantErr), "body %q", body)

	m, mSure, err := notification.DecodeMessageFast(body)
	require.Equal(t, in, body, "the message's fast path must not modify its input")
	wantM, wantErr := notification.DecodeMessageStd(body)
	if mSure {
		require.Empty(t, notification.MessageDisagreement(m, err, wantM, wantErr), "body %q", body)
	}
	gotM, gotErr := notification.DecodeMessage(body)
	require.Empty(t, notification.MessageDisagreement(gotM, gotErr, wantM, wantErr), "body %q", body)
	return sure || mSure
}

func TestFastMatchesStd(t *testing.T) {
	t.Parallel()
	sure := 0
	bodies := diffBodies(t)
	for _, body := range bodies {
		if agree(t, body) {
			sure++
		}
	}
	t.Logf("%d bodies, %d answered by the fast path", len(bodies), sure)
}

// The fast path must not give up on what it is for: the v5 shape as IoTDA
// and the simulator send it, and other resources' pushes.
func TestFastTakesTheCommonShapes(t *testing.T) {
	t.Parallel()
	for _, body := range [][]byte{readTestdata(t, "seed000.json"), []byte(keyBase), v5(t, nil)} {
		_, sure, err := notification.DecodeFast(body)
		require.True(t, sure, "%s", body)
		require.NoError(t, err)
	}
	sim := simulate.Generate(simulate.Config{Commands: 200, Seed: 11, Foreign: 0.2, Poison: 0.05})
	for _, m := range sim.Messages {
		_, sure, err := notification.DecodeFast(m.Body)
		switch m.Kind {
		case simulate.Valid:
			require.True(t, sure, "%s", m.Body)
			require.NoError(t, err)
		case simulate.Foreign:
			require.True(t, sure, "%s", m.Body)
			var skip *notification.SkipError
			require.ErrorAs(t, err, &skip)
		}
	}
}

// The message's fast path must take the shapes the platform documents and
// the simulator sends: the body in notify_data, beside it, and in both.
func TestFastMessageTakesTheCommonShapes(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"device_message_status_inside.json", "device_message_status_beside.json"} {
		_, sure, err := notification.DecodeMessageFast(readTestdata(t, name))
		require.True(t, sure, name)
		require.NoError(t, err)
	}
	sim := simulate.Generate(simulate.Config{Commands: 200, Seed: 12, Poison: 0.05, MessageShare: 1})
	taken := 0
	for _, m := range sim.Messages {
		if m.Kind != simulate.MessageChange {
			continue
		}
		_, sure, err := notification.DecodeMessageFast(m.Body)
		require.True(t, sure, "%s", m.Body)
		require.NoError(t, err)
		taken++
	}
	require.Positive(t, taken)
}

// mutate changes body in one of the ways that find a scanner's mistakes:
// a byte dropped, added or replaced (with one of JSON's own, or one that
// fools case-insensitive matching), a stretch repeated or dropped, a letter
// upper-cased.
func mutate(rng *rand.Rand, body []byte) []byte {
	if len(body) == 0 {
		return []byte(`{}`)
	}
	pieces := []string{
		`"`, `\`, `{`, `}`, `[`, `]`, `,`, `:`, ` `, "\n", "\t", "\v", `0`, `1`, `-`, `.`, `e`, `+`,
		`n`, `u`, `null`, `true`, `\u0000`, `\ud800`, `\u0041`, `\"`, `\\`, "ſ", "K", "\x00", "\x1f", "\x7f", "é",
		`"x":1,`, `"status":"SENT",`, `"resource":"device.property",`, `"header":null,`, `"body":{},`,
	}
	out := bytes.Clone(body)
	i := rng.IntN(len(out))
	switch rng.IntN(7) {
	case 0:
		return append(out[:i], out[i+1:]...)
	case 1:
		p := pieces[rng.IntN(len(pieces))]
		return append(out[:i], append([]byte(p), body[i:]...)...)
	case 2:
		p := pieces[rng.IntN(len(pieces))]
		return append(out[:i], append([]byte(p), body[min(len(body), i+len(p)):]...)...)
	case 3: // repeat a stretch (repeated members, among others)
		j := i + rng.IntN(min(len(body)-i, 80)+1)
		return append(out[:j], append(bytes.Clone(body[i:j]), body[j:]...)...)
	case 4:
		j := i + rng.IntN(min(len(body)-i, 40)+1)
		return append(out[:i], body[j:]...)
	case 5:
		if 'a' <= out[i] && out[i] <= 'z' {
			out[i] -= 'a' - 'A'
		}
		return out
	}
	out[i] = byte(rng.IntN(256))
	return out
}

func TestFastMatchesStdOnMutations(t *testing.T) {
	t.Parallel()
	rounds := 200
	if testing.Short() {
		rounds = 40
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var total, sure int
	for _, body := range diffBodies(t) {
		for range rounds {
			m := body
			for range 1 + rng.IntN(3) {
				m = mutate(rng, m)
			}
			total++
			if agree(t, m) {
				sure++
			}
		}
	}
	t.Logf("%d mutated bodies, %d answered by the fast path", total, sure)
}

func FuzzFastMatchesStd(f *testing.F) {
	for _, body := range diffBodies(f) {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		agree(t, body)
	})
}
