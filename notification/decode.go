package notification

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Resource names of the command status notification. The API reference's
// own example misspells it, so both are accepted.
const (
	ResourceCommandStatus           = "device.command.status"
	resourceCommandStatusMisspelled = "device.commmad.status"
	eventUpdate                     = "update"
)

// Class groups dead-letter reasons for metrics and queries.
type Class string

// Reason classes, one per way a message can be unusable.
const (
	ClassTooLarge      Class = "too_large"
	ClassEmpty         Class = "empty"
	ClassNotUTF8       Class = "not_utf8"
	ClassInvalidJSON   Class = "invalid_json"
	ClassNotNotify     Class = "not_notification"
	ClassUnknownEvent  Class = "unknown_event"
	ClassInvalidField  Class = "invalid_field"
	ClassMissingField  Class = "missing_field"
	ClassUnknownStatus Class = "unknown_status"
	ClassInvalidTime   Class = "invalid_time"
	ClassUnstorable    Class = "unstorable"
	// ClassRejected is set by the store, not the decoder: PostgreSQL refused a
	// value the decoder let through.
	ClassRejected Class = "rejected_by_database"
	// ClassFutureTime is set by ingest, not the decoder: the notification
	// claims a time further ahead of its receipt than clocks can disagree.
	ClassFutureTime Class = "future_event_time"
)

// Error says why a message cannot be used. Such messages are dead-lettered.
type Error struct {
	Class  Class
	Reason string
}

func (e *Error) Error() string { return string(e.Class) + ": " + e.Reason }

func errorf(c Class, format string, args ...any) *Error {
	return &Error{Class: c, Reason: fmt.Sprintf(format, args...)}
}

// SkipError reports a well-formed notification about something other than
// command status (device.property, device.message, ...), which shares the
// queue with ours. Such messages are settled and counted, not stored.
type SkipError struct {
	Resource string
	Event    string
}

func (e *SkipError) Error() string {
	return fmt.Sprintf("not a command status notification (resource %q, event %q)", e.Resource, e.Event)
}

// Timestamps outside this window are typos or garbage, not command history;
// bounding them also keeps every value inside PostgreSQL's range.
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// envelope is a command status push: notify_data as a command status
// carries it.
type envelope = push[commandStatusData]

type commandStatusData struct {
	Header header `json:"header"`
	Body   *struct {
		CommandID     string          `json:"command_id"`
		CreatedTime   string          `json:"created_time"`
		SentTime      string          `json:"sent_time"`
		DeliveredTime string          `json:"delivered_time"`
		ResponseTime  string          `json:"response_time"`
		Status        string          `json:"status"`
		Result        json.RawMessage `json:"result"`
	} `json:"body"`
}

// Decode is DecodeAt with the current time as the receive time.
func Decode(body []byte) (Notification, error) {
	return DecodeAt(body, time.Now())
}

// DecodeAt parses a command status notification in any of the platform's
// formats: the v5 `device.command.status` / `update` push (AMQP or HTTP),
// the legacy command status callbacks (v1 and NB-IoT) and the legacy
// messageConfirm acknowledgment (see legacy.go). receivedAt stands in for
// the event time of legacy callbacks, which carry none.
//
// It returns a *SkipError for a valid notification of another resource and
// an *Error for anything that cannot be stored as it is. The returned
// Notification's Payload aliases body, and so may its Tags and Result.
//
// The bodies it meets most are read in one pass by decodeFast (fast.go);
// decodeStd, with encoding/json, decides every other, and decodeFast only
// answers where it gives decodeStd's answer.
func DecodeAt(body []byte, receivedAt time.Time) (Notification, error) {
	var n Notification
	sure, err := decodeFast(body, &n)
	if checkFast != nil {
		checkFast(body, receivedAt, sure, n, err)
	}
	if sure {
		return n, err
	}
	return decodeStd(body, receivedAt)
}

// checkFast is nil but in this package's tests (export_test.go), where it
// holds every answer of decodeFast to decodeStd's: every test and fuzz input
// of DecodeAt then tests the fast path too.
var checkFast func(body []byte, receivedAt time.Time, sure bool, n Notification, err error)

