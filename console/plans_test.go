package console

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// The lists' plans, read from PostgreSQL: every filter of /commands and
// /dead-letters, and every combination of them, reads a number of rows
// bounded by the page, however the table's rows fall. The table here is
// small (tens of thousands of rows, analysed), shaped so that a plan which
// walks an index and filters shows it: a busy device, a device whose
// commands are all old, a rare device, a product with a rare status.

// planTable seeds the schema's device_commands and dead_letters and
// analyses them.
func planTable(t *testing.T, db *pgxpool.Pool, now time.Time) {
	t.Helper()
	ctx := context.Background()
	from := now.AddDate(0, 0, -30)
	_, err := db.Exec(ctx, `
		INSERT INTO device_commands (command_id, device_id, product_id, status, status_rank, created_time,
			last_event_time, last_event_key, first_seen_at, updated_at)
		SELECT id, device, product, status, CASE WHEN status IN ('SENT', 'DELIVERED') THEN 1 ELSE 3 END,
			-- A legacy callback's command has no creation time: the list
			-- orders it by when cmdtrack first heard of it.
			CASE WHEN legacy THEN NULL ELSE t END, t, '\x00', t, t
		FROM (
			-- The fleet: 3,000 devices of 20 products, ten commands each
			-- over 30 days.
			SELECT 'cmd-' || g AS id, 'dev-' || (g % 3000) AS device, 'prod-' || (g % 20) AS product,
				CASE WHEN g % 200 = 0 THEN 'SENT' WHEN g % 200 < 3 THEN 'DELIVERED' WHEN g % 100 < 4 THEN 'FAILED'
				     WHEN g % 100 < 7 THEN 'TIMEOUT' WHEN g % 100 = 7 THEN 'EXPIRED' ELSE 'SUCCESSFUL' END AS status,
				$1::timestamptz + (g / 30000.0) * interval '30 days' AS t, g % 50 = 0 AS legacy
			FROM generate_series(1, 30000) g
			UNION ALL
			-- A device with 2,000 commands, all in the first two days, three
			-- of them failed.
			SELECT 'old-' || g, 'dev-old', 'prod-3', CASE WHEN g <= 3 THEN 'FAILED' ELSE 'SUCCESSFUL' END,
				$1::timestamptz + (g / 2000.0) * interval '2 days', false
			FROM generate_series(1, 2000) g
			UNION ALL
			-- A busy device, 2,000 commands over the 30 days, whose only three
			-- failures are its oldest.
			SELECT 'busy-' || g, 'dev-busy', 'prod-4', CASE WHEN g <= 3 THEN 'FAILED' ELSE 'SUCCESSFUL' END,
				$1::timestamptz + (g / 2000.0) * interval '30 days', false
			FROM generate_series(1, 2000) g
			UNION ALL
			-- A rare device.
			SELECT 'rare-' || g, 'dev-rare', 'prod-5', 'FAILED', $1::timestamptz + interval '10 days' + g * interval '1 min', false
			FROM generate_series(1, 2) g
			UNION ALL
			-- A rare pair: the fleet's products 4 to 6 time out, product 7
			-- twice, long ago.
			SELECT 'pair-' || g, 'dev-' || g, 'prod-7', 'TIMEOUT', $1::timestamptz + interval '3 days' + g * interval '1 min', false
			FROM generate_series(1, 2) g
			UNION ALL
			-- A rare status: no other command was canceled.
			SELECT 'canceled-' || g, 'dev-' || g, 'prod-6', 'CANCELED', $1::timestamptz + interval '5 days' + g * interval '1 min', false
			FROM generate_series(1, 2) g
		) s`, from)
	require.NoError(t, err)
	_, err = db.Exec(ctx, `
		INSERT INTO dead_letters (received_at, source, reason_class, reason, body, body_sha256)
		SELECT $1::timestamptz + (g / 20000.0) * interval '30 days', 'amqp:DefaultQueue',
			CASE WHEN g <= 3 THEN 'rare_class' ELSE 'invalid_json' END, 'seeded', '{}', sha256(g::text::bytea)
		FROM generate_series(1, 20000) g`, from)
	require.NoError(t, err)
	_, err = db.Exec(ctx, `ANALYZE device_commands, dead_letters`)
	require.NoError(t, err)
}

