package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/store"
)

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
	// 12,000 old commands (more than one prune batch), one created long ago
	// that still moves, and one recent.
	exec(`INSERT INTO device_commands (command_id, status, status_rank, created_time, last_event_time, last_event_key)
		SELECT 'old' || g, 'SUCCESSFUL', 3, $1, $1, '\x00' FROM generate_series(1, 12000) g`, now.Add(-400*24*time.Hour))
	exec(`INSERT INTO device_commands (command_id, status, status_rank, created_time, last_event_time, last_event_key)
		VALUES ('moving', 'DELIVERED', 2, $1, $2, '\x00'), ('new', 'SENT', 1, $2, $2, '\x00')`,
		now.Add(-400*24*time.Hour), now)

	res, err := st.Prune(ctx, store.Retention{DeadLetters: 30 * 24 * time.Hour}, now)
	require.NoError(t, err)
	require.Equal(t, store.PruneResult{DeadLetters: 1}, res)
	require.Equal(t, 12002, count(t, st, `SELECT count(*) FROM device_commands`), "commands kept: no command retention set")

	res, err = st.Prune(ctx, store.Retention{Commands: 365 * 24 * time.Hour}, now)
	require.NoError(t, err)
	require.Equal(t, int64(12000), res.Commands)
	require.Equal(t, 2, count(t, st, `SELECT count(*) FROM device_commands WHERE command_id IN ('new', 'moving')`))
	// The delete finds its rows through the index on a command's day, not a
	// scan of the table.
	require.Contains(t, plan(t, st, `SELECT command_id FROM device_commands
		WHERE coalesce(created_time, first_seen_at) < now() - interval '1 year' AND last_event_time < now() - interval '1 year' LIMIT 5000`),
		"device_commands_day_idx")
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
func plan(t *testing.T, st *store.Store, query string) string {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), "EXPLAIN "+query)
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
