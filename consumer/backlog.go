package consumer

import (
	"sync"
	"sync/atomic"
	"time"
)

// backlog tracks one queue against the platform's backlog retention
// (IoTDA keeps a queue's messages 24 hours): since when no link consumes
// it, when a message of it was last settled, and how many are held
// unsettled. From these it tells when notifications may have been lost (a
// gap longer than the retention), and which watermark to save so that a gap
// that began before this process is seen too. The clock is injected: tests
// move it rather than wait.
//
// took, released and settled are called per message, from the link's and
// the pipeline's goroutines; the rest from the queue's goroutine and the
// watcher.
type backlog struct {
	retention time.Duration
	now       func() time.Time

	inHand      atomic.Int64
	lastSettled atomic.Int64 // UnixNano; 0: none yet

	mu      sync.Mutex
	started time.Time
	// unconsumed is since when no link consumes the queue, across
	// connections: the start of the process, or the last run's watermark,
	// at first.
	unconsumed time.Time
	saved      int64 // the last watermark saved (UnixNano)
	warned     int64 // the start of the gap last said to be at risk (UnixNano)
}

func newBacklog(retention time.Duration, now func() time.Time) *backlog {
	t := now()
	return &backlog{retention: retention, now: now, started: t, unconsumed: t}
}

// restore starts the queue's gap at the last run's watermark, if it is
// older than this start.
func (b *backlog) restore(at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if at.Before(b.unconsumed) {
		b.unconsumed = at
		b.lastSettled.Store(at.UnixNano())
	}
}

// consumed records that a link consumes the queue again, and returns the
// gap that ended if it was longer than the platform keeps a backlog.
func (b *backlog) consumed() (from, to time.Time, lost bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	from, to = b.unconsumed, b.now()
	return from, to, to.Sub(from) > b.retention
}

// unconsumedFromNow records that the queue's link ended.
func (b *backlog) unconsumedFromNow() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.unconsumed = b.now()
}

// took counts a message received and held.
func (b *backlog) took() { b.inHand.Add(1) }

// released counts a message held no more (settled or given back).
func (b *backlog) released() { b.inHand.Add(-1) }

// settled records that a message's accept was sent.
func (b *backlog) settled() { b.lastSettled.Store(b.now().UnixNano()) }

// watermark returns when the queue was last consumed, if that changed
// since it was last saved.
func (b *backlog) watermark() (time.Time, bool) {
	last := b.lastSettled.Load()
	b.mu.Lock()
	defer b.mu.Unlock()
	if last == 0 || last == b.saved {
		return time.Time{}, false
	}
	return time.Unix(0, last), true
}

// markSaved records that the watermark at was saved.
func (b *backlog) markSaved(at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.saved = at.UnixNano()
}

// atRisk reports, once per gap, since when a queue whose messages are held
// (the database away) has settled nothing, when that is longer than the
// platform keeps its backlog: notifications are being lost meanwhile.
func (b *backlog) atRisk() (since time.Time, risk bool) {
	last := b.lastSettled.Load()
	b.mu.Lock()
	defer b.mu.Unlock()
	since = time.Unix(0, max(last, b.started.UnixNano()))
	if b.inHand.Load() == 0 || b.now().Sub(since) <= b.retention || b.warned == since.UnixNano() {
		return time.Time{}, false
	}
	b.warned = since.UnixNano()
	return since, true
}
