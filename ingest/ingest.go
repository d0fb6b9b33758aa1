// Package ingest decides what a received message means for the store: a
// notification to merge into its command's row, a dead letter with the
// reason it cannot be used, or nothing at all (a notification of another
// resource that shares the queue).
//
// Every way in goes through it (the AMQP consumer, the HTTP push receiver,
// `cmdtrack replay` and `cmdtrack send`), so they all decide the same way.
// It knows nothing of AMQP, HTTP or PostgreSQL.
package ingest

import (
	"errors"
	"fmt"
	"time"

	"github.com/cmdtrack/cmdtrack/notification"
)

// Item is the effect of one received message: a notification to merge into
// its command's row and history, a dead letter, or neither (skip).
type Item struct {
	// Source names where the message came from ("amqp:DefaultQueue", "http", "api").
	Source       string
	Notification *notification.Notification
	DeadLetter   *DeadLetter
}

// DeadLetter is a message cmdtrack could not use, kept for replay.
type DeadLetter struct {
	Class  notification.Class
	Reason string
	// Body is the message as received, byte for byte. Never nil: an empty
	// body is still a body.
	Body []byte
	// Properties are what helps trace the message to its sender (AMQP
	// message id, HTTP remote address, ...).
	Properties map[string]string
}

// Outcome is what became of an item once its batch committed.
type Outcome uint8

// The outcomes. The zero value is not one: a Result always says.
const (
	// Applied: merged into the command's row, and its history holds it.
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
}

// Result is what storing it as it is would mean.
func (it *Item) Result() Result {
	switch {
	case it.Notification != nil:
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
}

// Classify turns a message body into what must be stored for it: a
// notification, a dead letter, or nothing at all (a notification of another
// resource). receivedAt stands in for the event time of formats that carry
// none (legacy callbacks; for replay, when the dead letter was received).
func Classify(body []byte, source string, receivedAt time.Time, lim Limits) Item {
	if len(body) > lim.MaxBodyBytes {
		return Unusable(source, body, notification.ClassTooLarge,
			fmt.Sprintf("body is %d bytes, limit is %d (CMDTRACK_MAX_BODY_BYTES)", len(body), lim.MaxBodyBytes))
	}
	n, err := notification.DecodeAt(body, receivedAt)
	if err == nil {
		return Item{Source: source, Notification: &n}
	}
	var skip *notification.SkipError
	if errors.As(err, &skip) {
		return Item{Source: source}
	}
	var bad *notification.Error
	if !errors.As(err, &bad) {
		bad = &notification.Error{Class: notification.ClassInvalidJSON, Reason: err.Error()}
	}
	return Unusable(source, body, bad.Class, bad.Reason)
}

// Unusable is the item for a message that cannot be used, for a reason found
// before its body could be decoded (an AMQP message without a body, say).
func Unusable(source string, body []byte, class notification.Class, reason string) Item {
	if body == nil {
		body = []byte{} // a dead letter's body is NOT NULL
	}
	return Item{Source: source, DeadLetter: &DeadLetter{Class: class, Reason: reason, Body: body}}
}
