package pipeline

import "time"

// SetClock makes p measure progress and stalls by now; call it before Run.
func SetClock(p *Pipeline, now func() time.Time) { p.now = now }

// SetAfter makes p wait out its retries' backoff on after; call it before Run.
func SetAfter(p *Pipeline, after func(time.Duration) <-chan time.Time) { p.after = after }

// The outage's log lines, for tests to count.
const (
	LogWriteFailed     = logWriteFailed
	LogWriteStillFails = logWriteStillFails
	LogWriteRecovered  = logWriteRecovered
)
