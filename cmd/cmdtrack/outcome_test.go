package main_test

import (
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// Two workers on one queue, a stream with every message out of place and a
// third of them twice: the commands they count as finished, summed over both,
// are the rows that are final in the database, and so are the created->final
// stage observations of those with a created time. Only the replica whose
// upkeep holds the lock exports the database's gauges.
func TestOutcomesCountedOnceAcrossWorkers(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s := simulate.Generate(simulate.Config{Commands: 1200, Products: 3, Seed: 41, OutOfOrder: 1, Duplicate: 0.3})
	var workers []*testenv.Worker
	for range 2 {
		workers = append(workers, testenv.StartWorker(t, f.env("CMDTRACK_BATCH_SIZE", "40", "CMDTRACK_AMQP_CREDIT", "100")))
	}
	for _, w := range workers {
		w.WaitReady(30 * time.Second)
	}
	f.pub.SendAll(t, bodies(s.Messages))
	f.waitStored(t, s, 2*time.Minute)
	// The same stream again: redeliveries change nothing and count nothing.
	again := s.Messages[:len(s.Messages)/2]
	f.pub.SendAll(t, bodies(again))
	require.Eventually(t, func() bool {
		var received, unsettled float64
		for _, w := range workers {
			received += metricSum(t, w, "cmdtrack_messages_received_total")
			unsettled += metric(t, w, "cmdtrack_messages_unsettled")
		}
		return received >= float64(len(s.Messages)+len(again)) && unsettled == 0
	}, 2*time.Minute, 100*time.Millisecond, "the stream sent again is consumed")

	final := f.count(t, `SELECT count(*) FROM device_commands WHERE status_rank = 3`)
	finalCreated := f.count(t, `SELECT count(*) FROM device_commands WHERE status_rank = 3 AND created_time IS NOT NULL`)
	require.Positive(t, final)
	var finished, createdFinal, exporters float64
	for _, w := range workers {
		finished += metricSum(t, w, "cmdtrack_commands_finished_total")
		createdFinal += metric(t, w, `cmdtrack_command_stage_seconds_count{stage="created_final"}`)
		if hasSeries(t, w, "cmdtrack_commands_stuck") && hasSeries(t, w, "cmdtrack_newest_notification_age_seconds") {
			exporters++
		}
	}
	require.Equal(t, float64(final), finished, "finished, summed over the workers")
	require.Equal(t, float64(finalCreated), createdFinal)
	require.GreaterOrEqual(t, exporters, 1.0, "the replica holding upkeep's lock exports the database's gauges")
	for _, w := range workers {
		w.Signal(syscall.SIGTERM)
	}
	for _, w := range workers {
		require.Equal(t, 0, w.Wait(20*time.Second))
	}
	f.verify(t, s)
}

func hasSeries(t *testing.T, w *testenv.Worker, name string) bool {
	t.Helper()
	_, body := w.Get("/metrics")
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `[{ ]`).MatchString(body)
}
