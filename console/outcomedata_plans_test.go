package console

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// The webhooks' deliverer reads a claim's rows through OutcomeDataMany on a
// pool that plans generically (store.Options.GenericPlans): each kind's
// statement reads its rows by their keys, custom or generic, never a scan of
// the table, however many rows the table holds.
func TestOutcomeDataManyPlans(t *testing.T) {
	ctx := context.Background()
	st, _, _ := testenv.Schema(t)
	db := st.Pool()
	now := time.Now().UTC().Truncate(time.Second)
	planTable(t, db, now)
	planMessages(t, db, now)
	_, err := db.Exec(ctx, `
		INSERT INTO device_calls (call_id, call_kind, device_id, product_id, status, status_rank, sent_time,
			finished_time, last_event_time, last_event_key)
		SELECT 'call-' || g, CASE WHEN g % 2 = 0 THEN 'command' ELSE 'properties' END, 'dev-' || (g % 3000),
			'prod-' || (g % 20), 'SUCCESSFUL', 3, t, t, t, '\x00'
		FROM (SELECT g, $1::timestamptz + (g / 30000.0) * interval '30 days' AS t FROM generate_series(1, 30000) g) s`,
		now.AddDate(0, 0, -30))
	require.NoError(t, err)
	_, err = db.Exec(ctx, `ANALYZE device_calls`)
	require.NoError(t, err)

	// A claim's worth of subjects (CMDTRACK_WEBHOOK_WORKERS x 4 events: 64
	// for 16 workers), and one of each kind gone (retention): a key that
	// matches nothing.
	var commands, calls, devices, messages []string
	for i := 1; i <= 64; i++ {
		commands = append(commands, fmt.Sprintf("cmd-%d", i*397))
		calls = append(calls, fmt.Sprintf("call-%d", i*397))
		devices = append(devices, fmt.Sprintf("dev-%d", (i*397)%3000))
		messages = append(messages, fmt.Sprintf("msg-%d", i*397))
	}
	commands, calls = append(commands, "gone"), append(calls, "gone")
	devices, messages = append(devices, "dev-1"), append(messages, "gone")

	conn, err := db.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	for _, c := range []struct {
		name, relation string
		st             listStatement
	}{
		{"commands", "device_commands", listStatement{sql: outcomeCommandsSQL, args: []any{commands}}},
		{"messages", "device_messages", listStatement{sql: outcomeMessagesSQL, args: []any{devices, messages}}},
		{"calls", "device_calls", listStatement{sql: outcomeCallsSQL, args: []any{calls}}},
	} {
		custom, generic := explain(t, conn.Conn(), c.st)
		for _, p := range []struct {
			name string
			plan planNode
		}{{"custom", custom}, {"generic", generic}} {
			read, bad := p.plan.rowsRead(c.relation)
			require.Empty(t, bad, "%s (%s plan): %v", c.name, p.name, p.plan.nodes())
			require.LessOrEqual(t, read, float64(len(commands)), "%s (%s plan) read %.0f rows of %s for %d keys: %v",
				c.name, p.name, read, c.relation, len(commands), p.plan.nodes())
		}
	}
}
