package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// planMessages seeds device_messages as planTable seeds device_commands:
// a fleet over 30 days, a device whose messages are all old, a busy device
// whose only failures are its oldest, a rare device, a rare pair (product
// 7's two timeouts, long ago), a device whose messages have no product;
// half the messages were held PENDING first,
// the others delivered at once (no pending_time: their day is when
// cmdtrack first heard of them).
func planMessages(t *testing.T, db *pgxpool.Pool, now time.Time) {
	t.Helper()
	ctx := context.Background()
	_, err := db.Exec(ctx, `
		INSERT INTO device_messages (device_id, message_id, status, status_rank, product_id, pending_time,
			last_event_time, last_event_key, first_seen_at, updated_at)
		SELECT device, id, status, CASE WHEN status = 'PENDING' THEN 0 ELSE 1 END, product,
			CASE WHEN held THEN t END, t, '\x00', t, t
		FROM (
			SELECT 'dev-' || (g % 3000) AS device, 'msg-' || g AS id, 'prod-' || (g % 20) AS product,
				CASE WHEN g % 200 = 0 THEN 'PENDING' WHEN g % 100 < 4 THEN 'FAILED' WHEN g % 100 < 7 THEN 'TIMEOUT'
				     ELSE 'DELIVERED' END AS status,
				$1::timestamptz + (g / 30000.0) * interval '30 days' AS t, g % 2 = 0 AS held
			FROM generate_series(1, 30000) g
			UNION ALL
			SELECT 'dev-old', 'old-' || g, 'prod-3', CASE WHEN g <= 3 THEN 'FAILED' ELSE 'DELIVERED' END,
				$1::timestamptz + (g / 2000.0) * interval '2 days', true
			FROM generate_series(1, 2000) g
			UNION ALL
			SELECT 'dev-busy', 'busy-' || g, 'prod-4', CASE WHEN g <= 3 THEN 'FAILED' ELSE 'DELIVERED' END,
				$1::timestamptz + (g / 2000.0) * interval '30 days', g % 3 = 0
			FROM generate_series(1, 2000) g
			UNION ALL
			SELECT 'dev-rare', 'rare-' || g, 'prod-5', 'FAILED', $1::timestamptz + interval '10 days' + g * interval '1 min', true
			FROM generate_series(1, 2) g
			UNION ALL
			-- No product: the header did not say (a status list reads them
			-- apart from every product's).
			SELECT 'dev-none', 'none-' || g, NULL, (ARRAY['PENDING', 'FAILED', 'TIMEOUT', 'DELIVERED'])[g % 4 + 1],
				$1::timestamptz + g * interval '7 hours', g % 2 = 0
			FROM generate_series(1, 80) g
			UNION ALL
			-- The same message id as the fleet's, on other devices.
			SELECT 'dev-pair-' || g, 'msg-' || g, 'prod-7', 'TIMEOUT', $1::timestamptz + interval '3 days' + g * interval '1 min', false
			FROM generate_series(1, 2) g
		) s`, now.AddDate(0, 0, -30))
	require.NoError(t, err)
	_, err = db.Exec(ctx, `ANALYZE device_messages`)
	require.NoError(t, err)
}

// naiveMessages is what a page of /messages holds, by the definition of the
// list rather than by its statement.
func naiveMessages(t *testing.T, db *pgxpool.Pool, f MessageFilter) []string {
	t.Helper()
	const key = `coalesce(pending_time, first_seen_at)`
	q := `SELECT device_id || '/' || message_id FROM device_messages WHERE ($1 = '' OR device_id = $1)
		AND ($2 = '' OR product_id = $2) AND ($3 = '' OR status = $3) AND ($4::timestamptz IS NULL OR ` + key + ` >= $4)
		AND ($5::timestamptz IS NULL OR ` + key + ` < $5)
		AND ($6::timestamptz IS NULL OR (` + key + `, seq) < ($6, $7))
		ORDER BY ` + key + ` DESC, seq DESC LIMIT ` + strconv.Itoa(pageSize+1)
	rows, err := db.Query(context.Background(), q, f.Device, f.Product, f.Status, f.Since, f.Until, f.Before, f.BeforeSeq)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return ids
}

