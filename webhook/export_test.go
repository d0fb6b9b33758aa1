package webhook

import "time"

// RetryDelay is retryDelay, for the tests of its bounds.
var RetryDelay = retryDelay

// SetBacklogClock sets c's clock.
func SetBacklogClock(c *BacklogCollector, now func() time.Time) { c.now = now }
