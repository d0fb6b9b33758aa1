package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/cmdtrack/cmdtrack/store"
)

// upkeepLock names the advisory lock under which one replica at a time
// keeps the schema in shape.
const upkeepLock = "cmdtrack upkeep"

// runUpkeep keeps the schema in shape while the worker runs, until ctx
// ends: every RetentionInterval the history's partitions (made ahead and
// back, emptied out of the default partition, dropped by retention) and the
// other tables' retention; every RollupInterval the rollup behind
// product_daily_outcomes. One replica at a time does each run (an advisory
// lock); a failed run is logged and tried again next time.
func runUpkeep(ctx context.Context, cfg *Config, st *store.Store, log *slog.Logger) {
	partitions := time.NewTicker(cfg.RetentionInterval)
	defer partitions.Stop()
	rollup := time.NewTicker(cfg.RollupInterval)
	defer rollup.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-partitions.C:
			_ = maintain(ctx, cfg, st, log) // logged; tried again next time
		case <-rollup.C:
			_ = locked(ctx, st, log, "rollup", func() error { return st.RefreshRollup(ctx, cfg.RollupDays, time.Now()) })
		}
	}
}

// maintain runs the partition upkeep and retention once.
func maintain(ctx context.Context, cfg *Config, st *store.Store, log *slog.Logger) error {
	return locked(ctx, st, log, "partitions", func() error {
		res, err := st.MaintainPartitions(ctx, cfg.partitioning(), time.Now())
		if res.Created+res.Dropped > 0 || res.Moved+res.Deleted > 0 {
			log.Info("history partitions kept", "created", res.Created, "dropped", res.Dropped,
				"moved_from_default", res.Moved, "deleted_from_default", res.Deleted)
		}
		if err != nil {
			return err
		}
		pruned, err := st.Prune(ctx, store.Retention{
			DeadLetters: time.Duration(cfg.RetentionDeadLetters),
			Commands:    time.Duration(cfg.RetentionCommands),
		}, time.Now())
		if pruned != (store.PruneResult{}) {
			log.Info("retention deleted old rows", "dead_letters", pruned.DeadLetters, "commands", pruned.Commands)
		}
		return err
	})
}

// locked runs f under the upkeep lock, unless another replica holds it,
// and logs its failure (a lack of privilege says what to do about it).
func locked(ctx context.Context, st *store.Store, log *slog.Logger, what string, f func() error) error {
	unlock, ok, err := st.TryLock(ctx, upkeepLock)
	if ok {
		defer unlock()
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		log.Warn("upkeep could not take its lock; trying again later", "task", what, "err", err)
		return err
	case !ok:
		return nil // another replica is at it
	}
	err = f()
	switch {
	case err == nil || ctx.Err() != nil:
	case store.ClassifyError(err) == store.PrivilegeError:
		log.Error("upkeep needs to own the tables: run `cmdtrack upkeep` as the schema's owner (hourly) and set CMDTRACK_UPKEEP=false on the workers",
			"task", what, "err", err)
	default:
		log.Warn("upkeep failed; trying again later", "task", what, "err", err)
	}
	return err
}
