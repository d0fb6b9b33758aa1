package main_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/store"
)

// routes are the webhook routes the database holds, by endpoint.
func routes(t *testing.T, st *store.Store) []string {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `SELECT endpoint FROM webhook_routes ORDER BY 1`)
	require.NoError(t, err)
	out := []string{}
	for rows.Next() {
		var e string
		require.NoError(t, rows.Scan(&e))
		out = append(out, e)
	}
	require.NoError(t, rows.Err())
	return out
}

// pendingEvents puts n pending events of endpoint in the outbox.
func pendingEvents(t *testing.T, st *store.Store, endpoint string, n int) {
	t.Helper()
	_, err := st.Pool().Exec(context.Background(), `INSERT INTO webhook_deliveries (endpoint, webhook_id, type, subject, product_id,
		status, from_status, occurred_at) SELECT $1, 'evt_' || $1 || i, 'command.finished', 'c' || i, 'p', 'SUCCESSFUL', '', now()
		FROM generate_series(1, $2::int) i`, endpoint, n)
	require.NoError(t, err)
}

func failedWith(t *testing.T, st *store.Store, endpoint string) (n int, reason string) {
	t.Helper()
	require.NoError(t, st.Pool().QueryRow(context.Background(), `SELECT count(*), coalesce(max(last_error), '') FROM webhook_deliveries
		WHERE endpoint = $1 AND state = 'failed' AND failed_at IS NOT NULL`, endpoint).Scan(&n, &reason))
	return n, reason
}

// The routes the fold dispatches with are the database's, written by the
// worker that started last with webhook settings (review finding 3): an
// endpoint its settings lack loses its route and its pending events fail,
// saying which settings (finding 9); a worker without settings leaves the
// routes alone.
func TestWorkerWritesItsWebhookRoutes(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	_, err := f.st.Pool().Exec(ctx, `INSERT INTO webhook_routes (endpoint) VALUES ('old')`)
	require.NoError(t, err)
	pendingEvents(t, f.st, "old", 3)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	w := testenv.StartWorker(t, f.env("CMDTRACK_WEBHOOK_URL", "http://127.0.0.1:9/hooks",
		"CMDTRACK_WEBHOOK_SECRET", "whsec_"+base64.StdEncoding.EncodeToString(key),
		"CMDTRACK_SHUTDOWN_GRACE", "20s")) // the webhooks' stop bound at the default timeout
	w.WaitReady(30 * time.Second)
	require.Equal(t, []string{"default"}, routes(t, f.st))
	n, reason := failedWith(t, f.st, "old")
	require.Equal(t, 3, n)
	require.Contains(t, reason, "not in the webhook settings (CMDTRACK_WEBHOOK_URL, CMDTRACK_WEBHOOKS_FILE)")
	stopCleanly(t, w)

	w = testenv.StartWorker(t, f.env())
	w.WaitReady(30 * time.Second)
	require.Equal(t, []string{"default"}, routes(t, f.st), "a worker without settings leaves them alone")
	stopCleanly(t, w)
}

// `cmdtrack webhooks forget NAME` deletes the endpoint's route and fails
// its pending events (review finding 9); a name the outbox does not know
// is refused.
func TestWebhooksForget(t *testing.T) {
	t.Parallel()
	st, _, dbURL := testenv.Schema(t)
	ctx := context.Background()
	_, err := st.Pool().Exec(ctx, `INSERT INTO webhook_routes (endpoint) VALUES ('billing'), ('crm')`)
	require.NoError(t, err)
	pendingEvents(t, st, "billing", 2)
	pendingEvents(t, st, "crm", 1)
	run := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(testenv.Binary(t), append([]string{"webhooks"}, args...)...)
		cmd.Env = append(cmd.Environ(), "CMDTRACK_DATABASE_URL="+dbURL, "CMDTRACK_LOG_FORMAT=text")
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := run("forget", "billing")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "webhooks forget: endpoint billing has no route now; 2 pending events failed for good")
	require.Equal(t, []string{"crm"}, routes(t, st))
	n, reason := failedWith(t, st, "billing")
	require.Equal(t, 2, n)
	require.Contains(t, reason, "endpoint forgotten (cmdtrack webhooks forget billing)")
	n, _ = failedWith(t, st, "crm")
	require.Zero(t, n)

	out, code = run("forget", "billing")
	require.Equal(t, 0, code, "known still, by its failed events: %s", out)
	out, code = run("forget", "biling")
	require.Equal(t, 2, code, out)
	require.Contains(t, out, `the outbox knows no endpoint "biling"`)
	for _, args := range [][]string{{"forget"}, {"forget", "a", "b"}, {"forget", "-endpoint"}} {
		out, code = run(args...)
		require.Equal(t, 2, code, "%v: %s", args, out)
	}
}
