package ingest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/notification"
)

// The resource a body names first is a hint of its kind only (decode): every
// body gets the answer it gets from the table alone (decodeByTable), the
// same record or the same dead letter, whatever it holds after its first
// member.
func TestDecodeHintChangesNoAnswer(t *testing.T) {
	t.Parallel()
	s := simulate.Generate(simulate.Config{Commands: 300, Seed: 11, OutOfOrder: 0.2, Duplicate: 0.1, Poison: 0.1,
		Foreign: 0.1, Presence: true, MessageShare: 0.5})
	var bodies [][]byte
	for _, m := range s.Messages {
		bodies = append(bodies, m.Body)
	}
	const msg = `{"resource":"device.message.status","event":"update","event_time":"20261201T100000Z",` +
		`"notify_data":{"header":{"device_id":"d-1"},"body":{"message_id":"m-1","status":"DELIVERED"}}`
	for _, b := range []string{
		msg + `}`,
		// A key given twice: the last one counts, as encoding/json reads it.
		msg + `,"resource":"device.command.status"}`,
		`{"resource":"device.command.status","event":"update","event_time":"20261201T100000Z",` +
			`"notify_data":{"header":{"device_id":"d-1"},"body":{"command_id":"c-1","status":"SENT"}},"resource":"device.message.status"}`,
		msg + `,"resource":"device.status"}`,
		msg + `,"resource":"something.else"}`,
		// Not JSON after the resource; not an object; cut short.
		msg + `,}`, msg, `{"resource":"device.message.status"`, `{"resource":"device.message.status",`,
		`{"resource":"device.message.status"}`, `{"resource":"device.message.status","notify_data":7}`,
		// Whitespace the platform's sample has, and escapes the hint does not read.
		" \n{ \"resource\" :\t\"device.message.status\" , \"event\":\"update\",\"event_time\":\"20261201T100000Z\"," +
			`"notify_data":{"header":{"device_id":"d-1"},"body":{"message_id":"m-1","status":"DELIVERED"}}}`,
		`{"resource":"device.message\u002estatus","event":"update","event_time":"20261201T100000Z",` +
			`"notify_data":{"header":{"device_id":"d-1"},"body":{"message_id":"m-1","status":"DELIVERED"}}}`,
		`{"resource":"device.status","event":"update","event_time":"20261201T100000Z",` +
			`"notify_data":{"header":{"device_id":"d-1"},"body":{"message_id":"m-1","status":"DELIVERED"}}}`,
		`{"resource":"device.message.status","event":"update","event_time":"20261201T100000Z",` +
			`"notify_data":{"header":{"device_id":"d-1"},"body":{"status":"ONLINE"}}}`,
		`{"resource":`, `{"resource":"`, `{`, ``, `"resource"`,
		// A later resource that is not a string: the command decoder (the
		// table's first) stops at it, a message's or a device status'
		// decoder at a field of its own body first.
		`{"resource":"device.message.status","event":"update","body":1,"resource":2}`,
		`{"resource":"device.status","event":"update","body":1,"resource":2}`,
		`{"resource":"device.message.status","event":"update","notify_data":{"body":{"message_id":7}},"resource":2}`,
	} {
		bodies = append(bodies, []byte(b))
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	hinted := 0
	for i, b := range bodies {
		rec, err := decode(b, at)
		want, wantErr := decodeByTable(b, at)
		require.Equal(t, fmt.Sprint(wantErr), fmt.Sprint(err), "body %d: %s", i, b)
		require.Equal(t, want, rec, "body %d: %s", i, b)
		if k := byResource[string(notification.LeadingResource(b))]; k != nil && k != &kinds[0] {
			hinted++
		}
	}
	require.Greater(t, hinted, len(bodies)/4, "the stream's device messages name their resource first")
}
