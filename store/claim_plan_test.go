package store_test

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/store"
)

// The outbox's statements find a subject's events through the subject
// index and settled events through the primary key, whatever the
// statistics say: the table is never analyzed when a new installation's
// first backlog grows, and its statistics are a smaller table's after.
// With the planner free to choose, make bench with one endpoint
// (BENCH_WEBHOOK=1, 200,000 notifications) spent 2.0 s a fold, 8.7 ms a
// claim and 937 us of PostgreSQL CPU per notification: each read the
// endpoint's backlog through a partial index priced at a row or two.
func TestOutboxStatementsProbeTheBacklogBySubject(t *testing.T) {
	t.Parallel()
	for _, analyzed := range []bool{false, true} {
		t.Run(map[bool]string{false: "never analyzed", true: "analyzed empty"}[analyzed], func(t *testing.T) {
			t.Parallel()
			st := setup(t)
			ctx := context.Background()
			setRoutes(t, st, store.WebhookRoute{Endpoint: "e"})
			db := st.Pool()
			_, err := db.Exec(ctx, `ALTER TABLE webhook_deliveries SET (autovacuum_enabled = off)`)
			require.NoError(t, err)
			if analyzed {
				_, err = db.Exec(ctx, `ANALYZE webhook_deliveries`) // the statistics of an empty table
				require.NoError(t, err)
			}
			// A message's subject, device_id/message_id, as long as a
			// fleet's: the longer the subject index's entries, the more
			// its probe costs against the pending index's.
			_, err = db.Exec(ctx, `CREATE FUNCTION subject(g int) RETURNS text LANGUAGE sql IMMUTABLE
				AS $$ SELECT 'meter-' || md5(g::text) || '/' || md5('m' || g) $$`)
			require.NoError(t, err)
			_, err = db.Exec(ctx, `INSERT INTO webhook_deliveries (endpoint, webhook_id, type, subject, product_id, status,
					from_status, occurred_at, next_attempt_at)
				SELECT 'e', 'evt_x_' || g, 'message.finished', subject(g), 'p', 'DELIVERED', '', now(),
					CASE WHEN g % 50 = 0 THEN 'infinity' ELSE now() - interval '1 minute' END
				FROM generate_series(1, 20000) g`)
			require.NoError(t, err)

			ids := make([]int64, 16)
			attempts := make([]int32, 16)
			subjects := make([]string, 16)
			for i := range ids {
				ids[i] = int64(1000 + 997*i)
				require.NoError(t, db.QueryRow(ctx, `SELECT subject($1)`, 1000+997*i).Scan(&subjects[i]))
			}
			for _, c := range []struct {
				name   string
				sql    string
				args   []any
				before func(tx pgx.Tx) // rows the statement works on, in its transaction
				bound  int             // buffers: a few per event, not the 20,000-event backlog's pages
			}{
				{"claim", store.ClaimWebhooksSQL, []any{"e", 16, int64(60e6), int64(0)}, nil, 700},
				{"settle delivered, holding nothing", store.SettleDeliveredSQL, []any{"e", ids, attempts, false}, nil, 300},
				{"settle delivered", store.SettleDeliveredSQL, []any{"e", ids, attempts, true}, nil, 300},
				{"settle subjects", store.SettleSubjectsSQL, []any{"e", subjects}, nil, 300},
				{"retry", store.RetryWebhookSQL, []any{int64(15000), 0, time.Now(), "boom"}, nil, 100},
				// The fixture's 400 held rows are each first of their subject,
				// so all are woken: their new versions and index entries are
				// most of its buffers; the pending index's read of the
				// backlog, which the plan assertions refuse, read fewer.
				{"wake held", store.WakeHeldSQL, []any{"e"}, nil, 10000},
				// 430 outcome events of two commands each, one of which has
				// an event pending: 860 rows written, 430 gone behind.
				{"fold", store.FoldOutcomesSQL, nil, func(tx pgx.Tx) {
					_, err := tx.Exec(ctx, `INSERT INTO outcome_events (kind, product_id, status, from_status, command_ids)
						SELECT 'command.finished', 'p', 'SUCCESSFUL', '', ARRAY[subject(g * 40), 'new-' || g]
						FROM generate_series(1, 430) g`)
					require.NoError(t, err)
				}, 5000},
			} {
				plans := map[string]string{"": explainBuffers(t, db, c.before, c.sql, c.args...)}
				if c.before == nil {
					// The deliverer's pool plans them generic (store.Options.GenericPlans).
					plans[", generic"] = explainGeneric(t, db, c.sql, c.args...)
				}
				for how, text := range plans {
					name := c.name + how
					require.NotContains(t, text, "using webhook_deliveries_pending", "%s probes by endpoint alone:\n%s", name, text)
					require.NotContains(t, text, "Seq Scan on webhook_deliveries", "%s read the outbox whole:\n%s", name, text)
					m := regexp.MustCompile(`Buffers: shared hit=(\d+)`).FindStringSubmatch(text)
					require.NotNil(t, m, "no buffers in the plan:\n%s", text)
					hit, err := strconv.Atoi(m[1])
					require.NoError(t, err)
					require.Less(t, hit, c.bound, "%s read %d buffers:\n%s", name, hit, text)
				}
			}
		})
	}
}

// explainBuffers runs sql under EXPLAIN ANALYZE in a transaction it rolls
// back, after before (if any), and returns the plan with its buffers.
func explainBuffers(t *testing.T, db *pgxpool.Pool, before func(pgx.Tx), sql string, args ...any) string {
	t.Helper()
	ctx := context.Background()
	tx, err := db.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	if before != nil {
		before(tx)
	}
	return planOf(t, tx, `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) `+sql, args...)
}

// planOf is the text an EXPLAIN gives, a line of the plan a line.
func planOf(t *testing.T, tx pgx.Tx, explain string, args ...any) string {
	t.Helper()
	rows, err := tx.Query(context.Background(), explain, args...)
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

// explainGeneric is explainBuffers for sql's generic plan, the one a pool
// with plan_cache_mode force_generic_plan runs: prepared, then explained
// as executed with args.
func explainGeneric(t *testing.T, db *pgxpool.Pool, sql string, args ...any) string {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	// A prepared statement outlives its transaction: gone before the
	// connection goes back to the pool.
	defer func() { _, _ = conn.Exec(ctx, `DEALLOCATE outbox_generic`) }()
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_generic_plan`)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `PREPARE outbox_generic AS `+sql, pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	params := make([]string, len(args))
	for i := range args {
		params[i] = "$" + strconv.Itoa(i+1)
	}
	// The simple protocol, which writes args into the text: EXECUTE's
	// arguments are not parameters PostgreSQL describes.
	plan := planOf(t, tx, `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) EXECUTE outbox_generic(`+strings.Join(params, ", ")+`)`,
		append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
	require.Contains(t, plan, "$1", "a generic plan: its parameters unbound when it was made")
	return plan
}
