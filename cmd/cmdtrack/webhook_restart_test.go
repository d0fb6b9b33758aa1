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
// delivered (the receiver slowed so that the stop finds requests in
// flight and events claimed) and starts it again: nothing is lost, and
// what is sent twice is sent with the same webhook-id.
func TestRestartDatabaseMidDelivery(t *testing.T) {
	f := setup(t)
	rc := newHookReceiver(t)
	rc.mode.Store(hookFail) // the outbox fills while the stream is stored
	s := simulate.Generate(simulate.Config{Commands: 600, Seed: 53, OutOfOrder: 1, Duplicate: 0.1})
	w := testenv.StartWorker(t, f.env(append(rc.env(), "CMDTRACK_WEBHOOK_BACKOFF_MIN", "50ms",
		"CMDTRACK_WEBHOOK_BACKOFF_MAX", "200ms", "CMDTRACK_WEBHOOK_WORKERS", "2")...))
	w.WaitReady(30 * time.Second)
	f.pub.SendAll(t, bodies(s.Messages))
	f.waitStored(t, s, 2*time.Minute)
	require.Eventually(t, func() bool { return f.count(t, `SELECT count(*) FROM outcome_events`) == 0 },
		time.Minute, 50*time.Millisecond, "the outcomes dispatched to the outbox")
	rc.mode.Store(hookOK)
	require.Eventually(t, func() bool { return len(rc.ids()) > 0 }, time.Minute, 10*time.Millisecond, "delivering")

	testenvScript(t, "pg-stop")
	time.Sleep(5 * time.Second) // the outage
	require.False(t, w.Exited(), "the worker exited while the database was down")
	testenvScript(t, "pg-start")

	rc.waitDelivered(t, f, 2*time.Minute)
	rc.checkExactlyOnce(t, f)
	stopCleanly(t, w)
}
