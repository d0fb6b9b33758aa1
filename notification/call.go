package notification

import (
	"crypto/sha256"
	"encoding/json"
	"strconv"
	"time"
)

// KindCall is the kind of a synchronous downlink sent through cmdtrack: a
// synchronous command (CreateCommand) or a property set (UpdateProperties).
// The platform forwards nothing about them, so no resource decodes to it:
// `cmdtrack send` makes its records itself, one before the call and one
// with its outcome (README, "Synchronous commands and property sets").
const KindCall = "call"

// The kinds of call, in device_calls.call_kind.
const (
	CallCommand    = "command"
	CallProperties = "properties"
)

// CallStatus is where a synchronous call stands.
type CallStatus string

// The call statuses (migration 016). PENDING is written before the call;
// the others are its outcome, and final.
const (
	// CallPending: sent, no answer yet (or cmdtrack stopped before one).
	CallPending CallStatus = "PENDING"
	// CallSuccessful: the device answered; the row holds its response.
	CallSuccessful CallStatus = "SUCCESSFUL"
	// CallFailed: the platform answered an error (device offline, not
	// answering in time, a refusal, a 5xx); the row holds its HTTP status
	// and error code.
	CallFailed CallStatus = "FAILED"
	// CallTimeout: no answer within cmdtrack's own time limit.
	CallTimeout CallStatus = "TIMEOUT"
	// CallError: no usable answer: a transport error, or an answer that
	// does not parse.
	CallError CallStatus = "ERROR"
)

// Final reports whether the status is an outcome.
func (s CallStatus) Final() bool { return s != CallPending }

// Call is one record of a synchronous call: the one cmdtrack writes before
// the call (PENDING) or the one with its outcome. Empty strings, nil JSON
// and zero times mean "not known" and are stored as NULL; the merge keeps
// what the other record knew.
type Call struct {
	// CallID is chosen by cmdtrack before the call.
	CallID   string
	CallKind string // CallCommand or CallProperties
	DeviceID string
	Status   CallStatus
	// EventTime is when cmdtrack wrote the record (before the call, or once
	// its outcome was known): with the rank it decides the merge.
	EventTime time.Time

	ProductID   string
	ServiceID   string
	CommandName string
	// Request is what was sent: the command's paras, or the services.
	Request json.RawMessage

	// CommandID is the platform's id of a synchronous command.
	CommandID string
	// Response is the device's answer, as the API returned it.
	Response json.RawMessage
	// HTTPStatus, ErrorCode and ErrorMsg say how the call failed: the API's
	// status and error body, or for no answer at all an error code of
	// cmdtrack's ("transport", "timeout", "bad_response", "canceled") and
	// the error's text.
	HTTPStatus int
	ErrorCode  string
	ErrorMsg   string

	SentTime     time.Time
	FinishedTime time.Time

	// Payload is what the record stands for, as JSON (the request, or the
	// API's answer); kept in a dead letter should PostgreSQL refuse it.
	Payload []byte
}

// Rank is the call's place in its life: PENDING 0, an outcome 1.
func (c *Call) Rank() int16 {
	if c.Status.Final() {
		return 1
	}
	return 0
}

// Key identifies the record's content: the merge's last tie-break.
func (c *Call) Key() []byte {
	var stack [1024]byte
	b := append(stack[:0], "call/1"...)
	for _, s := range []string{c.CallID, c.CallKind, c.DeviceID, string(c.Status), c.ProductID, c.ServiceID,
		c.CommandName, c.CommandID, strconv.Itoa(c.HTTPStatus), c.ErrorCode, c.ErrorMsg} {
		b = appendString(b, s)
	}
	b = appendTime(b, c.EventTime)
	b = appendTime(b, c.SentTime)
	b = appendTime(b, c.FinishedTime)
	b = appendJSON(b, c.Request)
	b = appendJSON(b, c.Response)
	sum := sha256.Sum256(b)
	return sum[:]
}

// Kind names the call's kind.
func (c *Call) Kind() string { return KindCall }

// Time is when cmdtrack wrote the record.
func (c *Call) Time() time.Time { return c.EventTime }

// Body is what the record stands for.
func (c *Call) Body() []byte { return c.Payload }

// Ahead names the first time the record claims that is after limit. Its
// times are cmdtrack's own clock's, so this holds only if the clock jumps.
func (c *Call) Ahead(limit time.Time) (field string, at time.Time, ok bool) {
	return firstAfter(limit, named{"event time", c.EventTime}, named{"sent_time", c.SentTime},
		named{"finished_time", c.FinishedTime})
}
