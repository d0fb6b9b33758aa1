// Package upkeep keeps the schema in shape while the workers run: the
// histories' partitions (the commands' and the messages': made ahead and
// back, the default partition emptied into them, those older than retention
// dropped), the other tables' retention, and the rollup behind
// product_daily_outcomes. One replica at a time does each run, under an
// advisory lock; `cmdtrack upkeep` does one run (RunOnce), the worker runs
// Loop.
package upkeep

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cmdtrack/cmdtrack/store"
)

// Store is what upkeep reads and changes (a *store.Store).
type Store interface {
	TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error)
	MaintainPartitions(ctx context.Context, p store.Partitioning, now time.Time) (store.PartitionResult, error)
	Prune(ctx context.Context, r store.Retention, now time.Time) (store.PruneResult, error)
	RefreshRollup(ctx context.Context, days int, now time.Time) error
}

// LockName is the advisory lock that lets one upkeep run at a time per
// schema, whether a replica's or `cmdtrack upkeep`'s.
var LockName = store.LockName("upkeep")

// The log messages, for tests and operators to match.
const (
	LogKept      = "history partitions kept"
	LogLater     = "upkeep left partitions for later; trying again soon"
	LogPruned    = "retention deleted old rows"
	LogFailed    = "upkeep failed; trying again later"
	LogLock      = "upkeep could not take its lock; trying again later"
	LogPrivilege = "upkeep needs to own the tables"
)

