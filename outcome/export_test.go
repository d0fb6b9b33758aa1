package outcome

import "time"

// SetDBClock makes c read the time from now.
func SetDBClock(c *DBCollector, now func() time.Time) { c.now = now }

// ExporterInterval is how often e folds.
func ExporterInterval(e *Exporter) time.Duration { return e.interval }
