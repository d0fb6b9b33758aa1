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
func (n *Notification) Key() []byte {
	h := sha256.New()
	var buf [binary.MaxVarintLen64]byte
	str := func(s string) {
		h.Write(buf[:binary.PutUvarint(buf[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	raw := func(b []byte) {
		h.Write(buf[:binary.PutUvarint(buf[:], uint64(len(b)))])
		h.Write(b)
	}
	ts := func(t time.Time) {
		if t.IsZero() {
			h.Write([]byte{0})
			return
		}
		h.Write([]byte{1})
		h.Write(buf[:binary.PutVarint(buf[:], t.UnixMicro())])
	}
	str(n.CommandID)
	str(string(n.Status))
	if n.TimeFromReceipt {
		ts(time.Time{})
	} else {
		ts(n.EventTime)
	}
	str(n.RequestID)
	str(n.DeviceID)
	str(n.ProductID)
	str(n.AppID)
	str(n.GatewayID)
	str(n.NodeID)
	raw(canonical(n.Tags))
	ts(n.CreatedTime)
	ts(n.SentTime)
	ts(n.DeliveredTime)
	ts(n.ResponseTime)
	raw(canonical(n.Result))
	if c := n.Creation; c != nil {
		str(c.ServiceID)
		str(c.CommandName)
		raw(canonical(c.Paras))
		str(c.SendStrategy)
		if c.ExpireTime != nil {
			h.Write(buf[:binary.PutVarint(buf[:], int64(*c.ExpireTime))])
		}
	}
	return h.Sum(nil)
}
