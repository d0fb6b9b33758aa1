package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cmdtrack/cmdtrack/console"
)

// recorder keeps the statements a page ran, to show their plans.
type recorder struct {
	mu    sync.Mutex
	on    bool
	stmts []recorded
}

type recorded struct {
	sql  string
	args []any
}

// TraceQueryStart implements pgx.QueryTracer.
func (r *recorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	if r.on {
		r.stmts = append(r.stmts, recorded{d.SQL, d.Args})
	}
	r.mu.Unlock()
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (r *recorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *recorder) record(on bool) []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.stmts
	r.on, r.stmts = on, nil
	return out
}

// pages requests each console page over HTTP, as the reader would, and
// reports the median time and the plan shape of each statement it ran.
func pages(ctx context.Context, dbURL, schema string, runs int, add func(string, string)) error {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	rec := &recorder{}
	cfg.ConnConfig.Tracer = rec
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	cfg.MaxConns = 4
	db, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	h, err := console.NewHandler(db, console.Config{Addr: console.DefaultAddr}, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	var device, command, product string
	var deadID int64
	if err := db.QueryRow(ctx, `SELECT device_id, command_id, product_id FROM device_commands WHERE command_id = 'cmd-' || $1::int / 2`,
		mustCount(ctx, db)).Scan(&device, &command, &product); err != nil {
		return fmt.Errorf("pick a command: %w", err)
	}
	if err := db.QueryRow(ctx, `SELECT max(id) FROM dead_letters`).Scan(&deadID); err != nil {
		return fmt.Errorf("pick a dead letter: %w", err)
	}
	next := func(path string) (string, error) { return nextOf("/commands", srv.URL, path) }
	first, err := next("/commands")
	if err != nil {
		return err
	}
	oldNext, err := next("/commands?device=dev-old")
	if err != nil {
		return err
	}
	type page struct {
		name, path string
		list       bool // a list: say how many rows its statements read
	}
	list := []page{
		{"overview", "/", false},
		{"commands, newest first", "/commands", true},
		{"commands, the next page (keyset)", first, true},
		{"commands of the device with old commands only, the next page (keyset)", oldNext, true},
	}
	// Every combination of the list's filters (console/plans_test.go checks
	// their plans): a device of the fleet (ten commands over the 30 days),
	// one with 5,000 commands in the first day only, a rare one (three
	// commands); a product, and with no device a rare pair (product 7 timed
	// out three times, long ago); a status; a day's window.
	day := "&since=" + time.Now().UTC().AddDate(0, 0, -3).Format(time.DateOnly) + "&until=" + time.Now().UTC().AddDate(0, 0, -2).Format(time.DateOnly)
	var devProduct string
	if err := db.QueryRow(ctx, `SELECT product_id FROM device_commands WHERE device_id = $1 LIMIT 1`, device).Scan(&devProduct); err != nil {
		return fmt.Errorf("pick a product: %w", err)
	}
	devices := []struct{ name, id, product string }{
		{"", "", ""}, {"a device", device, devProduct}, {"a device with old commands only", "dev-old", "prod-3"},
		{"a rare device", "dev-rare", "prod-5"},
	}
	for _, d := range devices {
		products := []struct{ name, id string }{{"", ""}, {"its product", d.product}}
		if d.id == "" {
			products = []struct{ name, id string }{{"", ""}, {"a product", product}, {"product 7 (rare with TIMEOUT)", "prod-7"}}
		}
		for _, pr := range products {
			for _, status := range []string{"", "FAILED", "TIMEOUT"} {
				for _, window := range []string{"", day} {
					var name []string
					q := url.Values{}
					if d.id != "" {
						name = append(name, d.name)
						q.Set("device", d.id)
					}
					if pr.id != "" {
						name = append(name, pr.name)
						q.Set("product", pr.id)
					}
					if status != "" {
						name = append(name, status)
						q.Set("status", status)
					}
					if window != "" {
						name = append(name, "a day's window")
					}
					if len(name) == 0 {
						continue // newest first, above
					}
					list = append(list, page{"commands: " + strings.Join(name, ", "), "/commands?" + q.Encode() + window, true})
				}
			}
		}
	}
	// /messages likewise (console/plans_messages_test.go checks their
	// plans): a device of the fleet, one whose 5,000 messages are all in
	// the first day, a rare one; a product, and a rare pair; a status; a
	// day's window.
	var msgDevice, message, msgProduct string
	if err := db.QueryRow(ctx, `SELECT device_id, message_id, product_id FROM device_messages
		WHERE device_id = 'dev-1' ORDER BY message_id LIMIT 1`).
		Scan(&msgDevice, &message, &msgProduct); err != nil {
		return fmt.Errorf("pick a message: %w", err)
	}
	msgNext, err := nextOf("/messages", srv.URL, "/messages")
	if err != nil {
		return err
	}
	oldMsgNext, err := nextOf("/messages", srv.URL, "/messages?device=dev-old")
	if err != nil {
		return err
	}
	list = append(list, page{"messages, newest first", "/messages", true}, page{"messages, the next page (keyset)", msgNext, true},
		page{"messages of the device with old messages only, the next page (keyset)", oldMsgNext, true})
	msgDevices := []struct{ name, id, product string }{
		{"", "", ""}, {"a device", msgDevice, msgProduct}, {"a device with old messages only", "dev-old", "prod-3"},
		{"a rare device", "dev-rare", "prod-5"},
	}
	for _, d := range msgDevices {
		products := []struct{ name, id string }{{"", ""}, {"its product", d.product}}
		if d.id == "" {
			products = []struct{ name, id string }{{"", ""}, {"a product", msgProduct}, {"product 7 (rare with TIMEOUT)", "prod-7"}}
		}
		for _, pr := range products {
			for _, status := range []string{"", "PENDING", "FAILED", "TIMEOUT"} {
				for _, window := range []string{"", day} {
					var name []string
					q := url.Values{}
					if d.id != "" {
						name = append(name, d.name)
						q.Set("device", d.id)
					}
					if pr.id != "" {
						name = append(name, pr.name)
						q.Set("product", pr.id)
					}
					if status != "" {
						name = append(name, status)
						q.Set("status", status)
					}
					if window != "" {
						name = append(name, "a day's window")
					}
					if len(name) == 0 {
						continue // newest first, above
					}
					list = append(list, page{"messages: " + strings.Join(name, ", "), "/messages?" + q.Encode() + window, true})
				}
			}
		}
	}
	list = append(list, []page{
		{"a message with its timeline", "/messages/" + url.PathEscape(msgDevice) + "/" + url.PathEscape(message), false},
		{"the device of a message (commands, messages and calls)", "/devices/" + url.PathEscape(msgDevice), false},
		{"the device with 5,000 old messages", "/devices/dev-old", false},
	}...)
	list = append(list, []page{
		{"a command with its timeline", "/commands/" + url.PathEscape(command), false},
		{"a device", "/devices/" + url.PathEscape(device), false},
		{"stuck commands", "/stuck", false},
		{"dead letters", "/dead-letters", true},
		{"dead letters of a class", "/dead-letters?class=invalid_json", true},
		{"dead letters of a rare class (three, long ago)", "/dead-letters?class=rare_class", true},
		{"a dead letter", fmt.Sprintf("/dead-letters/%d", deadID), false},
		{"outcomes, 30 days, every product", "/outcomes", false},
		{"outcomes, 90 days, one product", "/outcomes?product=" + url.QueryEscape(product) + "&days=90", false},
	}...)
	for _, p := range list {
		get := func() error {
			resp, err := http.Get(srv.URL + p.path)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", p.path, resp.Status)
			}
			return nil
		}
		rec.record(true)
		if err := get(); err != nil {
			return err
		}
		stmts := rec.record(false)
		d, err := median(runs, get)
		if err != nil {
			return err
		}
		var shapes []string
		// A list's statement may run in a transaction with planner
		// settings (console.inOrderOnly): explain it with them.
		var settings string
		for _, st := range stmts {
			low := strings.ToLower(strings.TrimSpace(st.sql))
			switch {
			case strings.HasPrefix(low, "begin"), low == "commit", low == "rollback":
				continue
			case strings.Contains(low, "set_config("):
				settings = st.sql
				continue
			}
			shape, err := planShapeArgs(ctx, db, settings, st.sql, st.args, p.list)
			if err != nil {
				return fmt.Errorf("%s: explain: %w", p.path, err)
			}
			settings = ""
			shapes = append(shapes, shape)
		}
		add("page: "+p.name+" (`"+strings.SplitN(p.path, "?", 2)[0]+"`)",
			fmt.Sprintf("%.1f ms; %s", float64(d.Microseconds())/1000, strings.Join(shapes, "; ")))
	}
	return nil
}

