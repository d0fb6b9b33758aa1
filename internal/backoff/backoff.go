// Package backoff spaces out retries.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Delay is how long to wait before attempt (1 for the first retry):
// exponential from lo, doubling up to hi, with full jitter in its upper half,
// so that replicas cut off together do not all come back at the same instant.
func Delay(attempt int, lo, hi time.Duration) time.Duration {
	d := lo << min(max(attempt, 1)-1, 30)
	if d > hi || d <= 0 {
		d = hi
	}
	return d/2 + rand.N(d/2+1)
}
