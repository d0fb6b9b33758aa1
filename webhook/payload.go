package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/cmdtrack/cmdtrack/store"
)

// Data reads the row an event is about as the console's JSON gives it (a
// command, a device message, a call), at delivery time: typ is the event's
// type, subject the row's name (a command id, "device_id/message_id", a
// call id). A row that is gone (retention) is nil and no error.
type Data func(ctx context.Context, typ, subject string) (json.RawMessage, error)

// Outcome is what the event itself says, in every payload's data: the row
// may have moved on since.
type Outcome struct {
	// Status is the status the event is about: the final status reached,
	// or the one that replaced FromStatus.
	Status string `json:"status"`
	// FromStatus is the final status replaced (*.final_changed only).
	FromStatus string `json:"from_status,omitempty"`
}

// Payload is the body of a request (Standard Webhooks' shape).
type Payload struct {
	// Type is the event's type: command.finished, ...
	Type string `json:"type"`
	// Timestamp is when the event happened (the merge wrote it), not when
	// it is sent.
	Timestamp time.Time `json:"timestamp"`
	// Data is {"id": subject, the row's keys (see Data), "outcome": (see
	// Outcome)}; a row gone is {"id": subject, "outcome": ...}.
	Data json.RawMessage `json:"data"`
}

// errNotObject says Data gave something other than a JSON object.
var errNotObject = errors.New("the row's JSON is not an object")

// body is the request body of ev, row being what Data gave for it.
func body(ev *store.WebhookEvent, row json.RawMessage) ([]byte, error) {
	outcome, err := json.Marshal(Outcome{Status: ev.Status, FromStatus: ev.FromStatus})
	if err != nil {
		return nil, err
	}
	var data []byte
	if row == nil {
		data, err = json.Marshal(struct {
			ID      string          `json:"id"`
			Outcome json.RawMessage `json:"outcome"`
		}{ev.Subject, outcome})
		if err != nil {
			return nil, err
		}
	} else {
		// The id goes first and the outcome last, the row's own keys kept
		// in their order between: a receiver reads data.id whatever the
		// type (a command's, a message's, a call's), as when the row is
		// gone.
		obj := bytes.TrimSpace(row)
		if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' || !json.Valid(obj) {
			return nil, errNotObject
		}
		id, err := json.Marshal(ev.Subject)
		if err != nil {
			return nil, err
		}
		inner := bytes.TrimSpace(obj[1 : len(obj)-1])
		data = make([]byte, 0, len(obj)+len(id)+len(outcome)+24)
		data = append(data, `{"id":`...)
		data = append(data, id...)
		data = append(data, ',')
		if len(inner) > 0 {
			data = append(data, inner...)
			data = append(data, ',')
		}
		data = append(data, `"outcome":`...)
		data = append(data, outcome...)
		data = append(data, '}')
	}
	return json.Marshal(Payload{Type: ev.Type, Timestamp: ev.OccurredAt.UTC(), Data: data})
}
