package notification

import (
	"crypto/sha256"
	"encoding/json"
	"strings"
	"time"
)

// ResourceMessageStatus is the resource of a device message's status change
// ("Push a Device Message Status Change Notification", API reference): the
// downlink of MQTT devices, sent with CreateMessage.
const ResourceMessageStatus = "device.message.status"

// MessageStatus is a device message's status as IoTDA reports it.
type MessageStatus string

// The device message statuses IoTDA documents. PENDING: the platform holds
// the message for an offline device; the other three are final.
const (
	MessagePending   MessageStatus = "PENDING"
	MessageDelivered MessageStatus = "DELIVERED"
	MessageFailed    MessageStatus = "FAILED"
	MessageTimeout   MessageStatus = "TIMEOUT"
)

// messageRanks orders message statuses: a final status outranks PENDING,
// and among final statuses the later event wins.
var messageRanks = map[MessageStatus]int16{
	MessagePending: 0, MessageDelivered: 1, MessageFailed: 1, MessageTimeout: 1,
}

// Rank reports the status's place in the message's life and whether it is
// known.
func (s MessageStatus) Rank() (int16, bool) {
	r, ok := messageRanks[s]
	return r, ok
}

// Final reports whether the status ends the message's life.
func (s MessageStatus) Final() bool { return messageRanks[s] == 1 }

// Message is one device message status change.
// Empty strings and zero times mean "not reported" and are stored as NULL.
type Message struct {
	// DeviceID and MessageID name the message: a message id is unique per
	// device only.
	DeviceID  string
	MessageID string
	Status    MessageStatus
	// EventTime is when the platform generated the notification; with the
	// status rank it decides which notification wins the merge.
	EventTime time.Time
	// At is when the message reached Status: the body's timestamp, or the
	// event time when it carries none.
	At        time.Time
	RequestID string

	Name      string
	Topic     string
	ErrorCode string
	ErrorMsg  string

	ProductID string
	AppID     string
	GatewayID string
	NodeID    string
	Tags      json.RawMessage // a JSON array, or nil

	// Payload is the notification as received (UTF-8 JSON), kept in history.
	Payload []byte
	// HeaderStart and HeaderEnd are where notify_data.header's object lies
	// in Payload, as Notification's are.
	HeaderStart, HeaderEnd int
}

// Rank is the lifecycle rank of the message's status. DecodeMessage only
// returns messages whose status is known.
func (m *Message) Rank() int16 {
	r, _ := m.Status.Rank()
	return r
}

// Key identifies the notification's content, as Notification.Key does: the
// history's de-duplication key and the merge's last tie-break. Stored keys
// must stay valid: the bytes hashed never change.
func (m *Message) Key() []byte {
	var stack [1024]byte
	b := append(stack[:0], "message/1"...)
	b = appendString(b, m.DeviceID)
	b = appendString(b, m.MessageID)
	b = appendString(b, string(m.Status))
	b = appendTime(b, m.EventTime)
	b = appendTime(b, m.At)
	b = appendString(b, m.RequestID)
	b = appendString(b, m.Name)
	b = appendString(b, m.Topic)
	b = appendString(b, m.ErrorCode)
	b = appendString(b, m.ErrorMsg)
	b = appendString(b, m.ProductID)
	b = appendString(b, m.AppID)
	b = appendString(b, m.GatewayID)
	b = appendString(b, m.NodeID)
	b = appendJSON(b, m.Tags)
	sum := sha256.Sum256(b)
	return sum[:]
}

// Kind names the device message's kind.
func (m *Message) Kind() string { return KindMessage }

// Time is when the platform generated the notification.
func (m *Message) Time() time.Time { return m.EventTime }

// Body is the notification as received.
func (m *Message) Body() []byte { return m.Payload }

// Ahead names the first time the message claims that is after limit: the
// later event wins between final statuses.
func (m *Message) Ahead(limit time.Time) (field string, at time.Time, ok bool) {
	return firstAfter(limit, named{"event time", m.EventTime}, named{"timestamp", m.At})
}

