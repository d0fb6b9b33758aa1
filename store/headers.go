package store

import (
	"bytes"
	"cmp"
	"hash/fnv"
	"math"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cmdtrack/cmdtrack/ingest"
)

// maxKnownHeaderBytes bounds knownHeaders by the text it holds: a header is
// about 180 bytes, one per device, so some 45,000 devices' headers.
const maxKnownHeaderBytes = 8 << 20

// knownHeaders are the notification headers this store has seen stored,
// with the text stored under each id, so that a batch stores only the
// headers it brings new, and cuts a history row's header out where the
// text stored under its id is that very header. Every batch inserted all of
// its headers (11 ms a statement in make bench with one endpoint, the
// writers waiting for each other's uncommitted header) and the statement
// compared each row with its stored header. A header is never deleted or
// changed, so what is known stays true. When full, it starts over: what it
// forgets is read again, once.
type knownHeaders struct {
	mu    sync.Mutex
	texts map[int64][]byte
	bytes int
}

// unknown returns hs without the headers whose id is known (whatever text
// is stored under it). A nil k knows none.
func (k *knownHeaders) unknown(hs []headerRow) []headerRow {
	if k == nil || len(hs) == 0 {
		return hs
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.DeleteFunc(hs, func(h headerRow) bool {
		_, ok := k.texts[h.id]
		return ok
	})
}

// holds says whether text is the header stored under id.
func (k *knownHeaders) holds(id int64, text []byte) bool {
	if k == nil {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	stored, ok := k.texts[id]
	return ok && bytes.Equal(stored, text)
}

// learn records hs as stored, each with the text stored under its id.
func (k *knownHeaders) learn(hs []headerRow) {
	if len(hs) == 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, h := range hs {
		n += len(h.text)
	}
	if k.texts == nil || k.bytes+n > maxKnownHeaderBytes {
		k.texts, k.bytes = make(map[int64][]byte, len(hs)), 0
	}
	for _, h := range hs {
		if _, ok := k.texts[h.id]; !ok {
			k.texts[h.id] = h.text
			k.bytes += len(h.text)
		}
	}
}

// A history whose payloads hold notify_data.header (every notification of
// a device holds the same one) keeps each header once, in
// notification_headers, and each payload without it (migrations 027 and
// 029): the same mechanism for every such kind, which the writers table
// names by where its records' decoder placed the header (writers' header),
// and whose history's columns end in payloadColumns.

// headerCut is a history row's header, when it is worth keeping once, and
// the payload it is cut from.
type headerCut struct {
	// header is the payload's header (see place), id its id in
	// notification_headers and at the position of its first character in
	// the payload (from 1), start that of its first byte.
	header []byte
	id     int64
	at     int32
	start  int
	// stored is the payload without its header, when the writer cut it
	// (the header stored under id is that very text); nil: whole.
	stored []byte
}

// minHeader is the shortest header kept once: a row that names one stores
// 12 bytes (its id and position) instead.
const minHeader = 32

// placed is rec's header, from where its kind's decoder placed it in the
// payload, when it is long enough to be worth keeping once; nothing for a
// kind whose history keeps every payload whole.
func placed(rec ingest.Record) headerCut {
	var c headerCut
	span := writers[writerOf(rec.Kind())].header
	if span == nil {
		return c
	}
	payload := rec.Body()
	start, end := span(rec)
	if end-start < minHeader || start < 0 || end > len(payload) || len(payload) > math.MaxInt32 {
		return c
	}
	c.header, c.start = payload[start:end:end], start
	h := fnv.New64a()
	h.Write(c.header)
	c.id = int64(h.Sum64())
	c.at = int32(utf8.RuneCount(payload[:start]) + 1)
	return c
}

// headers are the distinct headers of cuts, by id (the first of two texts
// with one id; the statement keeps whichever is stored first).
func headers(cuts []headerCut) []headerRow {
	var out []headerRow
	for i := range cuts {
		if cuts[i].header != nil {
			out = append(out, headerRow{id: cuts[i].id, text: cuts[i].header})
		}
	}
	slices.SortFunc(out, func(a, b headerRow) int { return cmp.Compare(a.id, b.id) })
	return slices.CompactFunc(out, func(a, b headerRow) bool { return a.id == b.id })
}

// headerWriter is a kind's writer whose history keeps headers once: it is
// told which headers are stored (nil: none, every payload stored whole).
type headerWriter interface {
	knowHeaders(known *knownHeaders)
}

// headerCutter is what a headerWriter holds: the headers known stored.
type headerCutter struct {
	known *knownHeaders
}

func (w *headerCutter) knowHeaders(known *knownHeaders) { w.known = known }

// cut sets c.stored to payload without its header, where the text stored
// under its id is that very header. Cut here, not in SQL: the statement
// joined each row to its header and compared the text (2.8 -> 6.0 ms a
// batch of 256 in make bench/compare, PostgreSQL's CPU 43 -> 58 us a
// notification). The text compared is the one stored under the id, so a
// collision still stores the payload whole.
func (w *headerCutter) cut(c *headerCut, payload []byte) {
	if c.header != nil && w.known.holds(c.id, c.header) {
		c.stored = append(append(make([]byte, 0, len(payload)-len(c.header)), payload[:c.start]...), payload[c.start+len(c.header):]...)
	}
}

// payloadColumns are a history's payload columns where its kind keeps
// headers once: the payload, without its header where the writer cut it
// (only where notification_headers holds that very text under its id: see
// headerCutter.cut), so that the history's view (command_events,
// message_events) puts back the payload as received, byte for byte, from
// the header and the character position it was cut from.
func payloadColumns[R any](cut func(*R) *headerCut, payload func(*R) []byte) []column[R] {
	return []column[R]{
		valueCol("stored_payload", "text", plain, func(r *R) string {
			if c := cut(r); c.stored != nil {
				return unsafeString(c.stored)
			}
			return unsafeString(payload(r))
		}),
		valueCol("header_id", "int8", plain, func(r *R) pgtype.Int8 {
			c := cut(r)
			return pgtype.Int8{Int64: c.id, Valid: c.stored != nil}
		}),
		valueCol("header_at", "int4", plain, func(r *R) pgtype.Int4 {
			c := cut(r)
			return pgtype.Int4{Int32: c.at, Valid: c.stored != nil}
		}),
	}
}
