// Package ingest decides what a received message means for the store: a
// notification to merge into its command's row, a dead letter with the
// reason it cannot be used, or nothing at all (a notification of another
// resource that shares the queue).
//
// Every way in goes through it (the AMQP consumer, the HTTP push receiver,
// `cmdtrack replay`, and, for what the API answers, `cmdtrack send` and
// `cmdtrack reconcile`), so they all decide the same way.
// It knows nothing of AMQP, HTTP or PostgreSQL.
package ingest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/cmdtrack/cmdtrack/notification"
)

// Item is the effect of one received message: a record of a tracked kind
// to merge into what the store holds (a command status notification into
// its command's row and history, a device status change into the device's
// presence, ...), a dead letter, or neither (skip).
type Item struct {
	// Source names where the message came from ("amqp:DefaultQueue", "http", "api").
	Source     string
	Record     Record
	DeadLetter *DeadLetter
}

// Notification is the item's command status notification, or nil when it
// holds another kind, a dead letter or nothing.
func (it *Item) Notification() *notification.Notification {
	n, _ := it.Record.(*notification.Notification)
	return n
}

// EventTime is when the platform generated the item's record (zero for a
// dead letter or a skipped message).
func (it *Item) EventTime() time.Time {
	if it.Record == nil {
		return time.Time{}
	}
	return it.Record.Time()
}

// Payload is the body of the item's record (nil for a dead letter or a
// skipped message).
func (it *Item) Payload() []byte {
	if it.Record == nil {
		return nil
	}
	return it.Record.Body()
}

// DeadLetter is a message cmdtrack could not use, kept for replay.
type DeadLetter struct {
	Class  notification.Class
	Reason string
	// Body is the message as received, byte for byte, or for a message
	// larger than the limit only its first DeadLetterPrefix bytes. Never
	// nil: an empty body is still a body.
	Body []byte
	// Length is the whole message's length and SHA256 its digest, when Body
	// holds only a prefix of it (zero and nil otherwise).
	Length int
	SHA256 []byte
	// Properties are what helps trace the message to its sender (AMQP
	// message id, HTTP remote address, ...).
	Properties map[string]string
}

// Outcome is what became of an item once its batch committed.
type Outcome uint8