// decodeStd is DecodeAt with encoding/json: the decoder for every format
// and every reason, and the reference that decodeFast must agree with.
func decodeStd(body []byte, receivedAt time.Time) (Notification, error) {
	var n Notification
	var env envelope
	err := env.read(body, ResourceCommandStatus, resourceCommandStatusMisspelled)
	if err != nil {
		// errors.As puts skip on the heap: declared here, it costs an
		// allocation only to the bodies that are not stored.
		var skip *SkipError
		if errors.As(err, &skip) && skip.Resource == "" {
			// Without a resource it is not a push: the legacy formats
			// have none.
			return decodeLegacy(body, receivedAt)
		}
		return n, err
	}
	data := env.NotifyData
	b := data.Body
	if b == nil {
		return n, errorf(ClassMissingField, "notify_data.body is missing")
	}
	if b.CommandID == "" {
		return n, errorf(ClassMissingField, "notify_data.body.command_id is missing")
	}
	if b.Status == "" {
		return n, errorf(ClassMissingField, "notify_data.body.status is missing")
	}
	n.Status = Status(asciiUpper(b.Status))
	if _, ok := v5Statuses[n.Status]; !ok {
		return n, errorf(ClassUnknownStatus, "unknown command status %q", b.Status)
	}
	n.CommandID = b.CommandID
	n.RequestID = env.RequestID

	if n.EventTime, err = env.eventTime(); err != nil {
		return n, err
	}
	for _, f := range []struct {
		name string
		in   string
		out  *time.Time
	}{
		{"created_time", b.CreatedTime, &n.CreatedTime},
		{"sent_time", b.SentTime, &n.SentTime},
		{"delivered_time", b.DeliveredTime, &n.DeliveredTime},
		{"response_time", b.ResponseTime, &n.ResponseTime},
	} {
		if f.in == "" {
			continue
		}
		if *f.out, err = parseTime("notify_data.body."+f.name, f.in); err != nil {
			return n, err
		}
	}

	h := &data.Header
	n.DeviceID, n.ProductID, n.AppID, n.GatewayID, n.NodeID = h.DeviceID, h.ProductID, h.AppID, h.GatewayID, h.NodeID
	if n.Tags, err = headerTags(h); err != nil {
		return n, err
	}
	n.Result = nullToNil(b.Result)
	n.Payload = body
	n.HeaderStart, n.HeaderEnd = headerSpan(body)
	return n, storable(body)
}

// ParseTime accepts the two formats IoTDA uses: yyyyMMdd'T'HHmmss'Z' and
// ISO-8601 (yyyy-MM-dd'T'HH:mm:ss.SSS'Z', or any RFC 3339 time).
// PostgreSQL keeps microseconds, so finer digits are dropped here to keep the
// stored time and the notification's key in step.
func ParseTime(s string) (time.Time, error) {
	if t, ok := parseStamp(s); ok {
		return t, nil
	}
	return parseTimeStd(s)
}

// parseTimeStd is ParseTime with time.Parse alone: every format it takes,
// every error.
func parseTimeStd(s string) (time.Time, error) {
	var t time.Time
	var err error
	if len(s) == len("20060102T150405Z") && s[8] == 'T' {
		t, err = time.Parse("20060102T150405Z", s)
	} else {
		t, err = time.Parse(time.RFC3339Nano, s)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither yyyyMMddTHHmmssZ nor ISO-8601", s)
	}
	t = t.UTC().Truncate(time.Microsecond)
	if t.Before(minTime) || !t.Before(maxTime) {
		return time.Time{}, fmt.Errorf("%q is outside %d..%d", s, minTime.Year(), maxTime.Year()-1)
	}
	return t, nil
}

func parseTime(field, s string) (time.Time, error) {
	t, err := ParseTime(s)
	if err != nil {
		return t, errorf(ClassInvalidTime, "%s: %v", field, err)
	}
	return t, nil
}

// asciiUpper upper-cases ASCII letters only: strings.ToUpper would also
// turn look-alikes such as "ſent" into "SENT".
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func nullToNil(raw json.RawMessage) json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}

// storable is the last check of every decoder: catching what PostgreSQL
// would refuse here gives a clear reason instead of a database error.
// (Numbers beyond numeric's range are left to the store, which isolates and
// dead-letters them.)
func storable(body []byte) error {
	if reason := unstorableEscape(body); reason != "" {
		return errorf(ClassUnstorable, "%s", reason)
	}
	return nil
}

// unstorableEscape finds a \u escape that PostgreSQL's text and jsonb
// refuse: NUL, or a UTF-16 surrogate that is not part of a pair. body must be
// valid JSON, where a backslash only ever starts an escape inside a string.
func unstorableEscape(body []byte) string {
	if bytes.IndexByte(body, '\\') < 0 {
		return ""
	}
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		if i+1 >= len(body) || body[i+1] != 'u' {
			i++ // a two-character escape such as \\ or \"
			continue
		}
		cp, ok := hex4(body, i+2)
		if !ok {
			return ""
		}
		switch {
		case cp == 0:
			return "a string contains NUL (\\u0000), which PostgreSQL cannot store"
		case cp >= 0xD800 && cp <= 0xDBFF:
			low, ok := hex4(body, i+8)
			if !ok || body[i+6] != '\\' || body[i+7] != 'u' || low < 0xDC00 || low > 0xDFFF {
				return "a string holds a lone UTF-16 surrogate escape, which PostgreSQL cannot store"
			}
			i += 11
		case cp >= 0xDC00 && cp <= 0xDFFF:
			return "a string holds a lone UTF-16 surrogate escape, which PostgreSQL cannot store"
		default:
			i += 5
		}
	}
	return ""
}

// hex4 reads the four hex digits of a \u escape at body[at:].
func hex4(body []byte, at int) (rune, bool) {
	if at+4 > len(body) {
		return 0, false
	}
	var cp rune
	for _, c := range body[at : at+4] {
		cp <<= 4
		switch {
		case '0' <= c && c <= '9':
			cp |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			cp |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			cp |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return cp, true
}

func jsonError(err error) *Error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if field == "" {
			return errorf(ClassInvalidJSON, "body is a JSON %s, want an object", typeErr.Value)
		}
		return errorf(ClassInvalidField, "%s: want %s, got %s", field, typeErr.Type, typeErr.Value)
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return errorf(ClassInvalidJSON, "invalid JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	}
	return errorf(ClassInvalidJSON, "invalid JSON: %v", err)
}
