package notification

import (
	"strings"
	"time"
	"unicode/utf8"
)

// The device message's fast path, in the manner of the command's (fast.go):
// one pass over the bytes where encoding/json would validate, reflect and
// copy each string into an allocation of its own. It answers only for a
// device message it can store (or whose only fault is an unstorable
// escape), which is what the platform sends; every other body, every dead
// letter and whatever is odd in either body (the one in notify_data and the
// one beside it, which encoding/json decodes both) goes to
// decodeMessageStd unchanged. So DecodeMessage's answer is always
// decodeMessageStd's; TestFastMessageMatchesStd and FuzzFastMatchesStd hold
// it to that.

// fastMessageBody is a message body, in notify_data or beside it.
type fastMessageBody struct {
	object                                    objectMember
	messageID, name, topic, status, timestamp span
	errorInfo                                 objectMember
	errorCode, errorMsg                       span
}

// fastMessage holds what one pass over a device message's body found.
type fastMessage struct {
	fastDoc

	resource, event, eventTime, eventTimeMS, requestID span
	notifyData, header                                 objectMember
	// headerRaw is where the header's object lies, when it is one.
	headerRaw span
	fastHeader
	inside, beside fastMessageBody
}

// Member names, as encoding/json matches them to messageEnvelope's fields
// (see unsureKey).
var (
	messageEnvelopeNames = []string{"resource", "event", "event_time", "event_time_ms", "request_id", "notify_data", "body"}
	messageBodyNames     = []string{"message_id", "name", "topic", "status", "timestamp", "error_info"}
	errorInfoNames       = []string{"error_code", "error_msg"}
)

// decodeMessageFast decodes body into m when it is sure of
// decodeMessageStd's answer, which it then returns as err (nil or an
// unstorable *Error). It reports sure = false for every other body, m then
// holding nothing of use.
func decodeMessageFast(body []byte, m *Message) (sure bool, err error) {
	d := fastMessage{fastDoc: fastDoc{s: scanner{data: body}, body: body}}
	if !d.s.document(d.envelopeMember) || d.odd || !d.is(d.resource, ResourceMessageStatus) ||
		!d.is(d.event, eventUpdate) || !d.notifyData.present || !utf8.Valid(body) {
		return false, nil
	}
	// As bodyOf: notify_data's body, or else the one beside it.
	b := &d.inside
	if !b.object.present {
		b = &d.beside
	}
	if !b.object.present || d.deviceID.empty() || b.messageID.empty() {
		return false, nil
	}
	status, ok := messageStatus(d.bytes(b.status))
	if !ok {
		return false, nil
	}
	eventTime := d.eventTimeMS
	if eventTime.empty() {
		eventTime = d.eventTime
	}
	if eventTime.empty() {
		return false, nil
	}
	tags := d.raw(d.tags)
	if tags != nil && tags[0] != '[' {
		return false, nil
	}
	var times [2]time.Time
	for i, f := range [...]span{eventTime, b.timestamp} {
		if f.empty() {
			continue
		}
		if times[i], ok = parseStamp(d.bytes(f)); !ok {
			if times[i], err = ParseTime(string(d.bytes(f))); err != nil {
				return false, nil
			}
		}
	}
	m.EventTime, m.At = times[0], times[1]
	if b.timestamp.empty() {
		m.At = m.EventTime
	}

	// One allocation for the strings a message keeps, as for a command.
	texts := [...]struct {
		from span
		to   *string
	}{
		{d.deviceID, &m.DeviceID}, {b.messageID, &m.MessageID}, {d.requestID, &m.RequestID},
		{b.name, &m.Name}, {b.topic, &m.Topic}, {b.errorCode, &m.ErrorCode}, {b.errorMsg, &m.ErrorMsg},
		{d.productID, &m.ProductID}, {d.appID, &m.AppID}, {d.gatewayID, &m.GatewayID}, {d.nodeID, &m.NodeID},
	}
	var size int
	for _, t := range texts {
		size += t.from.len()
	}
	var sb strings.Builder
	sb.Grow(size)
	for _, t := range texts {
		sb.Write(d.bytes(t.from))
	}
	all := sb.String()
	for _, t := range texts {
		*t.to, all = all[:t.from.len()], all[t.from.len():]
	}
	m.Status = status
	m.Tags, m.Payload = tags, body
	if d.header.present {
		m.HeaderStart, m.HeaderEnd = d.headerRaw.start, d.headerRaw.end
	}
	if reason := unstorableEscape(body); reason != "" {
		return true, errorf(ClassUnstorable, "%s", reason)
	}
	return true, nil
}

// envelopeMember reads one member of the top-level object. Unlike the
// command's fast path it need not tell a skipped resource from a stored
// one: anything odd anywhere leaves the body to encoding/json.
func (d *fastMessage) envelopeMember(key []byte, escaped bool) bool {
	switch {
	case escaped:
		return false
	case string(key) == "resource":
		return d.str(&d.resource)
	case string(key) == "event":
		return d.str(&d.event)
	case string(key) == "event_time":
		return d.str(&d.eventTime)
	case string(key) == "event_time_ms":
		return d.str(&d.eventTimeMS)
	case string(key) == "request_id":
		return d.str(&d.requestID)
	case string(key) == "notify_data":
		return d.object(&d.notifyData, d.notifyDataMember)
	case string(key) == "body":
		return d.messageBody(&d.beside)
	case unsureKey(key, messageEnvelopeNames):
		return false
	}
	return d.s.value()
}

func (d *fastMessage) notifyDataMember(key []byte, escaped bool) bool {
	switch {
	case escaped:
		return false
	case string(key) == "header":
		// A struct, not a pointer: null leaves it empty, as an absent
		// header does.
		return d.headerObject(&d.header, &d.fastHeader, &d.headerRaw)
	case string(key) == "body":
		return d.messageBody(&d.inside)
	case unsureKey(key, notifyDataNames):
		return false
	}
	return d.s.value()
}

// messageBody reads a message body (a pointer in messageEnvelope: null
// leaves it nil, as an absent one does) into b.
func (d *fastMessage) messageBody(b *fastMessageBody) bool {
	return d.object(&b.object, func(key []byte, escaped bool) bool {
		switch {
		case escaped:
			return false
		case string(key) == "message_id":
			return d.str(&b.messageID)
		case string(key) == "name":
			return d.str(&b.name)
		case string(key) == "topic":
			return d.str(&b.topic)
		case string(key) == "status":
			return d.str(&b.status)
		case string(key) == "timestamp":
			return d.str(&b.timestamp)
		case string(key) == "error_info":
			return d.object(&b.errorInfo, func(key []byte, escaped bool) bool {
				switch {
				case escaped:
					return false
				case string(key) == "error_code":
					return d.str(&b.errorCode)
				case string(key) == "error_msg":
					return d.str(&b.errorMsg)
				case unsureKey(key, errorInfoNames):
					return false
				}
				return d.s.value()
			})
		case unsureKey(key, messageBodyNames):
			return false
		}
		return d.s.value()
	})
}

// messageStatusList is messageRanks' statuses in a fixed order, to look
// one up without allocating its upper-case form.
var messageStatusList = [...]MessageStatus{MessagePending, MessageDelivered, MessageFailed, MessageTimeout}

// messageStatus is the status s names, upper-cased as asciiUpper does, if
// it is a device message status.
func messageStatus(s []byte) (MessageStatus, bool) {
	for _, st := range messageStatusList {
		if len(s) == len(st) && asciiEqualFold(s, string(st)) {
			return st, true
		}
	}
	return "", false
}