// planNode is a node of EXPLAIN (ANALYZE, FORMAT JSON).
type planNode struct {
	NodeType    string     `json:"Node Type"`
	Relation    string     `json:"Relation Name"`
	Index       string     `json:"Index Name"`
	ActualRows  float64    `json:"Actual Rows"`
	ActualLoops float64    `json:"Actual Loops"`
	Removed     float64    `json:"Rows Removed by Filter"`
	Recheck     float64    `json:"Rows Removed by Index Recheck"`
	Plans       []planNode `json:"Plans"`
}

// rowsRead walks a plan and returns the rows its scans of relation read
// (returned or removed by a filter), and a complaint about each scan that
// reads the relation without an index. A bitmap scan reads every entry its
// index scans return, whatever the limit above it: those count.
func (n planNode) rowsRead(relation string) (read float64, bad []string) {
	if n.Relation == relation {
		switch n.NodeType {
		case "Index Scan", "Index Only Scan":
			read += n.ActualRows * n.ActualLoops
		case "Bitmap Heap Scan":
			read += n.bitmapEntries()
		default:
			bad = append(bad, n.NodeType+" on "+relation)
			read += n.ActualRows * n.ActualLoops
		}
		read += n.Removed + n.Recheck
	}
	for _, c := range n.Plans {
		r, b := c.rowsRead(relation)
		read += r
		bad = append(bad, b...)
	}
	return read, bad
}

func (n planNode) bitmapEntries() float64 {
	if n.NodeType == "Bitmap Index Scan" {
		return n.ActualRows * n.ActualLoops
	}
	var sum float64
	for _, c := range n.Plans {
		sum += c.bitmapEntries()
	}
	return sum
}

// literal writes v as SQL, for a statement run as a prepared one.
func literal(v any) string {
	switch v := v.(type) {
	case string:
		return "'" + strings.ReplaceAll(v, "'", "''") + "'"
	case time.Time:
		return "'" + v.UTC().Format(time.RFC3339Nano) + "'::timestamptz"
	case int64:
		return strconv.FormatInt(v, 10)
	case []string:
		lits := make([]string, len(v))
		for i, e := range v {
			lits[i] = literal(e)
		}
		return "ARRAY[" + strings.Join(lits, ", ") + "]::text[]"
	}
	panic(fmt.Sprintf("literal: %T", v))
}

// explain runs a list's statement under EXPLAIN ANALYZE, with the settings
// the console runs it with, once planned for its arguments (a custom plan)
// and once as a prepared statement's generic plan (which the console's
// pool may settle on after a few runs), and returns both plans.
func explain(t *testing.T, conn *pgx.Conn, st listStatement) (custom, generic planNode) {
	t.Helper()
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	if settings := st.settings(); settings != "" {
		_, err := tx.Exec(ctx, settings)
		require.NoError(t, err)
	}
	read := func(sql string, args ...any) planNode {
		var out []struct {
			Plan planNode `json:"Plan"`
		}
		var doc []byte
		require.NoError(t, tx.QueryRow(ctx, sql, args...).Scan(&doc), "%s", sql)
		require.NoError(t, json.Unmarshal(doc, &out))
		return out[0].Plan
	}
	custom = read("EXPLAIN (ANALYZE, FORMAT JSON) "+st.sql, st.args...)
	_, err = tx.Exec(ctx, "PREPARE list_plan AS "+st.sql)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan")
	require.NoError(t, err)
	lits := make([]string, len(st.args))
	for i, a := range st.args {
		lits[i] = literal(a)
	}
	exec := "EXECUTE list_plan"
	if len(lits) > 0 {
		exec += "(" + strings.Join(lits, ", ") + ")"
	}
	generic = read("EXPLAIN (ANALYZE, FORMAT JSON) " + exec)
	_, err = tx.Exec(ctx, "DEALLOCATE list_plan")
	require.NoError(t, err)
	return custom, generic
}