// nextOf is the path of the page after path's, a page of list.
func nextOf(list, base, path string) (string, error) {
	var page struct {
		Next string `json:"next"`
	}
	if err := getJSON(base+path, &page); err != nil {
		return "", err
	}
	if page.Next == "" {
		return "", fmt.Errorf("%s: no next page", path)
	}
	return list + "?" + page.Next, nil
}

func mustCount(ctx context.Context, db *pgxpool.Pool) int {
	var n int
	_ = db.QueryRow(ctx, `SELECT count(*) FROM device_commands WHERE command_id LIKE 'cmd-%'`).Scan(&n)
	return n
}

func getJSON(u string, into any) error {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(into)
}

var partitionScan = regexp.MustCompile(`on device_(command|message)_events_\w+ device_(command|message)_events`)

// planShapeArgs is planShape for a statement with arguments, run after
// settings (if any) in one transaction, with the number of history
// partitions it reads and, for a list, the rows its scans read (returned,
// or removed by a filter: EXPLAIN ANALYZE).
func planShapeArgs(ctx context.Context, db *pgxpool.Pool, settings, sql string, args []any, list bool) (string, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return "", err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if settings != "" {
		if _, err := tx.Exec(ctx, settings); err != nil {
			return "", err
		}
	}
	rows, err := tx.Query(ctx, "EXPLAIN "+sql, args...)
	if err != nil {
		return "", err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	shape := shapeOf(lines, 4)
	if parts := len(partitionScan.FindAllString(strings.Join(lines, "\n"), -1)); parts > 0 {
		shape += fmt.Sprintf(" [%d history partitions]", parts)
	}
	if list {
		var doc []byte
		if err := tx.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+sql, args...).Scan(&doc); err != nil {
			return "", err
		}
		var plans []struct {
			Plan planNode `json:"Plan"`
		}
		if err := json.Unmarshal(doc, &plans); err != nil {
			return "", err
		}
		shape += fmt.Sprintf(" [read %.0f rows]", plans[0].Plan.rowsRead())
	}
	return shape, nil
}

// planNode is a node of EXPLAIN (ANALYZE, FORMAT JSON).
type planNode struct {
	NodeType    string     `json:"Node Type"`
	Relation    string     `json:"Relation Name"`
	ActualRows  float64    `json:"Actual Rows"`
	ActualLoops float64    `json:"Actual Loops"`
	Removed     float64    `json:"Rows Removed by Filter"`
	Recheck     float64    `json:"Rows Removed by Index Recheck"`
	Plans       []planNode `json:"Plans"`
}

// rowsRead is the rows a plan's scans of tables read: those they returned
// and those a filter removed; for a bitmap scan, every entry of its index
// scans, read whatever the limit above.
func (n planNode) rowsRead() float64 {
	var read float64
	switch {
	case n.NodeType == "Bitmap Index Scan":
		read = n.ActualRows * n.ActualLoops
	case n.NodeType == "Bitmap Heap Scan":
		read = n.Removed + n.Recheck
	case n.Relation != "":
		read = n.ActualRows*n.ActualLoops + n.Removed + n.Recheck
	}
	for _, c := range n.Plans {
		read += c.rowsRead()
	}
	return read
}