type messageBody struct {
	MessageID string `json:"message_id"`
	Name      string `json:"name"`
	Topic     string `json:"topic"`
	Status    string `json:"status"`
	Timestamp string `json:"timestamp"`
	ErrorInfo *struct {
		ErrorCode string `json:"error_code"`
		ErrorMsg  string `json:"error_msg"`
	} `json:"error_info"`
}

// messageEnvelope is a device.message.status push. As for device.status,
// the reference puts body in notify_data and the published sample beside
// it; both are read.
type messageEnvelope = pushBeside[messageData, messageBody]

type messageData = struct {
	Header header       `json:"header"`
	Body   *messageBody `json:"body"`
}

// DecodeMessage parses a device.message.status / update notification. It
// returns a *SkipError for another resource's notification and an *Error,
// as DecodeAt does, for anything that cannot be stored as it is. The
// returned Message's Payload aliases body, and so may its Tags.
//
// The body is notify_data.body, or, where notify_data has none, the
// top-level body (the sample's shape); a notification with both is read
// from notify_data.body.
func DecodeMessage(body []byte) (Message, error) {
	var m Message
	sure, err := decodeMessageFast(body, &m)
	if checkFastMessage != nil {
		checkFastMessage(body, sure, m, err)
	}
	if !sure {
		m, err = decodeMessageStd(body)
	}
	if err == nil && strings.IndexByte(m.DeviceID, '/') >= 0 {
		// A message is named device_id/message_id, split at the first '/'
		// (webhooks' subjects, the console's /messages/{device}/{id}): a
		// device id with one would name another message.
		return m, errorf(ClassInvalidField, "notify_data.header.device_id %.128q holds '/': IoTDA's device ids hold "+
			"letters, digits, '_' and '-' only, and cmdtrack names a message device_id/message_id", m.DeviceID)
	}
	return m, err
}

// checkFastMessage is checkFast for device messages: nil but in this
// package's tests, where it holds every answer of decodeMessageFast to
// decodeMessageStd's.
var checkFastMessage func(body []byte, sure bool, m Message, err error)

// decodeMessageStd is DecodeMessage with encoding/json: every reason, and
// the reference that decodeMessageFast must agree with.
func decodeMessageStd(body []byte) (Message, error) {
	var m Message
	var env messageEnvelope
	if err := env.read(body, ResourceMessageStatus); err != nil {
		return m, err
	}
	h := &env.NotifyData.Header
	b, where, err := env.bodyOf(env.NotifyData.Body, h)
	if err != nil {
		return m, err
	}
	switch {
	case b.MessageID == "":
		return m, errorf(ClassMissingField, "%s.message_id is missing", where)
	case b.Status == "":
		return m, errorf(ClassMissingField, "%s.status is missing", where)
	}
	m.Status = MessageStatus(asciiUpper(b.Status))
	if _, ok := messageRanks[m.Status]; !ok {
		return m, errorf(ClassUnknownStatus, "unknown device message status %q", b.Status)
	}
	if m.EventTime, err = env.eventTime(); err != nil {
		return m, err
	}
	m.At = m.EventTime
	if b.Timestamp != "" {
		if m.At, err = parseTime(where+".timestamp", b.Timestamp); err != nil {
			return m, err
		}
	}
	if m.Tags, err = headerTags(h); err != nil {
		return m, err
	}
	m.DeviceID, m.MessageID, m.Name, m.Topic = h.DeviceID, b.MessageID, b.Name, b.Topic
	if e := b.ErrorInfo; e != nil {
		m.ErrorCode, m.ErrorMsg = e.ErrorCode, e.ErrorMsg
	}
	m.ProductID, m.AppID, m.GatewayID, m.NodeID = h.ProductID, h.AppID, h.GatewayID, h.NodeID
	m.RequestID = env.RequestID
	m.Payload = body
	m.HeaderStart, m.HeaderEnd = headerSpan(body)
	return m, storable(body)
}
