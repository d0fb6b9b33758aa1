package main_test

// Faults: the worker killed, its connections cut, the database away while
// it runs or stops, replicas side by side. Nothing is lost or duplicated.

import (
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/consumer"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/pipeline"
	"github.com/cmdtrack/cmdtrack/store"
)

// TestCrashKill9 kills the worker with SIGKILL at random moments while a
// stream is flowing, five times, restarting it each time. Nothing may be
// lost (a message settled but not stored would be missing for good) and
// nothing duplicated.
func TestCrashKill9(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s := simulate.Generate(simulate.Config{Commands: 1500, Seed: 13, OutOfOrder: 0.3, Duplicate: 0.05, Poison: 0.01})
	published := make(chan struct{})
	go func() {
		defer close(published)
		// Publish in slices so that messages keep arriving across the kills.
		msgs := bodies(s.Messages)
		for len(msgs) > 0 {
			n := min(500, len(msgs))
			f.pub.SendAll(t, msgs[:n])
			msgs = msgs[n:]
			time.Sleep(100 * time.Millisecond)
		}
	}()
	rng := rand.New(rand.NewPCG(13, 1))
	for i := range 5 {
		w := testenv.StartWorker(t, f.env("CMDTRACK_BATCH_SIZE", "64"))
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond)
		w.Signal(syscall.SIGKILL)
		w.Wait(10 * time.Second)
		t.Logf("kill %d: %d history rows so far", i+1, f.count(t, `SELECT count(*) FROM device_command_events`))
	}
	<-published
	w := testenv.StartWorker(t, f.env())
	w.WaitReady(30 * time.Second)
	f.waitStored(t, s, 2*time.Minute)
	stopCleanly(t, w)
	f.verify(t, s)
}

// TestBrokerConnectionCut resets the worker's broker connection (as a
// broker restart or a dead network would) and refuses it for a while: the
// worker reports not-ready, re-dials with backoff, logs the outage once and
// its recovery once, and loses nothing.
func TestBrokerConnectionCut(t *testing.T) {
	t.Parallel()
	f := setup(t)
	proxy, viaProxy := testenv.NewProxy(t, f.amqpURL)
	s := simulate.Generate(simulate.Config{Commands: 600, Seed: 17, OutOfOrder: 1, Duplicate: 0.1})
	half := len(s.Messages) / 2
	f.pub.SendAll(t, bodies(s.Messages[:half]))

	w := testenv.StartWorker(t, f.env("CMDTRACK_AMQP_URL", viaProxy, "CMDTRACK_BATCH_SIZE", "32",
		"CMDTRACK_AMQP_BACKLOG_RETENTION", "2s"))
	w.WaitReady(30 * time.Second)
	require.Eventually(t, func() bool { return f.count(t, `SELECT count(*) FROM device_command_events`) > 0 },
		30*time.Second, 20*time.Millisecond)

	proxy.Cut()
	cut := time.Now()
	require.Eventually(t, func() bool {
		code, body := w.Get("/readyz")
		return code == 503 && strings.Contains(body, "broker")
	}, 10*time.Second, 50*time.Millisecond, "readiness must report the lost broker")
	f.pub.SendAll(t, bodies(s.Messages[half:]))
	// Several failed re-dials, and an outage longer than the 2 s backlog
	// retention (the condition is the outage's length itself).
	require.Eventually(t, func() bool {
		return metric(t, w, "cmdtrack_broker_reconnects_total") >= 3 && time.Since(cut) > 3*time.Second
	}, time.Minute, 50*time.Millisecond)
	proxy.Restore(t)

	w.WaitReady(30 * time.Second)
	f.waitStored(t, s, time.Minute)
	require.Equal(t, float64(1), metric(t, w, "cmdtrack_broker_outages_total"), "one outage")
	require.Greater(t, metric(t, w, "cmdtrack_broker_reconnects_total"), float64(1), "re-dialled while it was refused")
	require.Equal(t, float64(1), metric(t, w, "cmdtrack_broker_connected"), "connected again")
	stopCleanly(t, w)
	// The outage outlasted what the platform would keep (2 s here): the
	// worker says notifications may be lost, and how to repair the window.
	require.Equal(t, 1, w.LogCount(consumer.LogBacklogLost), "lines saying the backlog may be lost")
	f.verify(t, s)
}

