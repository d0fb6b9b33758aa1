package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/store"
)

// prunedKind is a kind whose rows command retention prunes, for the tests
// that hold for each.
type prunedKind struct {
	name, table, tombstones, dayIndex string
	// ids are its key columns; idsOf gives their values from one text
	// expression; began is the column of when a row began (else
	// first_seen_at).
	ids, began string
	idsOf      func(expr string) string
	// A final and an open status, with their ranks.
	final, open         string
	finalRank, openRank int
	pruned              func(store.PruneResult) int64
	// fixed are further NOT NULL columns, and their values for every row.
	fixed, fixedValues string
}

var prunedKinds = []prunedKind{
	{name: "command", table: "device_commands", tombstones: "command_tombstones", dayIndex: "device_commands_day_idx",
		ids: "command_id", began: "created_time", idsOf: func(e string) string { return e },
		final: "SUCCESSFUL", open: "SENT", finalRank: 3, openRank: 1,
		pruned: func(r store.PruneResult) int64 { return r.Commands }},
	{name: "message", table: "device_messages", tombstones: "message_tombstones", dayIndex: "device_messages_day_idx",
		ids: "device_id, message_id", began: "pending_time", idsOf: func(e string) string { return "'dev-1', " + e },
		final: "DELIVERED", open: "PENDING", finalRank: 1, openRank: 0,
		pruned: func(r store.PruneResult) int64 { return r.Messages }},
	// A call leaves no tombstone: nothing hears of it again.
	{name: "call", table: "device_calls", dayIndex: "device_calls_day_idx",
		ids: "call_id", began: "sent_time", idsOf: func(e string) string { return e },
		final: "SUCCESSFUL", open: "PENDING", finalRank: 1, openRank: 0,
		pruned: func(r store.PruneResult) int64 { return r.Calls },
		fixed:  "call_kind, device_id", fixedValues: "'properties', 'dev-1'"},
}

// insert writes n rows of the kind, ids prefix1, prefix2, ..., with the
// status of rank, begun at began (NULL: heard of first at firstSeen) and
// last moved at moved.
func (k prunedKind) insert(t *testing.T, st *store.Store, prefix string, n int, status string, rank int, began *time.Time, firstSeen, moved time.Time) {
	t.Helper()
	cols, vals := "", ""
	if k.fixed != "" {
		cols, vals = ", "+k.fixed, ", "+k.fixedValues
	}
	_, err := st.Pool().Exec(context.Background(), fmt.Sprintf(`INSERT INTO %s (%s, status, status_rank, %s, first_seen_at, last_event_time, last_event_key%s)
		SELECT %s, $2, $3, $4, $5, $6, '\x00'%s FROM generate_series(1, $7::int) g`, k.table, k.ids, k.began, cols, k.idsOf(`$1::text || g`), vals),
		prefix, status, rank, began, firstSeen, moved, n)
	require.NoError(t, err)
}

// Retention deletes dead letters by their receipt, and every kind's rows
// (commands, messages) that began and last moved before the limit, final or
// not, in batches; a row that still moves, or is recent, stays. A final one
// deleted leaves a tombstone, kept one more retention period.
func TestPrune(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	exec := func(q string, args ...any) {
		t.Helper()
		_, err := st.Pool().Exec(ctx, q, args...)
		require.NoError(t, err)
	}
	exec(`INSERT INTO dead_letters (source, reason_class, reason, body, body_sha256, received_at)
		VALUES ('t', 'x', 'x', 'a', sha256('a'), $1), ('t', 'x', 'x', 'b', sha256('b'), $2)`,
		now.Add(-40*24*time.Hour), now)
	old := now.Add(-400 * 24 * time.Hour)
	for _, k := range prunedKinds {
		// 12,001 old rows (more than one prune batch): final ones, open
		// ones gone quiet, and a final one first heard of at its end; one
		// begun long ago that still moves, and one recent.
		k.insert(t, st, "final", 6000, k.final, k.finalRank, &old, old, old)
		k.insert(t, st, "quiet", 6000, k.open, k.openRank, &old, old, old)
		k.insert(t, st, "unbegun", 1, k.final, k.finalRank, nil, old, old)
		k.insert(t, st, "moving", 1, k.open, k.openRank, &old, old, now)
		k.insert(t, st, "new", 1, k.open, k.openRank, &now, now, now)
	}

	res, err := st.Prune(ctx, store.Retention{DeadLetters: 30 * 24 * time.Hour}, now)
	require.NoError(t, err)
	require.Equal(t, store.PruneResult{DeadLetters: 1}, res)
	for _, k := range prunedKinds {
		require.Equal(t, 12003, countIn(t, st, k.table), "%s: kept, no command retention set", k.name)
	}

	retention := store.Retention{Commands: 365 * 24 * time.Hour}
	res, err = st.Prune(ctx, retention, now)
	require.NoError(t, err)
	for _, k := range prunedKinds {
		require.Equal(t, int64(12001), k.pruned(res), k.name)
		left := count(t, st, `SELECT count(*) FROM `+k.table+` WHERE (`+k.ids+`) IN ((`+k.idsOf(`'moving1'`)+`), (`+k.idsOf(`'new1'`)+`))`)
		require.Equal(t, 2, left, "%s: the moving and the recent one are kept", k.name)
		require.Equal(t, 2, countIn(t, st, k.table), k.name)
		if k.tombstones != "" {
			require.Equal(t, 6001, count(t, st, `SELECT count(*) FROM `+k.tombstones+` WHERE status = $1`, k.final),
				"%s: a tombstone for each final one", k.name)
			require.Equal(t, 6001, countIn(t, st, k.tombstones), "%s: none for the open ones", k.name)
		}
		// The delete can find its rows through the index on a row's day, not
		// a scan of the table: its expression is the index's. (Which of the
		// two the planner takes for the two rows left here depends on the
		// index's width and the table's statistics; at fleet size, with few
		// rows old, it is the index.)
		require.Contains(t, plan(t, st, `SELECT `+k.ids+` FROM `+k.table+`
			WHERE coalesce(`+k.began+`, first_seen_at) < now() - interval '1 year' AND last_event_time < now() - interval '1 year' LIMIT 5000`),
			k.dayIndex, k.name)
	}

	// Tombstones are kept one more retention period after the prune (they
	// were written at the database's now), then go.
	_, err = st.Prune(ctx, retention, time.Now().Add(retention.Commands/2))
	require.NoError(t, err)
	for _, k := range tombstoned() {
		require.Equal(t, 6001, countIn(t, st, k.tombstones), k.name)
	}
	_, err = st.Prune(ctx, retention, time.Now().Add(retention.Commands+time.Hour))
	require.NoError(t, err)
	for _, k := range tombstoned() {
		require.Zero(t, countIn(t, st, k.tombstones), k.name)
	}
}

