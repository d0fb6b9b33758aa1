package store_test

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/store"
)

// The outbox's statements find a subject's events by one probe of the
// subject index, whatever the statistics say. The claim tests each candidate for being the first pending event of its
// subject by one probe of the subject index, whatever the statistics say.
// With the statistics of a smaller table the planner probed the pending
// index by endpoint alone and filtered the subject, reading the endpoint's
// whole backlog for every candidate: in make bench with one endpoint
// (BENCH_WEBHOOK=1, 50 k) 9.7 ms and 2,100 buffers a claim, 84 -> 314 ms as
// the backlog grew from 2,500 to 9,100 events (EXPLAIN ANALYZE mid-run).
func TestOutboxStatementsProbeTheBacklogBySubject(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	db := st.Pool()
	_, err := db.Exec(ctx, `ALTER TABLE webhook_deliveries SET (autovacuum_enabled = off)`)
	require.NoError(t, err)
	_, err = db.Exec(ctx, `ANALYZE webhook_deliveries`) // the statistics of an empty table
	require.NoError(t, err)
	_, err = db.Exec(ctx, `INSERT INTO webhook_deliveries (endpoint, webhook_id, type, subject, product_id, status,
			from_status, occurred_at, next_attempt_at)
		SELECT 'e', 'evt_x_' || g, 'command.finished', 'c-' || g, 'p', 'SUCCESSFUL', '', now(), now() - interval '1 minute'
		FROM generate_series(1, 20000) g`)
	require.NoError(t, err)

	ids := make([]int64, 16)
	attempts := make([]int32, 16)
	subjects := make([]string, 16)
	for i := range ids {
		ids[i] = int64(1000 + 997*i)
		subjects[i] = "c-" + strconv.Itoa(1000+997*i)
	}
	for _, c := range []struct {
		name string
		sql  string
		args []any
	}{
		{"claim", store.ClaimWebhooksSQL, []any{"e", 16, int64(60e6)}},
		{"settle delivered", store.SettleDeliveredSQL, []any{"e", ids, attempts}},
		{"settle subjects", store.SettleSubjectsSQL, []any{"e", subjects}},
		{"retry", store.RetryWebhookSQL, []any{int64(15000), 0, time.Now(), "boom"}},
	} {
		text := explainBuffers(t, db, c.sql, c.args...)
		require.NotContains(t, text, "using webhook_deliveries_pending", "%s probes by endpoint alone:\n%s", c.name, text)
		require.NotContains(t, text, "Seq Scan on webhook_deliveries", "%s read the outbox whole:\n%s", c.name, text)
		// At most 16 events: a few buffers for each one's probes and
		// its change, not the 20,000-event backlog's pages.
		m := regexp.MustCompile(`Buffers: shared hit=(\d+)`).FindStringSubmatch(text)
		require.NotNil(t, m, "no buffers in the plan:\n%s", text)
		hit, err := strconv.Atoi(m[1])
		require.NoError(t, err)
		require.Less(t, hit, 1000, "%s read %d buffers:\n%s", c.name, hit, text)
	}
}

// explainBuffers runs sql under EXPLAIN ANALYZE in a transaction it rolls
// back, and returns the plan with its buffers.
func explainBuffers(t *testing.T, db *pgxpool.Pool, sql string, args ...any) string {
	t.Helper()
	ctx := context.Background()
	tx, err := db.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	rows, err := tx.Query(ctx, `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) `+sql, args...)
	require.NoError(t, err)
	var plan []string
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		plan = append(plan, line)
	}
	require.NoError(t, rows.Err())
	return strings.Join(plan, "\n")
}
