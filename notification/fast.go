package notification

import (
	"strings"
	"time"
	"unicode/utf8"
)

// The fast path. Every message goes through DecodeAt, and almost all are
// the v5 push in the one shape IoTDA sends, or another resource's push that
// shares the queue. encoding/json spends most of a message's decoding time
// validating the body, then reflecting over it while copying each string
// (and tags and result) into an allocation of its own; this reads that
// shape in one pass over the bytes and copies the strings a notification
// keeps into a single allocation.
//
// It answers only when it is sure of encoding/json's answer: a stored
// notification, a skipped resource, or (the last check, shared) an
// unstorable escape. Anything else goes to decodeStd, the encoding/json
// decoder, unchanged: every dead letter, the legacy formats, and whatever
// the fast path does not read itself (escapes in the values it keeps, keys
// that encoding/json might match ignoring case, repeated members, nesting
// deeper than maxScanDepth). So DecodeAt's answer is always decodeStd's;
// TestFastMatchesStd and FuzzFastMatchesStd hold it to that.

// span is where a member's value lies in the body: for a string, its
// contents without the quotes; for tags and result, the raw JSON value.
type span struct {
	start, end int
	seen       bool
	// odd: repeated (encoding/json keeps the last, or merges objects),
	// of another type than encoding/json decodes it into (a type error), or
	// a string with escapes (its value is not its bytes).
	odd bool
}

func (f span) empty() bool { return f.end == f.start }

func (f span) len() int { return f.end - f.start }

// objectMember is a member that encoding/json decodes into a struct.
type objectMember struct {
	seen bool
	// present: an object, not null.
	present bool
}

// fastDoc is one pass over a body, as every fast decoder reads it: the
// scanner, and whether anything odd was met.
type fastDoc struct {
	s    scanner
	body []byte
	// odd is set by anything odd in the members the fast path reads, as
	// span.odd is. For a command status it only matters once the resource
	// is known: another resource has another notify_data, which
	// encoding/json's type errors do not stop from being skipped.
	odd bool
}

// fastHeader is notify_data.header, which every resource shares.
type fastHeader struct {
	appID, deviceID, nodeID, productID, gatewayID, tags span
}

// fastV5 holds what one pass over a body found.
type fastV5 struct {
	fastDoc

	resource, event, eventTime, eventTimeMS, requestID span
	notifyData, header, dataBody                       objectMember
	// headerRaw is where the header's object lies, when it is one.
	headerRaw span

	fastHeader
	commandID, createdTime, sentTime, deliveredTime, responseTime span
	status, result                                                span
}

// Member names, as encoding/json matches them to envelope's and
// commandStatusData's fields (see unsureKey).
var (
	envelopeNames   = []string{"resource", "event", "event_time", "event_time_ms", "request_id", "notify_data"}
	notifyDataNames = []string{"header", "body"}
	headerNames     = []string{"app_id", "device_id", "node_id", "product_id", "gateway_id", "tags"}
	bodyNames       = []string{"command_id", "created_time", "sent_time", "delivered_time", "response_time", "status", "result"}
)

