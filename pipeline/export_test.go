package pipeline

import "time"

// SetClock makes p measure progress and stalls by now; call it before Run.
func SetClock(p *Pipeline, now func() time.Time) { p.now = now }
