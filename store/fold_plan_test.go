package store_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/store"
)

// The fold looks for the pending events its new ones go behind subject by
// subject, through the subject index, whatever the statistics say: with
// the planner free to choose, a backlog grown since the table was last
// analyzed was read whole on every fold (a hash join over a sequential
// scan), so that a dead endpoint made every second's fold cost its
// backlog (make bench, BENCH_WEBHOOK=both: 1.8 ms of PostgreSQL CPU per
// event).
func TestFoldProbesTheBacklogBySubject(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	setRoutes(t, st, store.WebhookRoute{Endpoint: "e"})
	db := st.Pool()
	_, err := db.Exec(ctx, `ALTER TABLE webhook_deliveries SET (autovacuum_enabled = off)`)
	require.NoError(t, err)
	_, err = db.Exec(ctx, `ANALYZE webhook_deliveries`) // the statistics of an empty table
	require.NoError(t, err)
	_, err = db.Exec(ctx, `INSERT INTO webhook_deliveries (endpoint, webhook_id, type, subject, product_id, status,
			from_status, occurred_at, next_attempt_at)
		SELECT 'e', 'evt_x_' || g, 'command.finished', 'c-' || g, 'p', 'SUCCESSFUL', '', now(), now() + interval '1 hour'
		FROM generate_series(1, 20000) g`)
	require.NoError(t, err)

	text := explainBuffers(t, db, func(tx pgx.Tx) {
		_, err := tx.Exec(ctx, `INSERT INTO outcome_events (kind, product_id, status, from_status, command_ids)
			SELECT 'command.finished', 'p', 'SUCCESSFUL', '', ARRAY['c-' || (g * 40), 'new-' || g] FROM generate_series(1, 430) g`)
		require.NoError(t, err)
	}, store.FoldOutcomesSQL)
	require.NotContains(t, text, "Seq Scan on webhook_deliveries", "the fold read the outbox whole:\n%s", text)
	require.Contains(t, text, "webhook_deliveries_subject", "the fold probes the subject index:\n%s", text)
	require.NotContains(t, text, "using webhook_deliveries_pending", "the fold probes by endpoint alone:\n%s", text)
}
