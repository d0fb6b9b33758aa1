package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cmdtrack/cmdtrack/iotdaapi"
	"github.com/cmdtrack/cmdtrack/notification"
)

// SourceAPI is the source of what IoTDA's API answered (cmdtrack send,
// cmdtrack reconcile), in the history's source column.
const SourceAPI = "api"

// FromAPI turns a command record the API answered (on creation, or when
// asked with ShowAsyncDeviceCommand) into the notification it stands for,
// so that it is merged like any other. It is the only place that does, for
// `cmdtrack send` and `cmdtrack reconcile` alike.
//
// The record carries no event time, so the notification is timed by the
// lifecycle time its status implies (response_time for SUCCESSFUL and
// FAILED, delivered_time for DELIVERED, sent_time for SENT, created_time for
// PENDING) or, when the record has no such time (TIMEOUT, EXPIRED, or a
// field left out), by the latest time it does carry; and one microsecond
// before it. The record thus never claims to be newer than what it shows: a
// notification the platform pushed for the same change (timed at or after
// the change) wins the tie, keeping its request id, and a later one wins
// outright. The record still fills in any fact the row lacks.
//
// The notification then goes through Accept, as a decoded one does (a time
// too far ahead of receivedAt makes it a dead letter).
//
// A record that cannot be used (no command id, an unknown status, a time in
// neither of IoTDA's formats, no time at all) is an error: it stands for
// nothing, and nothing is stored for it.
func FromAPI(c *iotdaapi.Command, receivedAt time.Time, lim Limits) (Item, error) {
	if c.CommandID == "" {
		return Item{}, errors.New("the API's answer has no command_id")
	}
	status := notification.Status(c.Status)
	if _, ok := status.Rank(); !ok {
		return Item{}, fmt.Errorf("command %s: the API answered status %q, which cmdtrack does not know", c.CommandID, c.Status)
	}
	n := &notification.Notification{CommandID: c.CommandID, Status: status, DeviceID: c.DeviceID}
	for _, f := range []struct {
		name string
		in   string
		out  *time.Time
	}{
		{"created_time", c.CreatedTime, &n.CreatedTime},
		{"sent_time", c.SentTime, &n.SentTime},
		{"delivered_time", c.DeliveredTime, &n.DeliveredTime},
		{"response_time", c.ResponseTime, &n.ResponseTime},
	} {
		if f.in == "" {
			continue
		}
		t, err := notification.ParseTime(f.in)
		if err != nil {
			return Item{}, fmt.Errorf("command %s: %s: %w", c.CommandID, f.name, err)
		}
		*f.out = t
	}
	at := apiEventTime(n)
	if at.IsZero() {
		return Item{}, fmt.Errorf("command %s: the API's answer carries no time to order it by", c.CommandID)
	}
	n.EventTime = at.Add(-time.Microsecond)
	n.Result = nullToNil(c.Result)
	paras := nullToNil(c.Paras)
	if c.ServiceID != "" || c.CommandName != "" || paras != nil || c.SendStrategy != "" || c.ExpireTime != nil {
		n.Creation = &notification.Creation{
			ServiceID: c.ServiceID, CommandName: c.CommandName, Paras: paras,
			SendStrategy: c.SendStrategy, ExpireTime: c.ExpireTime,
		}
	}
	n.Payload = c.Raw
	if len(n.Payload) == 0 {
		var err error
		if n.Payload, err = json.Marshal(c); err != nil {
			return Item{}, fmt.Errorf("command %s: %w", c.CommandID, err)
		}
	}
	return Accept(n, SourceAPI, receivedAt, lim), nil
}

// apiEventTime is the time a record stands for (see FromAPI).
func apiEventTime(n *notification.Notification) time.Time {
	var own time.Time
	switch n.Status {
	case notification.Pending:
		own = n.CreatedTime
	case notification.Sent:
		own = n.SentTime
	case notification.Delivered:
		own = n.DeliveredTime
	case notification.Successful, notification.Failed:
		own = n.ResponseTime
	}
	if !own.IsZero() {
		return own
	}
	var latest time.Time
	for _, t := range []time.Time{n.CreatedTime, n.SentTime, n.DeliveredTime, n.ResponseTime} {
		if t.After(latest) {
			latest = t
		}
	}
	return latest
}

func nullToNil(raw json.RawMessage) json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}

// SourceSend is the source of what `cmdtrack send` records itself: a device
// message before it is sent, a synchronous call before and after.
const SourceSend = "send"

// FromAPIMessage turns a device message the API answered (CreateMessage on
// creation, ShowDeviceMessage when asked) into the device.message.status
// notification it stands for, as FromAPI does for commands: timed by the
// time its status implies (created_time for PENDING, finished_time for a
// final status, else the latest it carries), less a microsecond, so that
// the platform's own notification of the same change wins the tie and a
// later one wins outright; then through Accept. An answer without a message
// id or a device id, with an unknown status, a time in neither format or no
// time at all is an error: nothing is stored for it.
func FromAPIMessage(d *iotdaapi.DeviceMessage, receivedAt time.Time, lim Limits) (Item, error) {
	switch {
	case d.MessageID == "":
		return Item{}, errors.New("the API's answer has no message_id")
	case d.DeviceID == "":
		return Item{}, fmt.Errorf("message %s: no device id", d.MessageID)
	}
	status := notification.MessageStatus(d.Status)
	if _, ok := status.Rank(); !ok {
		return Item{}, fmt.Errorf("message %s: the API answered status %q, which cmdtrack does not know", d.MessageID, d.Status)
	}
	var created, finished time.Time
	for _, f := range []struct {
		name string
		in   string
		out  *time.Time
	}{{"created_time", d.CreatedTime, &created}, {"finished_time", d.FinishedTime, &finished}} {
		if f.in == "" {
			continue
		}
		t, err := notification.ParseTime(f.in)
		if err != nil {
			return Item{}, fmt.Errorf("message %s: %s: %w", d.MessageID, f.name, err)
		}
		*f.out = t
	}
	at := created
	if status.Final() || at.IsZero() {
		at = finished
	}
	if at.IsZero() {
		at = created
	}
	if at.IsZero() {
		return Item{}, fmt.Errorf("message %s: the API's answer carries no time to order it by", d.MessageID)
	}
	m := &notification.Message{DeviceID: d.DeviceID, MessageID: d.MessageID, Status: status,
		EventTime: at.Add(-time.Microsecond), At: at, Name: d.Name, Topic: d.Topic, Payload: d.Raw}
	if e := d.ErrorInfo; e != nil {
		m.ErrorCode, m.ErrorMsg = e.ErrorCode, e.ErrorMsg
	}
	if len(m.Payload) == 0 {
		var err error
		if m.Payload, err = json.Marshal(d); err != nil {
			return Item{}, fmt.Errorf("message %s: %w", d.MessageID, err)
		}
	}
	return Accept(m, SourceAPI, receivedAt, lim), nil
}
