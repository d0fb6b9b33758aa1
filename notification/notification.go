// Package notification turns the bytes IoTDA pushes into a Notification, or
// into a precise reason why they cannot be used.
//
// It knows nothing of AMQP or PostgreSQL: the same decoder serves the queue
// consumer, the HTTP receiver and `cmdtrack replay`.
package notification

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"time"
)

// Status is a device command status as IoTDA reports it.
type Status string

// The v5 command statuses (API reference, DeviceCommandStatusUpdate).
const (
	Pending    Status = "PENDING"
	Sent       Status = "SENT"
	Delivered  Status = "DELIVERED"
	Successful Status = "SUCCESSFUL"
	Failed     Status = "FAILED"
	Timeout    Status = "TIMEOUT"
	Expired    Status = "EXPIRED"
	// Canceled only comes from legacy callbacks; it is terminal.
	Canceled Status = "CANCELED"
)

// ranks orders statuses along the lifecycle. A command's stored status never
// moves to a lower rank; among terminal statuses the later event wins.
var ranks = map[Status]int16{
	Pending:    0,
	Sent:       1,
	Delivered:  2,
	Successful: 3,
	Failed:     3,
	Timeout:    3,
	Expired:    3,
	Canceled:   3,
}

// v5Statuses are the statuses a v5 notification may carry.
var v5Statuses = map[Status]struct{}{
	Pending: {}, Sent: {}, Delivered: {}, Successful: {}, Failed: {}, Timeout: {}, Expired: {},
}

// Rank reports the status's place in the lifecycle and whether it is known.
func (s Status) Rank() (int16, bool) {
	r, ok := ranks[s]
	return r, ok
}

// Final reports whether the status ends a command's life (rank 3).
func (s Status) Final() bool { return ranks[s] == 3 }

// Notification is one command status change, as decoded from any channel.
// Empty strings and zero times mean "not reported" and are stored as NULL.
type Notification struct {
	CommandID string
	Status    Status
	// EventTime is when the platform generated the notification; together
	// with the status rank it decides which notification wins the merge.
	EventTime time.Time
	RequestID string

	DeviceID  string
	ProductID string
	AppID     string
	GatewayID string
	NodeID    string
	Tags      json.RawMessage // a JSON array, or nil

	CreatedTime   time.Time
	SentTime      time.Time
	DeliveredTime time.Time
	ResponseTime  time.Time

	Result json.RawMessage // any JSON value but null, or nil

	// Payload is the notification as received (UTF-8 JSON), kept in history.
	Payload []byte
	// HeaderStart and HeaderEnd are where notify_data.header's object lies
	// in Payload, as bytes; HeaderEnd is 0 when the decoder did not place
	// it. The header is the same in every notification of a device, so the
	// history keeps it once (store: notification_headers); the span is only
	// a hint for that, and the store checks the bytes it cuts out.
	HeaderStart, HeaderEnd int

	// TimeFromReceipt is set when the format carries no event time and
	// EventTime is when cmdtrack received it (legacy callbacks). The key then
	// leaves the time out, so that a redelivered callback is still
	// recognised as the same notification.
	TimeFromReceipt bool

	// Creation holds what only the command's creation knows (cmdtrack send).
	Creation *Creation
}

// Creation is what the async-command API answers when a command is created.
type Creation struct {
	ServiceID    string
	CommandName  string
	Paras        json.RawMessage
	SendStrategy string
	ExpireTime   *int
}

// Rank is the lifecycle rank of the notification's status. Decode only
// returns notifications whose status is known.
func (n *Notification) Rank() int16 {
	r, _ := n.Status.Rank()
	return r
}

// Key identifies the notification's content: two deliveries of the same
// notification have the same key, whatever channel or JSON formatting they
// came with. It is the history's de-duplication key and the last tie-break
// of the merge rule, so it covers every field that is stored.
//
// Stored keys must stay valid: the bytes hashed here never change (the
// tests hold them to keyV0, the first version).
func (n *Notification) Key() []byte {
	// The fields are written into one buffer, on the stack for any usual
	// notification, and hashed at once: it runs for every message, and
	// writing each field to a hash.Hash allocates a copy of each.
	var stack [1024]byte
	b := stack[:0]
	b = appendString(b, n.CommandID)
	b = appendString(b, string(n.Status))
	if n.TimeFromReceipt {
		b = appendTime(b, time.Time{})
	} else {
		b = appendTime(b, n.EventTime)
	}
	b = appendString(b, n.RequestID)
	b = appendString(b, n.DeviceID)
	b = appendString(b, n.ProductID)
	b = appendString(b, n.AppID)
	b = appendString(b, n.GatewayID)
	b = appendString(b, n.NodeID)
	b = appendJSON(b, n.Tags)
	b = appendTime(b, n.CreatedTime)
	b = appendTime(b, n.SentTime)
	b = appendTime(b, n.DeliveredTime)
	b = appendTime(b, n.ResponseTime)
	b = appendJSON(b, n.Result)
	if c := n.Creation; c != nil {
		b = appendString(b, c.ServiceID)
		b = appendString(b, c.CommandName)
		b = appendJSON(b, c.Paras)
		b = appendString(b, c.SendStrategy)
		if c.ExpireTime != nil {
			b = binary.AppendVarint(b, int64(*c.ExpireTime))
		}
	}
	sum := sha256.Sum256(b)
	return sum[:]
}

// appendString appends s with its length before it, so that text moved
// from one field to the next changes the key.
func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// appendTime appends 0 for a zero time, else 1 and its microseconds.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	return binary.AppendVarint(append(b, 1), t.UnixMicro())
}

// appendJSON appends raw's canonical form with its length before it. The
// length is only known once the form is written, so the form is written
// first and moved up to make room for it.
func appendJSON(b, raw []byte) []byte {
	start := len(b)
	b = appendCanonical(b, raw)
	size := len(b) - start
	var prefix [binary.MaxVarintLen64]byte
	p := binary.PutUvarint(prefix[:], uint64(size))
	b = append(b, prefix[:p]...)
	copy(b[start+p:], b[start:start+size])
	copy(b[start:], prefix[:p])
	return b
}

// Kind names the notification's kind.
func (n *Notification) Kind() string { return KindCommand }

// Time is when the platform generated the notification.
func (n *Notification) Time() time.Time { return n.EventTime }

// Body is the notification as received.
func (n *Notification) Body() []byte { return n.Payload }

// Ahead names the first time the notification claims that is after limit.
// The merge takes the latest event and the latest facts, so a time from the
// future would outrank every genuine notification that follows.
func (n *Notification) Ahead(limit time.Time) (field string, at time.Time, ok bool) {
	return firstAfter(limit, named{"event time", n.EventTime}, named{"created_time", n.CreatedTime},
		named{"sent_time", n.SentTime}, named{"delivered_time", n.DeliveredTime},
		named{"response_time", n.ResponseTime})
}