// decodeFast decodes body into n when it is sure of decodeStd's answer,
// which it then returns as err (nil, a *SkipError or an unstorable *Error).
// It reports sure = false, with n untouched, for every other body.
func decodeFast(body []byte, n *Notification) (sure bool, err error) {
	if !utf8.Valid(body) {
		return false, nil
	}
	d := fastV5{fastDoc: fastDoc{s: scanner{data: body}, body: body}}
	if !d.s.document(d.envelopeMember) || d.resource.odd || d.resource.empty() {
		return false, nil // not JSON, not an object, or a legacy format
	}
	if !d.is(d.resource, ResourceCommandStatus) && !d.is(d.resource, resourceCommandStatusMisspelled) {
		if d.event.odd {
			return false, nil
		}
		return true, &SkipError{Resource: string(d.bytes(d.resource)), Event: string(d.bytes(d.event))}
	}
	if d.odd || !d.is(d.event, eventUpdate) || !d.notifyData.present || !d.dataBody.present || d.commandID.empty() {
		return false, nil
	}
	status, ok := v5Status(d.bytes(d.status))
	if !ok {
		return false, nil
	}
	// As decodeStd: event_time_ms carries milliseconds, so it wins.
	eventTime := d.eventTimeMS
	if eventTime.empty() {
		eventTime = d.eventTime
	}
	if eventTime.empty() {
		return false, nil
	}
	tags, result := d.raw(d.tags), d.raw(d.result)
	if tags != nil && tags[0] != '[' {
		return false, nil
	}

	// The times, parsed as decodeStd parses them. One that does not parse
	// makes a dead letter, whose reason decodeStd words.
	var times [5]time.Time
	for i, f := range [...]span{eventTime, d.createdTime, d.sentTime, d.deliveredTime, d.responseTime} {
		if f.empty() {
			continue
		}
		var ok bool
		if times[i], ok = parseStamp(d.bytes(f)); !ok {
			if times[i], err = ParseTime(string(d.bytes(f))); err != nil {
				return false, nil
			}
		}
	}

	// The strings a notification keeps are copied into one allocation: they
	// live as long as each other, and a string each would be an allocation
	// each.
	texts := [...]struct {
		from span
		to   *string
	}{
		{d.commandID, &n.CommandID}, {d.requestID, &n.RequestID},
		{d.deviceID, &n.DeviceID}, {d.productID, &n.ProductID}, {d.appID, &n.AppID},
		{d.gatewayID, &n.GatewayID}, {d.nodeID, &n.NodeID},
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
	n.Status = status
	n.EventTime, n.CreatedTime, n.SentTime, n.DeliveredTime, n.ResponseTime = times[0], times[1], times[2], times[3], times[4]
	// Tags and Result alias the body, as Payload does: it is kept anyway.
	n.Tags, n.Result, n.Payload = tags, result, body
	if d.header.present {
		n.HeaderStart, n.HeaderEnd = d.headerRaw.start, d.headerRaw.end
	}
	if reason := unstorableEscape(body); reason != "" {
		return true, errorf(ClassUnstorable, "%s", reason)
	}
	return true, nil
}

func (d *fastDoc) bytes(f span) []byte { return d.body[f.start:f.end] }

// is reports whether f holds s (a comparison, which does not copy).
func (d *fastDoc) is(f span, s string) bool { return string(d.body[f.start:f.end]) == s }

// raw is a raw member's value as nullToNil leaves it: nil when absent or
// null. Its capacity ends with it, so that an append to it cannot write
// over the rest of the body.
func (d *fastDoc) raw(f span) []byte {
	if v := d.body[f.start:f.end:f.end]; len(v) > 0 && string(v) != "null" {
		return v
	}
	return nil
}

// envelopeMember reads one member of the top-level object. A key the fast
// path cannot place stops it: it might be the resource.
func (d *fastV5) envelopeMember(key []byte, escaped bool) bool {
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
	case unsureKey(key, envelopeNames):
		return false
	}
	return d.s.value()
}

func (d *fastV5) notifyDataMember(key []byte, escaped bool) bool {
	switch {
	case escaped:
		d.odd = true
	case string(key) == "header":
		// A struct, not a pointer, in commandStatusData: null leaves it
		// empty, as an absent header does.
		return d.headerObject(&d.header, &d.fastHeader, &d.headerRaw)
	case string(key) == "body":
		return d.object(&d.dataBody, d.bodyMember)
	case unsureKey(key, notifyDataNames):
		d.odd = true
	}
	return d.s.value()
}

// headerObject reads notify_data.header (its fields into h) and where its
// object lies into raw: the history keeps the header once (store).
func (d *fastDoc) headerObject(o *objectMember, h *fastHeader, raw *span) bool {
	d.s.space()
	start := d.s.pos
	ok := d.object(o, func(key []byte, escaped bool) bool { return d.headerMember(h, key, escaped) })
	*raw = span{start: start, end: d.s.pos}
	return ok
}

