package reconcile

import (
	"context"
	"errors"
	"time"
)

// LogStopped is the line the README tells an operator to look for: a
// refusal by the API stopped reconciling.
const LogStopped = "reconcile stopped until cmdtrack restarts: the API refused it"

// Loop's other lines; cmdtrack_reconcile_runs_total says the same.
const (
	logRun    = "reconcile run done"
	logBusy   = "another replica is reconciling; skipped this round"
	logFailed = "reconcile run failed; trying again at the next interval"
)

// unknownRecheck is how long the daemon leaves a command the API does not
// know before asking again: it is not coming back soon, if ever.
const unknownRecheck = 24 * time.Hour

// Loop reconciles, every interval, the commands not final that have not
// moved for threshold, within the stuck horizon (see Selection), in the
// background of the worker: the first round at
// once, each next one an interval after the previous ended. A round another
// replica holds the lock for is skipped. A StopError (the API refused the
// credentials or the endpoint) ends the loop with one error line; the
// worker goes on without it. ctx bounds the loop: it returns when ctx ends,
// without logging that as an error.
func (r *Reconciler) Loop(ctx context.Context, interval, threshold time.Duration) {
	r.Remember(unknownRecheck)
	for {
		sum, err := r.Run(ctx, Selection{Threshold: threshold}, nil)
		var stop *StopError
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrBusy):
			r.log.Debug(logBusy)
		case errors.As(err, &stop):
			r.log.Error(LogStopped, "class", string(stop.Class), "err", err)
			return
		case err != nil:
			r.log.Warn(logFailed, "err", err)
		case sum.Checked > 0:
			r.log.Info(logRun, "checked", sum.Checked, "updated", sum.Updated, "unchanged", sum.Unchanged,
				"unknown", sum.Unknown, "failed", sum.Failed)
		default:
			r.log.Debug(logRun, "checked", 0)
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
