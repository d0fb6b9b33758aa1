package webhook

import (
	"math/rand/v2"
	"time"
)

// retryDelay is how long an event waits after its attempt-th failed
// attempt: lo doubling per attempt up to hi, with full jitter (anywhere from
// zero to that), so that the events an endpoint failed together, and the
// replicas that sent them, come back spread out rather than at one instant.
// internal/backoff keeps the upper half; a receiver coming back from an
// outage is better served by the whole range.
func retryDelay(attempt int, lo, hi time.Duration) time.Duration {
	d := lo << min(max(attempt, 1)-1, 30)
	if d > hi || d <= 0 {
		d = hi
	}
	return rand.N(d + 1)
}
