package webhook_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/webhook"
)

// The delay doubles from lo up to hi, and is jittered over the whole range
// below that.
func TestRetryDelay(t *testing.T) {
	lo, hi := 5*time.Second, time.Hour
	for _, tc := range []struct {
		attempt int
		ceiling time.Duration
	}{
		{0, lo}, {1, lo}, {2, 2 * lo}, {3, 4 * lo}, {10, 512 * lo}, {11, hi}, {1000, hi},
	} {
		const n = 2000
		var below, above int
		for range n {
			d := webhook.RetryDelay(tc.attempt, lo, hi)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.LessOrEqual(t, d, tc.ceiling, "attempt %d", tc.attempt)
			if d < tc.ceiling/4 {
				below++
			}
			if d > tc.ceiling*3/4 {
				above++
			}
		}
		// Full jitter: about a quarter each; with 2000 draws, under 1 in
		// 10^20 to fall below 10%.
		require.Greater(t, below, n/10, "attempt %d: full jitter reaches low delays", tc.attempt)
		require.Greater(t, above, n/10, "attempt %d", tc.attempt)
	}
	require.Equal(t, time.Duration(0), webhook.RetryDelay(1, 0, 0), "no overflow or panic at zero")
}
