package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/store"
)

// Reconcile's page of open commands (OpenCommands) and the newest event
// read the ends of the partial indexes of the open and of the final
// commands (migrations 014 and 024), never a status' whole range or the
// table: migration 024 dropped the (status, last_event_time) index that
// either could have read instead. The table here is mostly final commands,
// as a fleet's is.
func TestOpenAndNewestReadTheirIndexes(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	db := st.Pool()
	now := time.Now().UTC()
	_, err := db.Exec(ctx, `
		INSERT INTO device_commands (command_id, device_id, status, status_rank, last_event_time, last_event_key)
		SELECT 'c-' || g, 'd-' || (g % 500),
			CASE WHEN g % 100 = 0 THEN 'SENT' WHEN g % 100 = 1 THEN 'PENDING' WHEN g % 100 < 5 THEN 'FAILED' ELSE 'SUCCESSFUL' END,
			CASE WHEN g % 100 < 2 THEN 1 ELSE 3 END, $1::timestamptz - g * interval '1 minute', '\x00'
		FROM generate_series(1, 20000) g`, now)
	require.NoError(t, err)
	_, err = db.Exec(ctx, `ANALYZE device_commands`)
	require.NoError(t, err)

	explain := func(sql string, args ...any) string {
		t.Helper()
		rows, err := db.Query(ctx, `EXPLAIN (ANALYZE, COSTS OFF) `+sql, args...)
		require.NoError(t, err)
		plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return strings.Join(plan, "\n")
	}
	for _, sql := range []string{store.OpenCommandsSQL, store.NewestEventSQL} {
		var plan string
		if sql == store.OpenCommandsSQL {
			plan = explain(sql, now, nil, nil, "", 100)
		} else {
			plan = explain(sql)
		}
		require.NotContains(t, plan, "Seq Scan", "%s\n%s", sql, plan)
		require.NotContains(t, plan, "Bitmap", "%s\n%s", sql, plan)
		require.NotContains(t, plan, "Sort", "%s\n%s", sql, plan)
		require.Contains(t, plan, "device_commands_open_idx", "%s\n%s", sql, plan)
		if sql == store.NewestEventSQL {
			require.Contains(t, plan, "device_commands_final_idx", "%s\n%s", sql, plan)
		}
	}
}
