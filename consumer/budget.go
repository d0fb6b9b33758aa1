package consumer

import (
	"context"
	"sync"
)

// bytesBudget counts the message bytes a queue's links hold (received, not
// yet settled, at their real size) and have asked for (credit issued, at the
// size the next messages are expected to have), against a limit.
type bytesBudget struct {
	limit int64

	mu    sync.Mutex
	used  int64
	freed chan struct{} // closed and replaced whenever used drops
}

func newBytesBudget(limit int64) *bytesBudget {
	return &bytesBudget{limit: limit, freed: make(chan struct{})}
}

// reserve waits, as long as ctx allows, until n more bytes fit, then counts
// them. Nothing held at all always fits, so that a link makes progress
// whatever it asks.
func (b *bytesBudget) reserve(ctx context.Context, n int64) error {
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.limit {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// adjust counts delta more bytes (fewer, if negative). A message larger than
// expected is counted even past the limit: it is already in memory, and the
// next window is made smaller for it.
func (b *bytesBudget) adjust(delta int64) {
	if delta == 0 {
		return
	}
	b.mu.Lock()
	b.used += delta
	if delta < 0 {
		close(b.freed)
		b.freed = make(chan struct{})
	}
	b.mu.Unlock()
}

// inUse is what is counted now.
func (b *bytesBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
