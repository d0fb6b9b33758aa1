package outcome_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/outcome"
	"github.com/cmdtrack/cmdtrack/upkeep"
)

// Two replicas on one database: the database's gauges are exported by
// exactly one of them, whatever upkeep runs each does.
func TestOneExporterOfTheDatabase(t *testing.T) {
	t.Parallel()
	st, _, _ := testenv.Schema(t)
	var regs []*prometheus.Registry
	for range 2 {
		up := upkeep.New(st, upkeep.Config{}, slog.New(slog.DiscardHandler), nil)
		require.NoError(t, up.RunOnce(context.Background()))
		reg := prometheus.NewRegistry()
		reg.MustRegister(outcome.NewDBCollector(st, up.HoldsLock, time.Hour, slog.New(slog.DiscardHandler)))
		regs = append(regs, reg)
	}
	exporters := 0
	for _, reg := range regs {
		if n, err := testutil.GatherAndCount(reg, "cmdtrack_commands_stuck"); err == nil && n > 0 {
			exporters++
		}
	}
	require.Equal(t, 1, exporters, "replicas exporting the database's gauges")
}
