package reconcile

import (
	"context"
	"sync"
	"time"
)

// limiter spaces calls at least every apart, and lets a throttled answer
// hold every call back until a given time.
type limiter struct {
	every time.Duration

	mu   sync.Mutex
	next time.Time // the earliest the next call may go
}

func newLimiter(every time.Duration) *limiter { return &limiter{every: every} }

// wait blocks until the caller may call, or ctx ends (ctx bounds the wait).
func (l *limiter) wait(ctx context.Context) error {
	l.mu.Lock()
	at := time.Now()
	if l.next.After(at) {
		at = l.next
	}
	l.next = at.Add(l.every)
	l.mu.Unlock()
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pause holds every call back until at least until.
func (l *limiter) pause(until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if until.After(l.next) {
		l.next = until
	}
}
