package main

import (
	"log/slog"
	"time"

	"github.com/cmdtrack/cmdtrack/store"
	"github.com/cmdtrack/cmdtrack/upkeep"
)

// newUpkeep is the upkeep the settings ask for; m may be nil (`cmdtrack
// upkeep` and `migrate` keep no metrics).
func newUpkeep(cfg *Config, st *store.Store, log *slog.Logger, m *upkeep.Metrics) *upkeep.Upkeep {
	return upkeep.New(st, upkeep.Config{
		Partitioning: cfg.partitioning(),
		Retention: store.Retention{
			DeadLetters: time.Duration(cfg.RetentionDeadLetters),
			Commands:    time.Duration(cfg.RetentionCommands),
		},
		Interval:       cfg.RetentionInterval,
		RollupInterval: cfg.RollupInterval,
		RollupDays:     cfg.RollupDays,
		PrivilegeHint:  "run `cmdtrack upkeep` as the schema's owner (hourly) and set CMDTRACK_UPKEEP=false on the workers",
	}, log, m)
}