// The outcomes. The zero value is not one: a Result always says.
const (
	// Applied: merged into the command's row, and its history holds it; or,
	// for a device status change, merged into the device's presence.
	Applied Outcome = iota + 1
	// DeadLettered: stored in dead_letters with its reason.
	DeadLettered
	// Skipped: another resource's notification; nothing stored.
	Skipped
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case DeadLettered:
		return "dead_lettered"
	case Skipped:
		return "skipped"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Result is what became of one item. The store may turn a notification that
// PostgreSQL refuses into a dead letter, so a Result is the only place that
// says what was stored.
type Result struct {
	Outcome Outcome
	// DeadLetter is set when Outcome is DeadLettered: the class and reason
	// that were stored.
	DeadLetter *DeadLetter
	// Changed is set when Outcome is Applied and the notification created
	// its command's row or changed it. It is false when the row already said
	// as much (a redelivery) or the merge kept a winner it does not beat and
	// it filled in no fact. Several notifications of one command in one
	// batch are merged one after the other, in no set order, each judged
	// against the row as those before it left it.
	Changed bool
}

// Result is what storing it as it is would mean.
func (it *Item) Result() Result {
	switch {
	case it.Record != nil:
		return Result{Outcome: Applied}
	case it.DeadLetter != nil:
		return Result{Outcome: DeadLettered, DeadLetter: it.DeadLetter}
	}
	return Result{Outcome: Skipped}
}

// Limits bound what a message may be or claim.
type Limits struct {
	// MaxBodyBytes dead-letters larger bodies (class too_large).
	MaxBodyBytes int
	// MaxFutureSkew dead-letters a notification that claims a time further
	// ahead of its receipt than this (class future_event_time): the merge
	// takes the latest event, so one notification dated in the future would
	// otherwise win against every genuine one that follows. Zero means 1 h.
	MaxFutureSkew time.Duration
}

// DeadLetterPrefix is how much of a message larger than the limit is kept:
// enough to see what it was, not enough for a storm of junk to fill the disk.
const DeadLetterPrefix = 64 << 10

func (lim Limits) skew() time.Duration {
	if lim.MaxFutureSkew <= 0 {
		return time.Hour
	}
	return lim.MaxFutureSkew
}

// Classify turns a message body into what must be stored for it: a
// notification, a dead letter, or nothing at all (a notification of another
// resource). receivedAt stands in for the event time of formats that carry
// none (legacy callbacks; for replay, when the dead letter was received).
func Classify(body []byte, source string, receivedAt time.Time, lim Limits) Item {
	return classify(body, source, receivedAt, receivedAt, "its receipt", lim)
}

// Reclassify is Classify for a message received at receivedAt and decided
// again at now (cmdtrack replay). receivedAt still stands in for a missing
// event time, but a time ahead is judged against the later of receivedAt
// and now: a notification a worker refused because its clock lagged goes
// through once the time it claims has come, while one dated further ahead
// than now (a forgery dated 2099) is still refused.
func Reclassify(body []byte, source string, receivedAt, now time.Time, lim Limits) Item {
	if now.After(receivedAt) {
		return classify(body, source, receivedAt, now, "its replay", lim)
	}
	return Classify(body, source, receivedAt, lim)
}

// classify is Classify, judging times ahead against judgeAt, named by judged
// in a dead letter's reason.
func classify(body []byte, source string, receivedAt, judgeAt time.Time, judged string, lim Limits) Item {
	if len(body) > lim.MaxBodyBytes {
		sum := sha256.Sum256(body)
		// A copy of the prefix: the whole body may be let go once the dead
		// letter is stored.
		it := Unusable(source, bytes.Clone(body[:min(len(body), DeadLetterPrefix)]), notification.ClassTooLarge,
			fmt.Sprintf("body is %d bytes, limit is %d (CMDTRACK_MAX_BODY_BYTES); its first %d bytes are kept",
				len(body), lim.MaxBodyBytes, min(len(body), DeadLetterPrefix)))
		it.DeadLetter.Length, it.DeadLetter.SHA256 = len(body), sum[:]
		return it
	}
	rec, err := decode(body, receivedAt)
	if err == nil {
		return accept(rec, source, judgeAt, judged, lim)
	}
	if errors.As(err, new(*notification.SkipError)) {
		return Item{Source: source}
	}
	var bad *notification.Error
	if !errors.As(err, &bad) {
		bad = &notification.Error{Class: notification.ClassInvalidJSON, Reason: err.Error()}
	}
	return Unusable(source, body, bad.Class, bad.Reason)
}

// Accept is the item for a record, once it is found plausible: one built
// from a structured answer (the command API) goes through the same rules
// as one decoded from a body.
func Accept(rec Record, source string, receivedAt time.Time, lim Limits) Item {
	return accept(rec, source, receivedAt, "its receipt", lim)
}

// accept is Accept, judging times ahead against at, named by judged.
func accept(rec Record, source string, at time.Time, judged string, lim Limits) Item {
	if field, t, ahead := rec.Ahead(at.Add(lim.skew())); ahead {
		return futureDated(source, rec.Body(), timed{field, t}, at, judged, lim)
	}
	return Item{Source: source, Record: rec}
}

type timed struct {
	name string
	at   time.Time
}

func futureDated(source string, body []byte, t timed, at time.Time, judged string, lim Limits) Item {
	return Unusable(source, body, notification.ClassFutureTime, fmt.Sprintf(
		"%s %s is %s ahead of %s at %s; the limit is %s (CMDTRACK_MAX_FUTURE_SKEW): a wrong clock or a forgery",
		t.name, t.at.UTC().Format(time.RFC3339Nano), t.at.Sub(at).Round(time.Second),
		judged, at.UTC().Format(time.RFC3339Nano), lim.skew()))
}

// Unusable is the item for a message that cannot be used, for a reason found
// before its body could be decoded (an AMQP message without a body, say).
func Unusable(source string, body []byte, class notification.Class, reason string) Item {
	if body == nil {
		body = []byte{} // a dead letter's body is NOT NULL
	}
	return Item{Source: source, DeadLetter: &DeadLetter{Class: class, Reason: reason, Body: body}}
}
