//go:build restart

package main_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// TestRestartDatabaseMidDelivery stops PostgreSQL while webhooks are being
// delivered (requests held at the receiver's gate, so that the stop finds
// requests in flight and events claimed) and starts it again: nothing is
// lost, and what is sent twice is sent with the same webhook-id.
func TestRestartDatabaseMidDelivery(t *testing.T) {
	f := setup(t)
	rc := newHookReceiver(t)
	rc.mode.Store(hookFail) // the outbox fills while the stream is stored
	s := simulate.Generate(simulate.Config{Commands: 600, Seed: 53, OutOfOrder: 1, Duplicate: 0.1})
	// The held requests must outlast the checks and the database's stop,
	// and the grace the timeout (see config.go).
	w := testenv.StartWorker(t, f.env(append(rc.env(), "CMDTRACK_WEBHOOK_BACKOFF_MIN", "50ms",
		"CMDTRACK_WEBHOOK_BACKOFF_MAX", "200ms", "CMDTRACK_WEBHOOK_WORKERS", "2",
		"CMDTRACK_WEBHOOK_TIMEOUT", "30s", "CMDTRACK_SHUTDOWN_GRACE", "40s")...))
	w.WaitReady(30 * time.Second)
	f.pub.SendAll(t, bodies(s.Messages))
	f.waitStored(t, s, 2*time.Minute)
	require.Eventually(t, func() bool { return f.count(t, `SELECT count(*) FROM outcome_events`) == 0 },
		time.Minute, 50*time.Millisecond, "the outcomes dispatched to the outbox")

	rc.mode.Store(hookGate)
	require.Eventually(t, func() bool { return rc.holding() == 2 }, time.Minute, 10*time.Millisecond,
		"both workers' requests in flight, held at the gate")
	// Claimed: leased for 2×timeout+30s, far past any backoff (200 ms);
	// a row held back behind its subject's may wait at 'infinity'.
	claimed := f.count(t, `SELECT count(*) FROM webhook_deliveries
		WHERE state = 'pending' AND next_attempt_at > now() + interval '10 seconds' AND next_attempt_at < 'infinity'`)
	require.GreaterOrEqual(t, claimed, 2, "the events in flight are claimed")
	pending := f.count(t, `SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'`)
	require.Greater(t, pending, claimed, "more events wait behind them")
	require.Empty(t, rc.ids(), "nothing accepted yet")

	testenvScript(t, "pg-stop")
	// The held requests are answered while the database is away: their
	// settling fails, and their lease brings them back.
	rc.openGate()
	time.Sleep(5 * time.Second) // the outage
	require.False(t, w.Exited(), "the worker exited while the database was down")
	testenvScript(t, "pg-start")

	// The held events come back after their lease (90 s).
	rc.waitDelivered(t, f, 4*time.Minute)
	rc.checkExactlyOnce(t, f)
	stopCleanly(t, w)
}
