package console

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/store"
)

// The newest event (the overview's newest_event_time and the gauge
// cmdtrack_newest_notification_age_seconds, one statement) reads the newest
// entry of two partial indexes, the open commands' and the final ones'
// (migration 024), however many commands each status holds; migration 024
// dropped the (status, last_event_time) index it read one status at a time,
// without which that statement read every command of a status. Its value is
// still the newest last_event_time of any command, open or final.
func TestNewestEventReadsTheEndsOfTwoIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _, _ := testenv.Schema(t)
	db := st.Pool()
	now := time.Now().UTC().Truncate(time.Second)

	check := func(what string) {
		t.Helper()
		var want pgtype.Timestamptz
		require.NoError(t, db.QueryRow(ctx, `SELECT max(last_event_time) FROM device_commands`).Scan(&want))
		o, err := loadOverview(ctx, db, now)
		require.NoError(t, err)
		got, err := st.NewestEvent(ctx)
		require.NoError(t, err)
		if !want.Valid {
			require.Nil(t, o.NewestEventTime, what)
			require.True(t, got.IsZero(), what)
			return
		}
		require.NotNil(t, o.NewestEventTime, what)
		require.True(t, want.Time.Equal(*o.NewestEventTime), "%s: overview %v, want %v", what, *o.NewestEventTime, want.Time)
		require.True(t, want.Time.Equal(got), "%s: gauge %v, want %v", what, got, want.Time)
	}
	check("no commands")

	planTable(t, db, now)
	conn, err := db.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	custom, generic := explain(t, conn.Conn(), listStatement{sql: store.NewestEventSQL})
	for _, p := range []struct {
		kind string
		plan planNode
	}{{"custom", custom}, {"generic", generic}} {
		// One entry from the end of each index, and room for a few dead
		// ones; the table holds thousands of commands of each final status.
		read, bad := p.plan.rowsRead("device_commands")
		plan, _ := json.Marshal(p.plan)
		require.True(t, len(bad) == 0 && read <= float64(len(statuses)),
			"newest event (%s plan): read %.0f rows of device_commands (at most %d), %v\nplan: %s", p.kind, read, len(statuses), bad, plan)
	}
	check("the seeded table")

	// The newest a final command's, then an open one's.
	for _, c := range []struct{ id, status string }{{"late-final", "FAILED"}, {"late-open", "PENDING"}} {
		_, err := db.Exec(ctx, `INSERT INTO device_commands (command_id, status, status_rank, last_event_time, last_event_key)
			SELECT $1::text, $2::text, 0, max(last_event_time) + interval '1 minute', '\x00' FROM device_commands`, c.id, c.status)
		require.NoError(t, err)
		check("newest " + c.id)
	}
}