// headerMember reads one member of notify_data.header into h.
func (d *fastDoc) headerMember(h *fastHeader, key []byte, escaped bool) bool {
	switch {
	case escaped:
		d.odd = true
	case string(key) == "app_id":
		return d.str(&h.appID)
	case string(key) == "device_id":
		return d.str(&h.deviceID)
	case string(key) == "node_id":
		return d.str(&h.nodeID)
	case string(key) == "product_id":
		return d.str(&h.productID)
	case string(key) == "gateway_id":
		return d.str(&h.gatewayID)
	case string(key) == "tags":
		return d.rawMember(&h.tags)
	case unsureKey(key, headerNames):
		d.odd = true
	}
	return d.s.value()
}

func (d *fastV5) bodyMember(key []byte, escaped bool) bool {
	switch {
	case escaped:
		d.odd = true
	case string(key) == "command_id":
		return d.str(&d.commandID)
	case string(key) == "created_time":
		return d.str(&d.createdTime)
	case string(key) == "sent_time":
		return d.str(&d.sentTime)
	case string(key) == "delivered_time":
		return d.str(&d.deliveredTime)
	case string(key) == "response_time":
		return d.str(&d.responseTime)
	case string(key) == "status":
		return d.str(&d.status)
	case string(key) == "result":
		return d.rawMember(&d.result)
	case unsureKey(key, bodyNames):
		d.odd = true
	}
	return d.s.value()
}

// str reads a member that encoding/json decodes into a string: a string
// without escapes, or null (which leaves the string empty). Anything else
// makes the member odd. It reports false only for a syntax error.
func (d *fastDoc) str(f *span) bool {
	f.odd = f.seen
	f.seen = true
	switch d.s.peek() {
	case '"':
		var escaped, ok bool
		f.start, f.end, escaped, ok = d.s.str()
		f.odd = f.odd || escaped
		d.odd = d.odd || f.odd
		return ok
	case 'n':
		f.start, f.end = 0, 0
		d.odd = d.odd || f.odd
		return d.s.literal("null")
	}
	f.odd = true
	d.odd = true
	return d.s.value()
}

// rawMember reads a member that encoding/json keeps as json.RawMessage:
// any value, as written.
func (d *fastDoc) rawMember(f *span) bool {
	f.odd = f.seen
	f.seen = true
	d.odd = d.odd || f.odd
	var ok bool
	f.start, f.end, ok = d.s.rawValue()
	return ok
}

// object reads a member that encoding/json decodes into a struct: an object,
// whose members go to member, or null. Anything else is a type error, and a
// second occurrence would be merged into the first: both are odd.
func (d *fastDoc) object(o *objectMember, member func(key []byte, escaped bool) bool) bool {
	d.odd = d.odd || o.seen
	o.seen = true
	switch d.s.peek() {
	case '{':
		o.present = true
		return d.s.object(member)
	case 'n':
		return d.s.literal("null")
	}
	d.odd = true
	return d.s.value()
}

// unsureKey reports whether encoding/json might match key to one of names
// although it is spelled as none of them: encoding/json matches names
// ignoring case, by Unicode's folding, in which "ſ" is an "s" and the
// Kelvin sign a "k". A key outside ASCII is not worth telling apart.
func unsureKey(key []byte, names []string) bool {
	for _, c := range key {
		if c >= utf8.RuneSelf {
			return true
		}
	}
	for _, name := range names {
		if asciiEqualFold(key, name) {
			return true
		}
	}
	return false
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if asciiUpperByte(b[i]) != asciiUpperByte(s[i]) {
			return false
		}
	}
	return true
}

func asciiUpperByte(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// v5StatusList is v5Statuses in a fixed order, to look a status up without
// allocating its upper-case form.
var v5StatusList = [...]Status{Pending, Sent, Delivered, Successful, Failed, Timeout, Expired}

// v5Status is the status s names, upper-cased as asciiUpper does, if it is
// a v5 status.
func v5Status(s []byte) (Status, bool) {
	for _, st := range v5StatusList {
		if len(s) != len(st) {
			continue
		}
		same := true
		for i := range s {
			if asciiUpperByte(s[i]) != st[i] {
				same = false
				break
			}
		}
		if same {
			return st, true
		}
	}
	return "", false
}
