package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// Messages have their rollups, refreshed with the commands' by the same
// call, by their own day (pending_time, or first_seen_at when the platform
// never held them): the last days recomputed, older days kept, hours older
// than eight days dropped.
func TestRefreshMessageRollup(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2027, 2, 10, 12, 0, 0, 0, time.UTC)
	exec := func(q string, args ...any) {
		t.Helper()
		_, err := st.Pool().Exec(ctx, q, args...)
		require.NoError(t, err)
	}
	// 40 messages held an hour ago, every fourth failed; 10 delivered at
	// once (no pending_time) three hours ago, without a product; one five
	// days ago.
	exec(`INSERT INTO device_messages (device_id, message_id, status, status_rank, product_id, pending_time,
			last_event_time, last_event_key, first_seen_at)
		SELECT 'd', 'm' || g, CASE WHEN g % 4 = 0 THEN 'FAILED' ELSE 'DELIVERED' END, 1, 'p', $1, $1, '\x00', $1::timestamptz + interval '1 minute'
		FROM generate_series(1, 40) g`, now.Add(-time.Hour))
	exec(`INSERT INTO device_messages (device_id, message_id, status, status_rank, last_event_time, last_event_key, first_seen_at)
		SELECT 'd', 'n' || g, 'DELIVERED', 1, $1, '\x00', $1 FROM generate_series(1, 10) g`, now.Add(-3*time.Hour))
	exec(`INSERT INTO device_messages (device_id, message_id, status, status_rank, product_id, pending_time,
			last_event_time, last_event_key, first_seen_at)
		VALUES ('d', 'old', 'TIMEOUT', 1, 'p', $1, $1, '\x00', $1)`, now.AddDate(0, 0, -5))
	require.NoError(t, st.RefreshRollup(ctx, 30, now))

	n := func(q string, args ...any) (n int) {
		t.Helper()
		require.NoError(t, st.Pool().QueryRow(ctx, q, args...).Scan(&n))
		return n
	}
	hourly := func(product, status string, hour time.Time) int {
		return n(`SELECT coalesce(sum(messages), 0) FROM message_outcomes_hourly
			WHERE product_id = $1 AND status = $2 AND hour = $3`, product, status, hour)
	}
	daily := func(product, status string, day time.Time) int {
		return n(`SELECT coalesce(sum(messages), 0) FROM message_outcomes_daily
			WHERE product_id = $1 AND status = $2 AND day = $3::date`, product, status, day)
	}
	today, fiveAgo := now.Truncate(24*time.Hour), now.AddDate(0, 0, -5).Truncate(24*time.Hour)
	require.Equal(t, 30, hourly("p", "DELIVERED", now.Add(-time.Hour)))
	require.Equal(t, 10, hourly("p", "FAILED", now.Add(-time.Hour)))
	require.Equal(t, 10, hourly("", "DELIVERED", now.Add(-3*time.Hour)), "by first_seen_at, '' for no product")
	require.Equal(t, []int{30, 10, 10, 1}, []int{daily("p", "DELIVERED", today), daily("p", "FAILED", today),
		daily("", "DELIVERED", today), daily("p", "TIMEOUT", fiveAgo)})

	exec(`DELETE FROM device_messages WHERE message_id = 'old'`)
	exec(`UPDATE device_messages SET status = 'FAILED' WHERE message_id = 'm1'`)
	require.NoError(t, st.RefreshRollup(ctx, 3, now))
	require.Equal(t, []int{29, 11}, []int{daily("p", "DELIVERED", today), daily("p", "FAILED", today)}, "today is recomputed")
	require.Equal(t, 11, hourly("p", "FAILED", now.Add(-time.Hour)))
	require.Equal(t, 1, daily("p", "TIMEOUT", fiveAgo), "a final day stays, though its message was deleted")
	require.Equal(t, 1, hourly("p", "TIMEOUT", now.AddDate(0, 0, -5)), "an hour older than the days refreshed stays")

	require.NoError(t, st.RefreshRollup(ctx, 3, now.AddDate(0, 0, 4)))
	require.Zero(t, hourly("p", "TIMEOUT", now.AddDate(0, 0, -5)), "hours older than eight days go")
	require.Equal(t, 1, daily("p", "TIMEOUT", fiveAgo), "the daily rollup keeps its days")
	require.Equal(t, 11, daily("p", "FAILED", today))
}

// Migration 020 fills the message rollups for the messages on record: the
// daily one from every message, the hourly one from the last eight days'.
func TestMessageRollupMigration(t *testing.T) {
	t.Parallel()
	st, _, _ := testenv.EmptySchema(t)
	ctx := context.Background()
	require.NoError(t, st.MigrateTo(ctx, 19))
	now := time.Now().UTC()
	_, err := st.Pool().Exec(ctx, `INSERT INTO device_messages (device_id, message_id, status, status_rank, product_id,
			pending_time, last_event_time, last_event_key, first_seen_at)
		VALUES ('d', 'new', 'DELIVERED', 1, 'p', $1, $1, '\x00', $1), ('d', 'old', 'FAILED', 1, NULL, $2, $2, '\x00', $2)`,
		now.Add(-time.Hour), now.AddDate(0, 0, -20))
	require.NoError(t, err)
	require.NoError(t, st.MigrateTo(ctx, 20))
	var daily, hourly []string
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT
		(SELECT array_agg(to_char(day, 'YYYY-MM-DD') || '/' || product_id || '/' || status || '/' || messages ORDER BY day) FROM message_outcomes_daily),
		(SELECT array_agg(hour::text || '/' || product_id || '/' || status || '/' || messages) FROM message_outcomes_hourly)`).
		Scan(&daily, &hourly))
	require.Equal(t, []string{
		now.AddDate(0, 0, -20).Format(time.DateOnly) + "//FAILED/1",
		now.Add(-time.Hour).Format(time.DateOnly) + "/p/DELIVERED/1",
	}, daily)
	require.Len(t, hourly, 1)
	require.Contains(t, hourly[0], "/p/DELIVERED/1")
}