// Config tunes upkeep. Zero values take the defaults.
type Config struct {
	// Partitioning is how the histories are partitioned and kept.
	Partitioning store.Partitioning
	// Retention bounds the other tables.
	Retention store.Retention
	// Interval is how often the partitions and retention are kept (default
	// 1h).
	Interval time.Duration
	// Retry is how soon a run that left partitions for later, or failed for
	// a passing reason (the database away), is tried again (default 30s): a
	// busy partition is come back to within a minute, not an Interval later.
	Retry time.Duration
	// RollupInterval is how often the rollup is refreshed (default 1m), over
	// the last RollupDays days (default 3).
	RollupInterval time.Duration
	RollupDays     int
	// PrivilegeHint ends the log line of a run the role may not do: what
	// the operator should change (the caller knows its settings' names).
	PrivilegeHint string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = time.Hour
	}
	if c.Retry <= 0 {
		c.Retry = 30 * time.Second
	}
	c.Retry = min(c.Retry, c.Interval)
	if c.RollupInterval <= 0 {
		c.RollupInterval = time.Minute
	}
	if c.RollupDays <= 0 {
		c.RollupDays = 3
	}
	if c.PrivilegeHint == "" {
		c.PrivilegeHint = "run upkeep as the schema's owner"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Upkeep runs the upkeep against one store.
type Upkeep struct {
	st  Store
	cfg Config
	log *slog.Logger
	m   *Metrics
	// held says whether the last try took the lock.
	held atomic.Bool
}

// HoldsLock reports whether this replica's last upkeep run took the lock:
// the replica that exports what every replica would read the same from the
// database (outcome.DBCollector).
func (u *Upkeep) HoldsLock() bool { return u.held.Load() }

// New returns an Upkeep; m may be nil (no metrics kept).
func New(st Store, cfg Config, log *slog.Logger, m *Metrics) *Upkeep {
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Upkeep{st: st, cfg: cfg.withDefaults(), log: log, m: m}
}

// The tasks, as metrics and logs name them.
const (
	taskPartitions = "partitions"
	taskRollup     = "rollup"
)

// Partitions keeps the histories' partitions and runs retention, once, under
// the lock (nothing, and no error, when another replica holds it). later
// says whether something was left for a later run: partitions busy, or a
// failure worth trying again soon. ctx bounds the run; what was done stays
// done.
func (u *Upkeep) Partitions(ctx context.Context) (later bool, err error) {
	err = u.locked(ctx, taskPartitions, func() error {
		now := u.cfg.Now()
		res, perr := u.st.MaintainPartitions(ctx, u.cfg.Partitioning, now)
		for _, h := range store.HistoryNames() {
			u.m.later.WithLabelValues(h).Set(float64(len(res.Histories[h].Later)))
		}
		for _, h := range slices.Sorted(maps.Keys(res.Histories)) {
			r := res.Histories[h]
			u.m.created.WithLabelValues(h).Add(float64(r.Created))
			u.m.dropped.WithLabelValues(h).Add(float64(r.Dropped))
			u.m.timeouts.WithLabelValues(h).Add(float64(r.LockTimeouts))
			if r.Created+r.Dropped > 0 || r.Moved+r.Deleted > 0 {
				u.log.Info(LogKept, "history", h, "created", r.Created, "dropped", r.Dropped,
					"moved_from_default", r.Moved, "deleted_from_default", r.Deleted)
			}
		}
		if len(res.Later) > 0 {
			later = true
			// history_lock_timeouts: a session holds the history itself (a
			// reader whose partitions were pruned), not just these.
			u.log.Warn(LogLater, "partitions", res.Later, "history_lock_timeouts", res.LockTimeouts, "retry_in", u.cfg.Retry)
		}
		// Retention of the other tables runs even when a partition failed:
		// what can be done is done.
		pruned, rerr := u.st.Prune(ctx, u.cfg.Retention, now)
		if pruned != (store.PruneResult{}) {
			u.log.Info(LogPruned, "dead_letters", pruned.DeadLetters, "commands", pruned.Commands, "messages", pruned.Messages, "calls", pruned.Calls)
		}
		return errors.Join(perr, rerr)
	})
	if err != nil && ctx.Err() == nil && transient(err) {
		later = true
	}
	return later, err
}

// transient reports whether err is worth trying again soon rather than at
// the next interval: the database away or a race with other sessions. A
// lack of privilege or a schema problem waits for an operator, and is not
// logged every Retry.
func transient(err error) bool {
	switch store.ClassifyError(err) {
	case store.SerializationError, store.DeadlockError, store.PartitionError:
		return true
	}
	return store.Unavailable(err)
}

// Rollup refreshes the rollup behind product_daily_outcomes once, under the
// lock (nothing, and no error, when another replica holds it).
func (u *Upkeep) Rollup(ctx context.Context) error {
	return u.locked(ctx, taskRollup, func() error {
		return u.st.RefreshRollup(ctx, u.cfg.RollupDays, u.cfg.Now())
	})
}

// RunOnce is one run of everything: partitions, retention and the rollup.
func (u *Upkeep) RunOnce(ctx context.Context) error {
	_, err := u.Partitions(ctx)
	return errors.Join(err, u.Rollup(ctx))
}

// Loop keeps the schema until ctx ends: the partitions and retention at
// once, then every Interval (every Retry while a run leaves something for
// later); the rollup every RollupInterval. Failures are logged and tried
// again; none ends the loop.
func (u *Upkeep) Loop(ctx context.Context) {
	partitions := time.NewTimer(0)
	defer partitions.Stop()
	rollup := time.NewTicker(u.cfg.RollupInterval)
	defer rollup.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-partitions.C:
			next := u.cfg.Interval
			if later, _ := u.Partitions(ctx); later { // logged
				next = u.cfg.Retry
			}
			partitions.Reset(next)
		case <-rollup.C:
			_ = u.Rollup(ctx) // logged; tried again next time
		}
	}
}

// locked runs f under the lock, unless another replica holds it, and counts
// and logs its failure (a lack of privilege says what to do about it).
func (u *Upkeep) locked(ctx context.Context, task string, f func() error) error {
	unlock, ok, err := u.st.TryLock(ctx, LockName)
	u.held.Store(ok)
	if ok {
		defer unlock()
	}
	switch {
	case ctx.Err() != nil:
		return nil
	case err != nil:
		u.m.fail(task, err)
		u.log.Warn(LogLock, "task", task, "err", err)
		return err
	case !ok:
		u.log.Debug("another replica is doing the upkeep; skipped", "task", task)
		return nil
	}
	u.m.runs.WithLabelValues(task).Inc()
	err = f()
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return nil // stopping: not a failure
	case store.ClassifyError(err) == store.PrivilegeError:
		u.m.fail(task, err)
		u.log.Error(LogPrivilege+": "+u.cfg.PrivilegeHint, "task", task, "err", err)
	default:
		u.m.fail(task, err)
		u.log.Warn(LogFailed, "task", task, "err", err)
	}
	return err
}
