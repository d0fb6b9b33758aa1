package main_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// A database that hangs without failing (a paused network path) wedges the
// pipeline: messages are in hand, the broker is there, and nothing is
// stored. /healthz says so after CMDTRACK_STALL_TIMEOUT, so that an
// orchestrator restarts the worker; it recovers when the path does.
func TestLivenessSeesAWedge(t *testing.T) {
	t.Parallel()
	f := setup(t)
	proxy, viaProxy := testenv.NewProxy(t, f.dbURL)
	s := simulate.Generate(simulate.Config{Commands: 300, Seed: 61, OutOfOrder: 1})
	half := len(s.Messages) / 2
	f.pub.SendAll(t, bodies(s.Messages[:half]))
	w := testenv.StartWorker(t, f.env("CMDTRACK_DATABASE_URL", viaProxy, "CMDTRACK_STALL_TIMEOUT", "2s"))
	w.WaitReady(30 * time.Second)
	require.Eventually(t, func() bool { return f.count(t, `SELECT count(*) FROM device_command_events`) > 0 },
		30*time.Second, 20*time.Millisecond)
	code, _ := w.Get("/healthz")
	require.Equal(t, 200, code)

	proxy.Pause()
	f.pub.SendAll(t, bodies(s.Messages[half:]))
	require.Eventually(t, func() bool {
		code, body := w.Get("/healthz")
		return code == 503 && strings.Contains(body, "nothing stored or settled")
	}, 20*time.Second, 100*time.Millisecond, "liveness must see the wedge")
	require.False(t, w.Exited())

	proxy.Resume()
	f.waitStored(t, s, time.Minute)
	require.Eventually(t, func() bool { code, _ := w.Get("/healthz"); return code == 200 }, 30*time.Second, 100*time.Millisecond)
	stopCleanly(t, w)
	f.verify(t, s)
}

// A queue that cannot be consumed (a typo, with the stray space people type
// after a comma) is named by /readyz and its metrics, and retried on its
// own; the other queue flows.
func TestBadQueueNamedWhileOthersFlow(t *testing.T) {
	t.Parallel()
	f := setup(t)
	missing := "/amq/queue/" + testenv.Name("typo-")
	s := simulate.Generate(simulate.Config{Commands: 200, Seed: 63, OutOfOrder: 1, Duplicate: 0.1})
	f.pub.SendAll(t, bodies(s.Messages))
	w := testenv.StartWorker(t, f.env("CMDTRACK_AMQP_QUEUE", f.queue+", "+missing))
	f.waitStored(t, s, time.Minute)
	code, body := w.Get("/readyz")
	require.Equal(t, 503, code)
	require.Contains(t, body, fmt.Sprintf("queue %q is not attached", missing))
	require.Equal(t, float64(1), metric(t, w, fmt.Sprintf(`cmdtrack_queue_attached{queue=%q}`, f.queue)))
	require.Equal(t, float64(0), metric(t, w, fmt.Sprintf(`cmdtrack_queue_attached{queue=%q}`, missing)))
	stopCleanly(t, w)
	f.verify(t, s)
}

// `cmdtrack upkeep` does once what workers do hourly: here, the history's
// partitions for the days ahead and the rollup.
func TestUpkeepCommand(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ahead := time.Now().UTC().AddDate(0, 0, 6).Format("20060102")
	cmd := exec.Command(testenv.Binary(t), "upkeep")
	cmd.Env = append(cmd.Environ(), "CMDTRACK_DATABASE_URL="+f.dbURL, "CMDTRACK_HISTORY_PARTITIONS_AHEAD=6", "CMDTRACK_LOG_FORMAT=text")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, 1, f.count(t, `SELECT count(*) FROM pg_class WHERE relname = 'device_command_events_`+ahead+`'
		AND relnamespace = current_schema()::regnamespace`))
}
