package ingest

import (
	"errors"
	"time"

	"github.com/cmdtrack/cmdtrack/notification"
)

// Record is what a message of a tracked kind decodes to: a command status
// notification, a device status change, ... Each kind's type says what it
// is through these methods; what it means for the store is the store's
// writer for that kind.
type Record interface {
	// Kind names the kind (notification.KindCommand, ...): the key of
	// every per-kind table.
	Kind() string
	// Time is when the platform generated the record; the lag metric
	// reads it.
	Time() time.Time
	// Body is the message as received, kept in history and, should
	// PostgreSQL refuse the record, in its dead letter.
	Body() []byte
	// Ahead names the first time the record claims that is after limit,
	// which makes it a dead letter (see Limits.MaxFutureSkew).
	Ahead(limit time.Time) (field string, at time.Time, ok bool)
}

// Kind is one kind of thing cmdtrack tracks, as the platform pushes it.
type Kind struct {
	// Name is the name its records give (Record.Kind).
	Name string
	// Resources are the notification resources it reads; none for a kind
	// the platform pushes nothing about, whose records cmdtrack makes itself
	// (the synchronous calls `cmdtrack send` records).
	Resources []string
	// Decode reads one message of the kind, receivedAt standing in for a
	// time the format does not carry. It returns an *notification.Error for
	// a message that cannot be used as it is, and may return a
	// *notification.SkipError for another resource's notification. Nil
	// when the kind reads no resource.
	Decode func(body []byte, receivedAt time.Time) (Record, error)
}

// kinds are the kinds cmdtrack tracks, one line each. The first is tried
// on every message without looking up its resource: it is the kind nearly
// every message is, and it also reads the legacy callbacks, which name no
// resource. Every other message is decoded by the kind its resource names.
var kinds = []Kind{
	{notification.KindCommand, []string{notification.ResourceCommandStatus}, decodeCommand},
	{notification.KindPresence, []string{notification.ResourceDeviceStatus}, decodePresence},
	{notification.KindMessage, []string{notification.ResourceMessageStatus}, decodeMessage},
	{notification.KindCall, nil, nil},
}

// byResource finds the kind a resource names.
var byResource = func() map[string]*Kind {
	m := make(map[string]*Kind)
	for i := range kinds {
		for _, r := range kinds[i].Resources {
			m[r] = &kinds[i]
		}
	}
	return m
}()

// Kinds names the kinds cmdtrack tracks, in the order of the table.
func Kinds() []string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.Name
	}
	return names
}

// ReceivedKinds names the kinds a received message may be, in the order of
// the table, for those that label what they receive by kind (metrics): a
// kind that reads no resource is recorded by cmdtrack itself (cmdtrack
// send), never received.
func ReceivedKinds() []string {
	var names []string
	for _, k := range kinds {
		if k.Decode != nil {
			names = append(names, k.Name)
		}
	}
	return names
}

// decode reads body as the kind its resource names.
//
// The platform writes the resource first ({"resource" : ..., seed 000), and
// a body whose first member names another kind's resource goes to that
// kind's decoder first: through the first kind's, which reads the whole
// body before it learns the resource and skips it, a device message was
// read twice (a third of its decoding time, BenchmarkClassifyStreams). It
// is a hint only, taken when that decoder reads the body whole: then the
// body's last resource is that kind's (a key may be given twice: the last
// one counts), and the table would have come to the same decoder. Any
// other answer of it, a skip or a reason to refuse the body, is not used:
// the body is decoded as any other, by decodeByTable, so that a dead
// letter's reason is the table's (the first kind's decoder may stop at
// another field of a broken body than this one).
func decode(body []byte, receivedAt time.Time) (Record, error) {
	if k := byResource[string(notification.LeadingResource(body))]; k != nil && k != &kinds[0] {
		if rec, err := k.Decode(body, receivedAt); err == nil {
			return rec, nil
		}
	}
	return decodeByTable(body, receivedAt)
}

// decodeByTable reads body with the table's first kind, and, if that skips
// it as another resource's, with the kind that resource names.
func decodeByTable(body []byte, receivedAt time.Time) (Record, error) {
	rec, err := kinds[0].Decode(body, receivedAt)
	if err == nil {
		// Before errors.As: its target would cost an allocation on every
		// message.
		return rec, nil
	}
	var skip *notification.SkipError
	if errors.As(err, &skip) {
		if k := byResource[skip.Resource]; k != nil && k != &kinds[0] {
			return k.Decode(body, receivedAt)
		}
	}
	return nil, err
}

func decodeCommand(body []byte, receivedAt time.Time) (Record, error) {
	return record(notification.DecodeAt(body, receivedAt))
}

func decodePresence(body []byte, _ time.Time) (Record, error) {
	return record(notification.DecodePresence(body))
}

func decodeMessage(body []byte, _ time.Time) (Record, error) {
	return record(notification.DecodeMessage(body))
}

// record is a decoder's answer as a Record. The copy goes to the heap here,
// and only here: a decoder's own variable, once its address is taken, would
// go there for every message, skipped and dead-lettered ones too.
func record[T any, P interface {
	*T
	Record
}](v T, err error) (Record, error) {
	if err != nil {
		return nil, err
	}
	kept := v
	return P(&kept), nil
}
