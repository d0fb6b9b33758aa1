package notification

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"time"
	"unicode/utf8"
)

// The v5 push, which every resource IoTDA pushes shares: resource, event,
// the event's time, a request id and notify_data, whose header names the
// device and whose body is the resource's own. A resource's decoder is
// push[its notify_data]: read and checked here, then its own body.

// push is a v5 push notification of a resource whose notify_data is a D.
type push[D any] = pushBeside[D, none]

// pushBeside is a push whose resource may also put its body beside
// notify_data, as a B (device.status's sample does). Body is a member of
// the push itself rather than of a struct embedding one: encoding/json
// prefixes an embedded struct's members with its name in type errors
// ("push.resource"), which would change the reasons.
type pushBeside[D, B any] struct {
	Resource    string `json:"resource"`
	Event       string `json:"event"`
	EventTime   string `json:"event_time"`
	EventTimeMS string `json:"event_time_ms"`
	RequestID   string `json:"request_id"`
	NotifyData  *D     `json:"notify_data"`
	Body        *B     `json:"body"`
}

// none takes any JSON value and keeps nothing: the body beside notify_data
// of a push whose resource has none there, which encoding/json would
// otherwise ignore as an unknown member.
type none struct{}

func (*none) UnmarshalJSON([]byte) error { return nil }

// header is notify_data.header, the same in every resource's notify_data.
// It names an unnamed struct rather than being a type of its own:
// encoding/json writes the type into the reason for a member of the wrong
// type ("notify_data.header: want struct { AppID string ... }, got
// string"), and the alias keeps those reasons as they were.
type header = struct {
	AppID     string          `json:"app_id"`
	DeviceID  string          `json:"device_id"`
	NodeID    string          `json:"node_id"`
	ProductID string          `json:"product_id"`
	GatewayID string          `json:"gateway_id"`
	Tags      json.RawMessage `json:"tags"`
}

// read decodes body into e and checks what every push shares. It returns a
// *SkipError for a push of a resource other than resources, or of none
// (which decodeStd then reads as a legacy callback), and an *Error for a
// body that is not usable as a push of one of resources; where it returns
// nil, notify_data is present.
func (e *pushBeside[D, B]) read(body []byte, resources ...string) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return errorf(ClassEmpty, "empty body")
	}
	if !utf8.Valid(body) {
		return errorf(ClassNotUTF8, "body is not valid UTF-8")
	}
	// Unmarshal goes on past a member of the wrong type and reports the
	// first one; other resources have other notify_data shapes, so such an
	// error only counts once the resource is known to be one of resources.
	err := json.Unmarshal(body, e)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err != nil && !errors.As(err, &typeErr),
		typeErr != nil && (typeErr.Field == "" || typeErr.Field == "resource"):
		return jsonError(err)
	case !slices.Contains(resources, e.Resource):
		return &SkipError{Resource: e.Resource, Event: e.Event}
	case e.Event != eventUpdate:
		return errorf(ClassUnknownEvent, "resource %s with event %q, want %q", e.Resource, e.Event, eventUpdate)
	case err != nil:
		return jsonError(err)
	case e.NotifyData == nil:
		return errorf(ClassMissingField, "notify_data is missing")
	}
	return nil
}

// bodyOf is the resource's body: inside, as notify_data holds it (the
// reference's shape), or else the body beside notify_data (the published
// samples' shape), with where it was read, for reasons. Every resource
// with such a body names its device in the header, which it requires too.
func (e *pushBeside[D, B]) bodyOf(inside *B, h *header) (*B, string, error) {
	b, where := inside, "notify_data.body"
	if b == nil {
		b, where = e.Body, "body"
	}
	if b == nil {
		return nil, "", errorf(ClassMissingField, "notify_data.body (or body beside notify_data) is missing")
	}
	if h.DeviceID == "" {
		return nil, "", errorf(ClassMissingField, "notify_data.header.device_id is missing")
	}
	return b, where, nil
}

// eventTime is when the platform generated the push. event_time_ms
// carries milliseconds, event_time only seconds; the finer one orders
// notifications of the same second.
func (e *pushBeside[D, B]) eventTime() (time.Time, error) {
	switch {
	case e.EventTimeMS != "":
		return parseTime("event_time_ms", e.EventTimeMS)
	case e.EventTime != "":
		return parseTime("event_time", e.EventTime)
	}
	return time.Time{}, errorf(ClassMissingField, "event_time is missing")
}

// headerTags is the header's tags, nil for none. It returns them with an
// *Error when they are not an array.
func headerTags(h *header) (json.RawMessage, error) {
	tags := nullToNil(h.Tags)
	if tags != nil && tags[0] != '[' {
		return tags, errorf(ClassInvalidField, "notify_data.header.tags: want an array")
	}
	return tags, nil
}

// headerSpan is where notify_data.header's object lies in body, as bytes
// (end 0 when it is not found). It finds the member as written, exactly
// once, as the fast path reads it: a body with a second notify_data or
// header, or one spelled otherwise (escapes, another case), has none, since
// which of them encoding/json kept is not worth working out for a hint.
func headerSpan(body []byte) (start, end int) {
	s := scanner{data: body}
	var notifyData, header int
	ok := s.document(func(key []byte, escaped bool) bool {
		if escaped || string(key) != "notify_data" || s.peek() != '{' {
			return s.value()
		}
		notifyData++
		return s.object(func(key []byte, escaped bool) bool {
			if escaped || string(key) != "header" || s.peek() != '{' {
				return s.value()
			}
			header++
			var ok bool
			start, end, ok = s.rawValue()
			return ok
		})
	})
	if !ok || notifyData != 1 || header != 1 {
		return 0, 0
	}
	return start, end
}