// Every filter of /messages, and every combination, reads a number of rows
// bounded by the page, in the list's order: through the product and day
// indexes, a page; a status alone, a page per product (the heads of the
// product index's ranges, migration 031); a device, through the primary
// key, the device's messages (031 dropped its list index).
func TestMessageListPlansAreBoundedByThePage(t *testing.T) {
	ctx := context.Background()
	st, _, _ := testenv.Schema(t)
	db := st.Pool()
	now := time.Now().UTC().Truncate(time.Second)
	planMessages(t, db, now)
	conn, err := db.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()

	// A page, the heads of the four statuses' ranges a merge looks at, ties.
	bound := float64(2 * (pageSize + 1))
	check := func(name string, st listStatement, bound float64) {
		t.Helper()
		custom, generic := explain(t, conn.Conn(), st)
		for _, p := range []struct {
			kind string
			plan planNode
		}{{"custom", custom}, {"generic", generic}} {
			read, bad := p.plan.rowsRead("device_messages")
			plan, _ := json.Marshal(p.plan)
			if len(bad) > 0 || read > bound {
				t.Errorf("%s (%s plan): read %.0f rows of device_messages (at most %.0f), %v\nstatement: %s\nplan: %s",
					name, p.kind, read, bound, bad, st.sql, plan)
			}
			// With sorting off (inOrderOnly), a sort means the index's
			// order was not used; its disabled cost once made PostgreSQL
			// JIT-compile the plan, 0.8 s of a page of 50 rows.
			if st.inOrder && slices.Contains(p.plan.nodes(), "Sort") {
				t.Errorf("%s (%s plan): sorts, where the index gives the order\nstatement: %s\nplan: %s", name, p.kind, st.sql, plan)
			}
			// The heads' merge sorts them once; a second sort is of a
			// product's range, which its index holds in order.
			if sorts := countOf(p.plan.nodes(), "Sort"); st.heads && sorts > 1 {
				t.Errorf("%s (%s plan): %d sorts, where the product index gives each head's order\nstatement: %s\nplan: %s",
					name, p.kind, sorts, st.sql, plan)
			}
		}
	}
	var products float64
	require.NoError(t, db.QueryRow(ctx, `SELECT count(DISTINCT product_id) FROM device_messages`).Scan(&products))
	// A page of each product's head and of the messages without one, and
	// the loose scan's probe of each product and of the end.
	headsBound := (products+1)*float64(pageSize+1) + products + 1
	deviceRows := func(device string) float64 {
		var n float64
		require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM device_messages WHERE device_id = $1`, device).Scan(&n))
		return n
	}

	windows := []struct {
		name         string
		since, until *time.Time
	}{
		{"", nil, nil},
		{"days 10-20 ago", new(now.AddDate(0, 0, -20)), new(now.AddDate(0, 0, -10))},
		{"until 25 days ago", nil, new(now.AddDate(0, 0, -25))},
	}
	devices := map[string]string{"": "", "dev-old": "prod-3", "dev-busy": "prod-4", "dev-rare": "prod-5", "dev-none": ""}
	for device, devProduct := range devices {
		products := []string{"", devProduct}
		switch {
		case device != "" && devProduct == "":
			products = []string{""}
		case device == "":
			products = []string{"", "prod-3", "prod-7"}
		}
		for _, product := range products {
			for _, status := range []string{"", "PENDING", "DELIVERED", "FAILED", "TIMEOUT"} {
				for _, w := range windows {
					f := MessageFilter{Device: device, Product: product, Status: status, Since: w.since, Until: w.until}
					for page := 1; page <= 2; page++ {
						name := fmt.Sprintf("/messages device=%q product=%q status=%q window=%q page %d", device, product, status, w.name, page)
						b := bound
						switch {
						case device != "":
							b = deviceRows(device)
						case product == "" && status != "" && status != "DELIVERED":
							b = headsBound
						}
						check(name, messagesQuery(f), b)
						p, err := listMessages(ctx, db, f)
						require.NoError(t, err, name)
						got := []string{}
						for _, m := range p.Messages {
							got = append(got, m.DeviceID+"/"+m.MessageID)
						}
						want := naiveMessages(t, db, f)
						require.Equal(t, append([]string{}, want[:min(len(want), pageSize)]...), got, name)
						if p.Next == "" {
							break
						}
						last := p.Messages[pageSize-1]
						f.Before, f.BeforeSeq = &last.Key, last.Seq
					}
				}
			}
		}
	}

	// A device's page reads the device's messages.
	check("the device page's messages of dev-busy", messageList.query(listFilter{Device: "dev-busy"}, deviceSample),
		deviceRows("dev-busy"))
}

func countOf(list []string, s string) int {
	n := 0
	for _, v := range list {
		if v == s {
			n++
		}
	}
	return n
}

// The overview and /outcomes count messages per product, status and day
// from the rollup (migration 020): they read no row of device_messages,
// whatever its size.
func TestMessageOutcomePlans(t *testing.T) {
	ctx := context.Background()
	st, _, _ := testenv.Schema(t)
	db := st.Pool()
	now := time.Now().UTC().Truncate(time.Second)
	planMessages(t, db, now)
	require.NoError(t, st.RefreshRollup(ctx, 8, now))
	from := now.Add(-7 * 24 * time.Hour)
	all, allArgs := messageOutcomesQuery("", from)
	one, oneArgs := messageOutcomesQuery("prod-3", from)
	for _, c := range []struct {
		name string
		sql  string
		args []any
	}{
		{"the overview's windows", messageCellsSQL, []any{from, from.Add(6 * 24 * time.Hour)}},
		{"/outcomes, every product", all, allArgs},
		{"/outcomes, one product", one, oneArgs},
	} {
		var doc []byte
		require.NoError(t, db.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+c.sql, c.args...).Scan(&doc), c.sql)
		var out []struct {
			Plan planNode `json:"Plan"`
		}
		require.NoError(t, json.Unmarshal(doc, &out))
		if bytes.Contains(doc, []byte(`"device_messages"`)) {
			t.Errorf("%s: reads device_messages\nplan: %s", c.name, doc)
		}
	}
	cells, err := windowCells(ctx, db, messageCellsSQL, from, from.Add(6*24*time.Hour))
	require.NoError(t, err)
	require.NotEmpty(t, cells)
	p, err := loadMessageOutcomes(ctx, db, "prod-3", from, 7)
	require.NoError(t, err)
	require.Len(t, p, 1)
}

// nodes are the node types of a plan.
func (n planNode) nodes() []string {
	out := []string{n.NodeType}
	for _, c := range n.Plans {
		out = append(out, c.nodes()...)
	}
	return out
}
