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
	// 12,000 old history rows (more than one prune batch) and 10 recent ones.
	exec(`INSERT INTO device_command_events (command_id, event_key, status, event_time, source, payload, received_at)
		SELECT 'c' || g, sha256(g::text::bytea), 'SENT', $1, 'test', '{}', $1
		FROM generate_series(1, 12000) g`, now.Add(-100*24*time.Hour))
	exec(`INSERT INTO device_command_events (command_id, event_key, status, event_time, source, payload, received_at)
		SELECT 'r' || g, sha256(g::text::bytea), 'SENT', $1, 'test', '{}', $1
		FROM generate_series(1, 10) g`, now.Add(-time.Hour))
	exec(`INSERT INTO dead_letters (source, reason_class, reason, body, body_sha256, received_at)
		VALUES ('t', 'x', 'x', 'a', sha256('a'), $1), ('t', 'x', 'x', 'b', sha256('b'), $2)`,
		now.Add(-40*24*time.Hour), now)
	exec(`INSERT INTO device_commands (command_id, status, status_rank, last_event_time, last_event_key)
		VALUES ('old', 'SUCCESSFUL', 3, $1, '\x00'), ('new', 'SENT', 1, $2, '\x00')`,
		now.Add(-400*24*time.Hour), now)

	res, err := st.Prune(ctx, store.Retention{History: 90 * 24 * time.Hour, DeadLetters: 30 * 24 * time.Hour}, now)
	require.NoError(t, err)
	require.Equal(t, store.PruneResult{History: 12000, DeadLetters: 1}, res)
	require.Equal(t, 10, count(t, st, `SELECT count(*) FROM device_command_events`))
	require.Equal(t, 2, count(t, st, `SELECT count(*) FROM device_commands`), "commands kept: no command retention set")

	res, err = st.Prune(ctx, store.Retention{Commands: 365 * 24 * time.Hour}, now)
	require.NoError(t, err)
	require.Equal(t, int64(1), res.Commands)
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM device_commands WHERE command_id = 'new'`))
}

// TestViews checks that the history views answer from real rows.
func TestViews(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	_, err := st.Pool().Exec(ctx, `INSERT INTO device_commands
		(command_id, device_id, product_id, status, status_rank, created_time, sent_time, delivered_time, response_time, last_event_time, last_event_key)
		VALUES ('a', 'd', 'p', 'SUCCESSFUL', 3, '2026-01-01T00:00:00Z', '2026-01-01T00:00:01Z', '2026-01-01T00:00:03Z', '2026-01-01T00:00:06Z', '2026-01-01T00:00:06Z', '\x00'),
		       ('b', 'd', 'p', 'TIMEOUT', 3, '2026-01-01T01:00:00Z', NULL, NULL, NULL, '2026-01-01T01:05:00Z', '\x00'),
		       ('c', 'd', 'p', 'SENT', 1, '2026-01-01T02:00:00Z', '2026-01-01T02:00:01Z', NULL, NULL, '2026-01-01T02:00:01Z', '\x00')`)
	require.NoError(t, err)
	var queued, delivery, device time.Duration
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT queued_for, delivery_took, device_took FROM command_durations WHERE command_id = 'a'`).
		Scan(&queued, &delivery, &device))
	require.Equal(t, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}, []time.Duration{queued, delivery, device})
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM stuck_commands WHERE stuck_for > interval '10 minutes'`))
	var commands, timedOut int
	var rate float64
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT commands, timed_out, timeout_rate FROM product_daily_outcomes WHERE product_id = 'p' AND day = '2026-01-01'`).
		Scan(&commands, &timedOut, &rate))
	require.Equal(t, 3, commands)
	require.Equal(t, 1, timedOut)
	require.InDelta(t, 0.3333, rate, 0.0001)
	require.Equal(t, 0, count(t, st, `SELECT count(*) FROM command_timeline`))
}
