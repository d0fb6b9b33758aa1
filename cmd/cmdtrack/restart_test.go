//go:build restart

package main_test

// These tests restart the shared PostgreSQL and RabbitMQ themselves (through
// scripts/testenv.sh), so they cannot run beside other tests: `make test`
// runs them in a separate, serial step with -tags restart. They need the
// services that scripts/testenv.sh provisions and fail without them.

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

func testenvScript(t *testing.T, cmd string) {
	t.Helper()
	require.NotEmpty(t, os.Getenv("CMDTRACK_TEST_DATABASE_URL"), "restart tests drive the services of scripts/testenv.sh: run them with `make test`")
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "testenv.sh"))
	require.NoError(t, err)
	out, err := exec.Command("bash", script, cmd).CombinedOutput()
	require.NoError(t, err, "testenv.sh %s: %s", cmd, out)
}

// TestRestartBroker stops and starts the RabbitMQ application while a stream
// flows: durable messages survive, unsettled ones come back, the worker
// re-dials by itself and loses nothing.
func TestRestartBroker(t *testing.T) {
	f := setup(t)
	restartBrokerMidStream(t, f, 41, nil, func() {})
}

// restartBrokerMidStream publishes half of a stream, starts a worker with
// env added to the defaults, stops and starts the RabbitMQ application once
// rows are being stored (calling atFirstRows just before), publishes the
// rest, and checks that the worker re-dialled by itself and lost nothing.
func restartBrokerMidStream(t *testing.T, f *fixture, seed uint64, env []string, atFirstRows func()) {
	t.Helper()
	s := simulate.Generate(simulate.Config{Commands: 1000, Seed: seed, OutOfOrder: 1, Duplicate: 0.1, Poison: 0.01})
	half := len(s.Messages) / 2
	f.pub.SendAll(t, bodies(s.Messages[:half]))
	w := testenv.StartWorker(t, f.env(append(env, "CMDTRACK_BATCH_SIZE", "32")...))
	w.WaitReady(30 * time.Second)
	require.Eventually(t, func() bool { return f.count(t, `SELECT count(*) FROM device_command_events`) > 0 },
		30*time.Second, 10*time.Millisecond)
	atFirstRows()

	testenvScript(t, "rabbit-stop-app")
	require.Eventually(t, func() bool { code, _ := w.Get("/readyz"); return code == 503 }, 15*time.Second, 50*time.Millisecond)
	time.Sleep(2 * time.Second)
	testenvScript(t, "rabbit-start-app")

	w.WaitReady(60 * time.Second)
	pub := testenv.NewPublisher(t, f.queue) // the old publisher's connection died with the broker
	pub.SendAll(t, bodies(s.Messages[half:]))
	f.waitStored(t, s, 2*time.Minute)
	require.GreaterOrEqual(t, metric(t, w, "cmdtrack_broker_outages_total"), float64(1))
	require.Equal(t, float64(1), metric(t, w, "cmdtrack_broker_connected"), "connected again")
	stopCleanly(t, w)
	f.verify(t, s)
}

// TestRestartDatabase stops PostgreSQL (admin shutdown, then connection
// refused) for ten seconds mid-stream and starts it again.
func TestRestartDatabase(t *testing.T) {
	f := setup(t)
	s := simulate.Generate(simulate.Config{Commands: 1000, Seed: 43, OutOfOrder: 1, Duplicate: 0.1, Poison: 0.01})
	f.pub.SendAll(t, bodies(s.Messages))
	w := testenv.StartWorker(t, f.env("CMDTRACK_BATCH_SIZE", "16", "CMDTRACK_WRITERS", "1"))
	w.WaitReady(30 * time.Second)
	require.Eventually(t, func() bool { return f.count(t, `SELECT count(*) FROM device_command_events`) > 0 },
		30*time.Second, 10*time.Millisecond)

	testenvScript(t, "pg-stop")
	time.Sleep(10 * time.Second)
	require.False(t, w.Exited(), "the worker exited while the database was down")
	testenvScript(t, "pg-start")

	f.waitStored(t, s, 2*time.Minute)
	require.Greater(t, metricSum(t, w, "cmdtrack_database_errors_total"), float64(0), "writes failed")
	w.WaitReady(15 * time.Second) // and recovered
	stopCleanly(t, w)
	f.verify(t, s)
}

// TestRestartBrokerIoTDA restarts the RabbitMQ application while a worker
// consumes over amqps with IoTDA credentials: the worker re-dials with a
// fresh timestamp in its username (IoTDA refuses one older than five
// minutes, so a reused one would lock out a worker that reconnects later),
// and loses nothing.
func TestRestartBrokerIoTDA(t *testing.T) {
	f := setup(t)
	iot := testenv.IoTDA(t)
	restartBrokerMidStream(t, f, 47, iotdaEnv(iot), func() {
		require.Len(t, iot.Logins(), 1)
	})

	// Each dial builds its own username. Logins made while the broker was
	// coming back may have been cut short, so only the last must have been
	// accepted.
	logins := iot.Logins()
	require.Greater(t, len(logins), 1, "the worker never logged in again")
	requireIoTDAUsernames(t, iot, logins)
	for i, l := range logins[1:] {
		require.True(t, l.Timestamp.After(logins[i].Timestamp), "dial %d reused the timestamp of dial %d: %s", i+2, i+1, l.Username)
	}
	last := logins[len(logins)-1]
	require.True(t, last.Allowed, "the last login was refused: %s", last.Reason)
}
