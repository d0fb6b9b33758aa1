package store

import (
	"bytes"
	"slices"
	"sync"
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
