package outcome

import "time"

// SetDBClock makes c read the time from now.
func SetDBClock(c *DBCollector, now func() time.Time) { c.now = now }