// naiveCommands is what a page of /commands holds, by the definition of the
// list rather than by its statement.
func naiveCommands(t *testing.T, db *pgxpool.Pool, f CommandFilter) []string {
	t.Helper()
	q := `SELECT command_id FROM device_commands WHERE ($1 = '' OR device_id = $1) AND ($2 = '' OR product_id = $2)
		AND ($3 = '' OR status = $3) AND ($4::timestamptz IS NULL OR coalesce(created_time, first_seen_at) >= $4)
		AND ($5::timestamptz IS NULL OR coalesce(created_time, first_seen_at) < $5)
		AND ($6::timestamptz IS NULL OR (coalesce(created_time, first_seen_at), command_id) < ($6, $7))
		ORDER BY coalesce(created_time, first_seen_at) DESC, command_id DESC LIMIT ` + strconv.Itoa(pageSize+1)
	rows, err := db.Query(context.Background(), q, f.Device, f.Product, f.Status, f.Since, f.Until, f.Before, f.BeforeID)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return ids
}

func TestListPlansAreBoundedByThePage(t *testing.T) {
	ctx := context.Background()
	st, _, _ := testenv.Schema(t)
	db := st.Pool()
	now := time.Now().UTC().Truncate(time.Second)
	planTable(t, db, now)
	conn, err := db.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()

	// A page reads its rows, plus the head of each status' range that a
	// merge of them looks at and does not keep, and the rows of the
	// cursor's own time before it: 54 at most here. Twice a page leaves
	// room for ties, and is far below what a scan that filters reads.
	bound := float64(2 * (pageSize + 1))
	check := func(name, relation string, st listStatement) {
		t.Helper()
		custom, generic := explain(t, conn.Conn(), st)
		for _, p := range []struct {
			kind string
			plan planNode
		}{{"custom", custom}, {"generic", generic}} {
			read, bad := p.plan.rowsRead(relation)
			plan, _ := json.Marshal(p.plan)
			if len(bad) > 0 || read > bound {
				t.Errorf("%s (%s plan): read %.0f rows of %s (at most %.0f), %v\nstatement: %s\nplan: %s",
					name, p.kind, read, relation, bound, bad, st.sql, plan)
			}
		}
	}

	windows := []struct {
		name         string
		since, until *time.Time
	}{
		{"", nil, nil},
		{"days 10-20 ago", new(now.AddDate(0, 0, -20)), new(now.AddDate(0, 0, -10))},
		{"until 25 days ago", nil, new(now.AddDate(0, 0, -25))},
	}
	devices := map[string]string{"": "", "dev-old": "prod-3", "dev-busy": "prod-4", "dev-rare": "prod-5"}
	for device, devProduct := range devices {
		products := []string{"", devProduct}
		if device == "" {
			products = []string{"", "prod-3", "prod-6", "prod-7"}
		}
		for _, product := range products {
			for _, status := range []string{"", "SUCCESSFUL", "FAILED", "TIMEOUT", "CANCELED"} {
				for _, w := range windows {
					f := CommandFilter{Device: device, Product: product, Status: status, Since: w.since, Until: w.until}
					for page := 1; page <= 2; page++ {
						name := fmt.Sprintf("/commands device=%q product=%q status=%q window=%q page %d", device, product, status, w.name, page)
						check(name, "device_commands", commandsQuery(f))
						p, err := listCommands(ctx, db, f)
						require.NoError(t, err, name)
						got := []string{}
						for _, c := range p.Commands {
							got = append(got, c.CommandID)
						}
						want := naiveCommands(t, db, f)
						require.Equal(t, append([]string{}, want[:min(len(want), pageSize)]...), got, name)
						if p.Next == "" {
							break
						}
						last := p.Commands[pageSize-1]
						f.Before, f.BeforeID = &last.Key, last.CommandID
					}
				}
			}
		}
	}

	for _, class := range []string{"", "invalid_json", "rare_class"} {
		var before *time.Time
		var beforeID int64
		for page := 1; page <= 2; page++ {
			check(fmt.Sprintf("/dead-letters class=%q page %d", class, page), "dead_letters", deadLettersQuery(class, before, beforeID))
			p, err := listDeadLetters(ctx, db, class, before, beforeID)
			require.NoError(t, err)
			if p.Next == "" {
				break
			}
			last := p.DeadLetters[pageSize-1]
			before, beforeID = &last.ReceivedAt, last.ID
		}
	}
	// A device's page reads the head of each status' range, up to its
	// sample, through device_commands_device_status_day_idx (migration 023
	// dropped the index it read before).
	bound = float64(len(statuses) * deviceSample)
	check("the device page's commands of dev-busy", "device_commands", commandList.query(listFilter{Device: "dev-busy"}, deviceSample))
}