// tombstoned are the pruned kinds whose final rows leave a tombstone.
func tombstoned() []prunedKind {
	var out []prunedKind
	for _, k := range prunedKinds {
		if k.tombstones != "" {
			out = append(out, k)
		}
	}
	return out
}

// TestViews checks that the history views answer from real rows.
func TestViews(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Now().UTC()
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	_, err := st.Pool().Exec(ctx, `INSERT INTO device_commands
		(command_id, device_id, product_id, status, status_rank, created_time, sent_time, delivered_time, response_time, last_event_time, last_event_key)
		SELECT v.* FROM (SELECT $1::timestamptz AS t, $2::timestamptz AS old) x, LATERAL (VALUES
		       ('a', 'd', 'p', 'SUCCESSFUL', 3::int2, x.t, x.t + interval '1 s', x.t + interval '3 s', x.t + interval '6 s', x.t + interval '6 s', '\x00'::bytea),
		       ('b', 'd', 'p', 'TIMEOUT', 3, x.t + interval '1 min', NULL, NULL, NULL, x.t + interval '6 min', '\x00'),
		       ('c', 'd', 'p', 'SENT', 1, x.t + interval '2 min', x.t + interval '121 s', NULL, NULL, x.t + interval '121 s', '\x00'),
		       ('gone', 'd', 'p', 'SENT', 1, x.old, x.old, NULL, NULL, x.old, '\x00')) v`,
		day, day.AddDate(0, 0, -10))
	require.NoError(t, err)
	require.NoError(t, st.RefreshRollup(ctx, 3, now))
	var queued, delivery, device time.Duration
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT queued_for, delivery_took, device_took FROM command_durations WHERE command_id = 'a'`).
		Scan(&queued, &delivery, &device))
	require.Equal(t, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}, []time.Duration{queued, delivery, device})
	if now.Sub(day) > 10*time.Minute {
		require.Equal(t, 1, count(t, st, `SELECT count(*) FROM stuck_commands WHERE stuck_for > interval '10 minutes'`))
	}
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM stuck_commands`),
		"a command that has not moved for longer than the stuck horizon (3 days) has left IoTDA's queue")
	var commands, timedOut int
	var rate float64
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT commands, timed_out, timeout_rate FROM product_daily_outcomes WHERE product_id = 'p' AND day = $1`, day).
		Scan(&commands, &timedOut, &rate))
	require.Equal(t, 3, commands)
	require.Equal(t, 1, timedOut)
	require.InDelta(t, 0.3333, rate, 0.0001)
	require.Equal(t, 0, count(t, st, `SELECT count(*) FROM command_timeline`))
}

// plan is EXPLAIN's text for query.
// plan is query's plan when a scan of the whole table is the last resort.
func plan(t *testing.T, st *store.Store, query string) string {
	t.Helper()
	ctx := context.Background()
	tx, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, "SET LOCAL enable_seqscan = off")
	require.NoError(t, err)
	rows, err := tx.Query(ctx, "EXPLAIN "+query)
	require.NoError(t, err)
	var out string
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		out += line + "\n"
	}
	require.NoError(t, rows.Err())
	return out
}
