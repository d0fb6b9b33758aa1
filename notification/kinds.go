package notification

import "time"

// The kinds of thing cmdtrack tracks, as each decoded type names itself.
// The name is the key of every per-kind table (ingest's decoders, the
// store's writers, the metrics' kind label), so it never changes once a
// kind has shipped.
const (
	KindCommand  = "command"
	KindPresence = "presence"
	KindMessage  = "message"
)

// Kind names the notification's kind.
func (n *Notification) Kind() string { return KindCommand }

// Time is when the platform generated the notification.
func (n *Notification) Time() time.Time { return n.EventTime }

// Body is the notification as received.
func (n *Notification) Body() []byte { return n.Payload }

// Ahead names the first time the notification claims that is after limit.
// The merge takes the latest event and the latest facts, so a time from the
// future would outrank every genuine notification that follows.
func (n *Notification) Ahead(limit time.Time) (field string, at time.Time, ok bool) {
	return firstAfter(limit, named{"event time", n.EventTime}, named{"created_time", n.CreatedTime},
		named{"sent_time", n.SentTime}, named{"delivered_time", n.DeliveredTime},
		named{"response_time", n.ResponseTime})
}

// Kind names the device status change's kind.
func (p *Presence) Kind() string { return KindPresence }

// Time is when the platform generated the change's notification.
func (p *Presence) Time() time.Time { return p.EventTime }

// Body is the notification as received.
func (p *Presence) Body() []byte { return p.Payload }

// Ahead names the first time the change claims that is after limit: the
// latest change wins the merge.
func (p *Presence) Ahead(limit time.Time) (field string, at time.Time, ok bool) {
	return firstAfter(limit, named{"event time", p.EventTime}, named{"status_update_time", p.Since},
		named{"last_online_time", p.LastOnlineTime})
}

// named is a time a record claims, with the field it came from.
type named struct {
	field string
	at    time.Time
}

// firstAfter is Ahead over the given times, in their order.
func firstAfter(limit time.Time, times ...named) (string, time.Time, bool) {
	for _, t := range times {
		if t.at.After(limit) {
			return t.field, t.at, true
		}
	}
	return "", time.Time{}, false
}
