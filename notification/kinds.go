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