// TestDatabaseOutage takes PostgreSQL away from the worker for 30 s while
// notifications keep arriving. The worker must not exit, not spin, not
// dead-letter good messages and not settle what it could not store; it
// catches up by itself when the database is back.
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	f := setup(t)
	proxy, viaProxy := testenv.NewProxy(t, f.dbURL)
	s := simulate.Generate(simulate.Config{Commands: 800, Seed: 19, OutOfOrder: 1, Duplicate: 0.1, Poison: 0.01})
	third := len(s.Messages) / 3
	f.pub.SendAll(t, bodies(s.Messages[:third]))

	w := testenv.StartWorker(t, f.env("CMDTRACK_DATABASE_URL", viaProxy))
	w.WaitReady(30 * time.Second)
	require.Eventually(t, func() bool { return f.count(t, `SELECT count(*) FROM device_command_events`) > 0 },
		30*time.Second, 20*time.Millisecond)

	proxy.Cut()
	outage := time.Now()
	f.pub.SendAll(t, bodies(s.Messages[third:]))
	require.Eventually(t, func() bool { code, _ := w.Get("/readyz"); return code == 503 },
		15*time.Second, 100*time.Millisecond, "readiness must report the lost database")
	// Credit holds the flow: no more than the link's credit is in hand.
	require.Eventually(t, func() bool { return metric(t, w, "cmdtrack_messages_unsettled") > 0 }, 10*time.Second, 50*time.Millisecond)
	require.LessOrEqual(t, metric(t, w, "cmdtrack_messages_unsettled"), float64(1024))
	time.Sleep(time.Until(outage.Add(30 * time.Second)))
	require.False(t, w.Exited(), "the worker exited during the database outage")
	attempts := metric(t, w, `cmdtrack_database_errors_total{class="connection"}`)
	require.Greater(t, attempts, float64(0))
	// While the database is away each of the 2 writers retries at most every
	// 0.5 s once its backoff has grown (pipeline's unavailableRetryMax, 1 s,
	// less half for jitter), so that writes resume soon after a failover: 2 x
	// (30 s / 0.5 s + a few quick first tries) attempts at the most. A
	// spinning worker would make thousands.
	bound := 2 * (time.Since(outage).Seconds()/0.5 + 8)
	require.Less(t, attempts, bound, "backoff must keep the retries bounded, not spin")
	proxy.Restore(t)

	f.waitStored(t, s, time.Minute)
	w.WaitReady(15 * time.Second) // writes recovered
	stopCleanly(t, w)
	f.verify(t, s) // includes: no good message was dead-lettered
}

// TestReplicas runs three workers on one queue; notifications of the same
// command are spread over them. Rows converge, with no deadlock.
func TestReplicas(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s := simulate.Generate(simulate.Config{Commands: 1500, Seed: 23, OutOfOrder: 1, Duplicate: 0.2, Poison: 0.01})
	var workers []*testenv.Worker
	for range 3 {
		w := testenv.StartWorker(t, f.env("CMDTRACK_BATCH_SIZE", "50", "CMDTRACK_AMQP_CREDIT", "100"))
		workers = append(workers, w)
	}
	for _, w := range workers {
		w.WaitReady(30 * time.Second)
	}
	f.pub.SendAll(t, bodies(s.Messages))
	f.waitStored(t, s, 2*time.Minute)
	waitConsumed(t, len(s.Messages), time.Minute, workers...)
	for i, w := range workers {
		require.Zero(t, metric(t, w, `cmdtrack_database_errors_total{class="`+string(store.DeadlockError)+`"}`), "worker %d", i)
		require.Zero(t, metricSum(t, w, "cmdtrack_database_errors_total"), "worker %d: no write failed", i)
	}
	stopCleanly(t, workers...)
	f.verify(t, s)
}

// TestShutdownDuringDatabaseOutage sends SIGTERM while PostgreSQL is away:
// the worker exits within its grace period, reports that it could not store
// what it held, and settles none of it; a later worker stores everything.
func TestShutdownDuringDatabaseOutage(t *testing.T) {
	t.Parallel()
	f := setup(t)
	proxy, viaProxy := testenv.NewProxy(t, f.dbURL)
	s := simulate.Generate(simulate.Config{Commands: 200, Seed: 29})

	w := testenv.StartWorker(t, f.env("CMDTRACK_DATABASE_URL", viaProxy, "CMDTRACK_SHUTDOWN_GRACE", "2s"))
	w.WaitReady(30 * time.Second)
	proxy.Cut()
	f.pub.SendAll(t, bodies(s.Messages))
	require.Eventually(t, func() bool { return metric(t, w, "cmdtrack_messages_unsettled") > 0 }, 10*time.Second, 50*time.Millisecond)

	// Without the grace it would wait for the database for good; Wait's
	// bound catches that (a tighter wall-clock bound would flake on a busy
	// machine).
	w.Signal(syscall.SIGTERM)
	code := w.Wait(15 * time.Second)
	require.Equal(t, 1, code, "an incomplete drain is a failure")
	require.Contains(t, w.Output(), pipeline.ErrGraceRanOut.Error()+" (2s)")
	require.Zero(t, f.count(t, `SELECT count(*) FROM device_command_events`))

	proxy.Restore(t)
	w2 := testenv.StartWorker(t, f.env())
	w2.WaitReady(30 * time.Second)
	f.waitStored(t, s, time.Minute)
	stopCleanly(t, w2)
	f.verify(t, s)
}
