package main_test

import (
	"context"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// TestWebhooksReplay runs `cmdtrack webhooks replay` against an outbox with
// events failed for good at two endpoints: named ids, then an endpoint's,
// then the rest go back to the outbox, due now, attempts from zero and
// their retry window from the replay; what is not failed is left alone; a
// name or an id that cannot be is refused with one line.
func TestWebhooksReplay(t *testing.T) {
	t.Parallel()
	st, _, dbURL := testenv.Schema(t)
	ctx := context.Background()
	// billing: 3 failed, 1 pending; crm: 2 failed.
	var ids []int64
	for i, ev := range []struct{ endpoint, state string }{
		{"billing", "failed"}, {"billing", "failed"}, {"billing", "failed"}, {"billing", "pending"}, {"crm", "failed"}, {"crm", "failed"},
	} {
		var id int64
		require.NoError(t, st.Pool().QueryRow(ctx, `INSERT INTO webhook_deliveries (endpoint, webhook_id, type, subject, product_id,
			status, from_status, occurred_at, attempts, next_attempt_at, state, last_error, failed_at)
			VALUES ($1, 'evt_' || $2::int || '_1', 'command.finished', 'c' || $2::int, 'p', 'SUCCESSFUL', '', now() - interval '3 days',
				9, now() + interval '1 hour', $3, 'HTTP 500', CASE WHEN $3 = 'failed' THEN now() END) RETURNING id`,
			ev.endpoint, i, ev.state).Scan(&id))
		ids = append(ids, id)
	}
	run := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(testenv.Binary(t), append([]string{"webhooks"}, args...)...)
		cmd.Env = append(cmd.Environ(), "CMDTRACK_DATABASE_URL="+dbURL, "CMDTRACK_LOG_FORMAT=text")
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	id := func(i int) string { return strconv.FormatInt(ids[i], 10) }
	// replayed are the events put back by a replay: pending, due now,
	// attempts from zero, their window from the replay.
	replayed := func() []int64 {
		t.Helper()
		rows, err := st.Pool().Query(ctx, `SELECT id FROM webhook_deliveries WHERE state = 'pending' AND attempts = 0
			AND next_attempt_at <= now() AND failed_at IS NULL AND replayed_at IS NOT NULL ORDER BY id`)
		require.NoError(t, err)
		var out []int64
		for rows.Next() {
			var id int64
			require.NoError(t, rows.Scan(&id))
			out = append(out, id)
		}
		require.NoError(t, rows.Err())
		return out
	}

	// Named: the failed ones among them; the pending one and crm's (not
	// billing's) are left alone, and said so.
	out, code := run("replay", "-endpoint", "billing", id(0), id(3), id(4))
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "webhooks replay: 1 failed events of endpoint billing sent back to the outbox")
	require.Contains(t, out, "2 of the 3 ids named were not failed of endpoint billing")
	require.Equal(t, []int64{ids[0]}, replayed())

	out, code = run("replay", "-endpoint", "crm")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "webhooks replay: 2 failed events of endpoint crm sent back")
	require.Equal(t, []int64{ids[0], ids[4], ids[5]}, replayed())

	// The claim counts the window from the replay, not from three days ago.
	evs, err := st.ClaimWebhooks(ctx, "crm", 10, 0, 0)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	for _, e := range evs {
		require.True(t, e.Since.After(e.OccurredAt.Add(48*time.Hour)), "the window starts at the replay: %v, the event %v", e.Since, e.OccurredAt)
	}

	out, code = run("replay")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "webhooks replay: 2 failed events sent back to the outbox")
	var failed int
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE state = 'failed'`).Scan(&failed))
	require.Zero(t, failed)
	out, code = run("replay")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "webhooks replay: 0 failed events sent back")

	// A known endpoint with nothing failed is no mistake; a name the
	// outbox does not know is.
	out, code = run("replay", "-endpoint", "billing")
	require.Equal(t, 0, code, out)
	out, code = run("replay", "-endpoint", "biling")
	require.Equal(t, 2, code, out)
	require.Contains(t, out, `the outbox knows no endpoint "biling" (it knows billing, crm)`)

	for _, args := range [][]string{{}, {"resend"}, {"replay", "evt_1_1"}, {"replay", "-1"}, {"replay", "-endpoint"}} {
		out, code = run(args...)
		require.Equal(t, 2, code, "%v: %s", args, out)
	}
	out, _ = run("replay", "evt_1_1")
	require.Contains(t, out, `"evt_1_1" is not an event id: give the ids the console's /webhooks lists`)
	out, code = run("-h")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "Usage: cmdtrack webhooks replay [-endpoint NAME] [ID ...]")
}
