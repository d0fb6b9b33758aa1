package main_test

import (
	"context"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/iotdafake"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/notification"
)

// Two workers on one queue, a stream with every message out of place and a
// third of them twice: the commands counted as finished, summed over both,
// are the rows that are final in the database, and so are the created->final
// stage observations of those with a created time. One replica, the metrics
// lease's holder, exports the database's counters and gauges.
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
	waitConsumed(t, len(s.Messages)+len(again), 2*time.Minute, workers...)

	final := f.count(t, `SELECT count(*) FROM device_commands WHERE status_rank = 3`)
	finalCreated := f.count(t, `SELECT count(*) FROM device_commands WHERE status_rank = 3 AND created_time IS NOT NULL`)
	require.Positive(t, final)
	finishedBy(t, float64(final), workers...)
	var createdFinal float64
	exporters := 0
	for _, w := range workers {
		createdFinal += metric(t, w, `cmdtrack_command_stage_seconds_count{stage="created_final"}`)
		n := 0
		for _, name := range []string{"cmdtrack_commands_stuck", "cmdtrack_newest_notification_age_seconds", "cmdtrack_commands_finished_total"} {
			if hasSeries(t, w, name) {
				n++
			}
		}
		require.Contains(t, []int{0, 3}, n, "all the database's metrics or none")
		if n > 0 {
			exporters++
		}
	}
	require.Equal(t, float64(finalCreated), createdFinal)
	require.Equal(t, 1, exporters, "one replica exports the database's metrics")
	stopCleanly(t, workers...)
	f.verify(t, s)
}

func hasSeries(t *testing.T, w *testenv.Worker, name string) bool {
	t.Helper()
	_, body := w.Get("/metrics")
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `[{ ]`).MatchString(body)
}

// finalBody is an IoTDA notification that command id finished as status,
// at.
func finalBody(id, status string, at time.Time) []byte {
	ts := at.UTC().Format("20060102T150405Z")
	return []byte(`{"resource":"device.command.status","event":"update","event_time":"` + ts + `",` +
		`"notify_data":{"header":{"device_id":"dev-` + id + `","product_id":"prod-o"},` +
		`"body":{"command_id":"` + id + `","status":"` + status + `","created_time":"` + ts + `","sent_time":"` + ts + `"}}}`)
}

// finishedBy waits until the sum of cmdtrack_commands_finished_total over
// workers is want, and fails saying what it was. The exporter reads the
// database at most once per outcome.DBReadInterval (10 s), so the wait
// covers a few of those.
func finishedBy(t *testing.T, want float64, workers ...*testenv.Worker) {
	t.Helper()
	var got float64
	ok := assert.Eventually(t, func() bool {
		got = 0
		for _, w := range workers {
			got += metricSum(t, w, "cmdtrack_commands_finished_total")
		}
		return got == want
	}, 45*time.Second, 100*time.Millisecond)
	require.True(t, ok, "cmdtrack_commands_finished_total summed over the workers is %v, want %v", got, want)
}

// cli runs a cmdtrack subcommand against f's database, env added.
func (f *fixture) cli(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t), args...)
	cmd.Env = append(cmd.Environ(), "CMDTRACK_DATABASE_URL="+f.dbURL, "CMDTRACK_LOG_FORMAT=text")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "cmdtrack %v: %s", args, out)
	return string(out)
}

// `cmdtrack replay` (the repair after a lagging clock) writes a final
// status: the running worker's counter says so, although the replay was
// another process.
func TestReplayedFinalIsCounted(t *testing.T) {
	t.Parallel()
	f := setup(t)
	w := testenv.StartWorker(t, f.env())
	w.WaitReady(30 * time.Second)
	f.pub.Send(t, finalBody("live-1", "SUCCESSFUL", time.Now().Add(-time.Minute)))
	finishedBy(t, 1, w)

	// What a worker whose clock lagged refused as ahead of time.
	_, err := f.st.Pool().Exec(context.Background(), `INSERT INTO dead_letters (source, reason_class, reason, body, body_length, body_sha256)
		VALUES ('amqp:test', 'future_time', 'event_time is ahead', $1::bytea, length($1::bytea), sha256($1::bytea))`,
		finalBody("replayed-1", "FAILED", time.Now().Add(-time.Minute)))
	require.NoError(t, err)
	out := f.cli(t, nil, "replay")
	require.Contains(t, out, "1 applied")
	require.Equal(t, "FAILED", status(t, f.st, "replayed-1"))
	finishedBy(t, 2, w)
	stopCleanly(t, w)
}

// `cmdtrack reconcile` (the repair after an outage) writes a final status:
// counted once, by the worker's exporter.
func TestReconciledFinalIsCounted(t *testing.T) {
	t.Parallel()
	f := setup(t)
	api := iotdafake.Start(t)
	stuck(t, f.st, "rec-1", "dev-1", notification.Sent, 3*time.Hour)
	api.Set(iotdafake.Command{DeviceID: "dev-1", CommandID: "rec-1", Status: "SUCCESSFUL", ResponseTime: apiTime(150 * time.Minute)})
	w := testenv.StartWorker(t, f.env())
	w.WaitReady(30 * time.Second)
	f.pub.Send(t, finalBody("live-1", "SUCCESSFUL", time.Now().Add(-time.Minute)))
	finishedBy(t, 1, w)

	out := f.cli(t, apiEnv(api), "reconcile")
	require.Contains(t, out, "updated 1")
	require.Equal(t, "SUCCESSFUL", status(t, f.st, "rec-1"))
	finishedBy(t, 2, w)
	stopCleanly(t, w)
}

// A final command deleted by command retention, and then heard of again
// (the same notification redelivered): it finished once, and is counted
// once. See README, "Command outcomes".
func TestFinalHeardAgainAfterRetentionCountedOnce(t *testing.T) {
	t.Parallel()
	f := setup(t)
	w := testenv.StartWorker(t, f.env("CMDTRACK_UPKEEP", "false"))
	w.WaitReady(30 * time.Second)
	old := finalBody("old-1", "SUCCESSFUL", time.Now().Add(-72*time.Hour))
	f.pub.Send(t, old)
	finishedBy(t, 1, w)

	f.cli(t, map[string]string{"CMDTRACK_RETENTION_COMMANDS": "2d", "CMDTRACK_ROLLUP_DAYS": "1"}, "upkeep")
	require.Zero(t, f.count(t, `SELECT count(*) FROM device_commands WHERE command_id = 'old-1'`), "retention deleted it")

	f.pub.Send(t, old, finalBody("new-1", "SUCCESSFUL", time.Now().Add(-time.Minute)))
	require.Eventually(t, func() bool {
		return f.count(t, `SELECT count(*) FROM device_commands WHERE command_id IN ('old-1', 'new-1')`) == 2
	}, 30*time.Second, 50*time.Millisecond)
	finishedBy(t, 2, w) // new-1, not old-1 again
	stopCleanly(t, w)
}
