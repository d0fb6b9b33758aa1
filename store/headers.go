package store

import (
	"slices"
	"sync"
)

// maxKnownHeaders bounds knownHeaders: 8 bytes and a map entry's overhead
// each, a few MiB at most. A fleet has about one header per device.
const maxKnownHeaders = 1 << 17

// knownHeaders are the ids of notification headers this store has seen
// committed, so that a batch writes only the headers it brings new: every
// batch inserted all of its headers (11 ms a statement in make bench with
// one endpoint, 4.1 s of a 50,000-notification drain, the writers waiting
// for each other's uncommitted header). A header is never deleted, so a
// known id stays true; one stored under an id by another text (a collision)
// is caught where the history row is written, which stores that payload
// whole. When full, it starts over: what it forgets is written again, once.
type knownHeaders struct {
	mu  sync.Mutex
	ids map[int64]struct{}
}

// unknown returns hs without the headers known to be stored. A nil k knows
// none.
func (k *knownHeaders) unknown(hs []headerRow) []headerRow {
	if k == nil || len(hs) == 0 {
		return hs
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.DeleteFunc(hs, func(h headerRow) bool {
		_, ok := k.ids[h.id]
		return ok
	})
}

// add records ids as stored: call it once their batch has committed.
func (k *knownHeaders) add(ids []int64) {
	if len(ids) == 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ids == nil || len(k.ids)+len(ids) > maxKnownHeaders {
		k.ids = make(map[int64]struct{}, len(ids))
	}
	for _, id := range ids {
		k.ids[id] = struct{}{}
	}
}
