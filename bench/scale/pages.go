package main

import (
	"context"
	"encoding/hex"
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

// listed is a kind's list page (console/lists.go's listKind) as the bench
// requests it: its filters' combinations are built from this, the same
// for every kind.
type listed struct {
	kind     string   // "commands": the path, and the pages' names
	table    string   // its table
	key      string   // the list's key (newest first)
	ids      []string // the key's tie-break, in order
	cursor   []string // the query parameters of ids, after "before"
	statuses []string // the statuses its status filter is timed with
	// pick is a device of the fleet with its product, and one of its
	// things' ids.
	pick string
	// devices are the awkward devices of its seed, beyond the fleet's:
	// name, id, product.
	devices [][3]string
	// item is the path of one thing's page, with its timeline.
	item func(device, id string) string
}

var lists = []listed{
	{kind: "commands", table: "device_commands", key: "coalesce(created_time, first_seen_at)", ids: []string{"command_id"},
		cursor: []string{"before_id"}, statuses: []string{"FAILED", "TIMEOUT"},
		pick:    `SELECT device_id, product_id, command_id FROM device_commands WHERE command_id = ` + middleCommand,
		devices: [][3]string{{"a device with old commands only", "dev-old", "prod-3"}, {"a rare device", "dev-rare", "prod-5"}},
		item:    func(_, id string) string { return "/commands/" + url.PathEscape(id) }},
	{kind: "messages", table: "device_messages", key: "coalesce(pending_time, first_seen_at)", ids: []string{"seq"},
		cursor: []string{"before_seq"}, statuses: []string{"PENDING", "FAILED", "TIMEOUT"},
		pick: `SELECT device_id, product_id, message_id FROM device_messages WHERE device_id = 'dev-1' ORDER BY message_id LIMIT 1`,
		devices: [][3]string{{"a device with old messages only", "dev-old", "prod-3"},
			{"a busy device whose only failures are its oldest", "dev-busy", "prod-4"}, {"a rare device", "dev-rare", "prod-5"}},
		item: func(device, id string) string {
			return "/messages/" + url.PathEscape(device) + "/" + url.PathEscape(id)
		}},
}

// page is a console page to time.
type page struct {
	name, path string
	list       bool // a list: say how many rows its statements read
	json       bool // time its JSON form too
}

// slowPage is the bound above which a page's statements are explained
// with ANALYZE and BUFFERS (issue 28: the pages stay within 100 ms).
const slowPage = 100 * time.Millisecond

// pages requests each console page over HTTP, as the reader would, in
// HTML and in JSON, and reports the median time with its spread and the
// plan shape of each statement it ran; it returns the plans, with ANALYZE
// and BUFFERS, of the pages over slowPage.
//
// only, if not nil, keeps the pages whose names it matches.
func pages(ctx context.Context, dbURL, schema string, runs int, only *regexp.Regexp, add func(string, string)) ([]string, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	rec := &recorder{}
	cfg.ConnConfig.Tracer = rec
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	cfg.MaxConns = 4
	db, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	h, err := console.NewHandler(db, console.Config{Addr: console.DefaultAddr}, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	list := []page{{"overview", "/", false, true}}
	// A day's window, three days ago.
	day := "&since=" + time.Now().UTC().AddDate(0, 0, -3).Format(time.DateOnly) + "&until=" + time.Now().UTC().AddDate(0, 0, -2).Format(time.DateOnly)
	for _, k := range lists {
		pages, err := k.pages(ctx, db, srv.URL, day)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.kind, err)
		}
		list = append(list, pages...)
	}
	var deadID int64
	if err := db.QueryRow(ctx, `SELECT max(id) FROM dead_letters`).Scan(&deadID); err != nil {
		return nil, fmt.Errorf("pick a dead letter: %w", err)
	}
	var product string
	if err := db.QueryRow(ctx, `SELECT product_id FROM device_commands WHERE command_id = `+fleetCommandID("1")).Scan(&product); err != nil {
		return nil, fmt.Errorf("pick a product: %w", err)
	}
	list = append(list, []page{
		{"stuck commands and messages", "/stuck", false, true},
		{"dead letters", "/dead-letters", true, false},
		{"dead letters of a class", "/dead-letters?class=invalid_json", true, false},
		{"dead letters of a rare class (three, long ago)", "/dead-letters?class=rare_class", true, false},
		{"a dead letter", fmt.Sprintf("/dead-letters/%d", deadID), false, false},
		{"outcomes, 30 days, every product (commands and messages)", "/outcomes", false, true},
		{"outcomes, 90 days, one product (commands and messages)", "/outcomes?product=" + url.QueryEscape(product) + "&days=90", false, true},
	}...)

	var slow []string
	for _, p := range list {
		if only != nil && !only.MatchString(p.name) {
			continue
		}
		get := func(asJSON bool) func() error {
			return func() error {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+p.path, nil)
				if err != nil {
					return err
				}
				if asJSON {
					req.Header.Set("Accept", "application/json")
				}
				resp, err := http.DefaultClient.Do(req)
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
		}
		rec.record(true)
		if err := get(false)(); err != nil {
			return nil, err
		}
		stmts := rec.record(false)
		html, err := spreadOf(runs, get(false))
		if err != nil {
			return nil, err
		}
		figure := html.String()
		worst := html.median
		if p.json {
			js, err := spreadOf(runs, get(true))
			if err != nil {
				return nil, err
			}
			figure += ", JSON " + js.String()
			worst = max(worst, js.median)
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
				return nil, fmt.Errorf("%s: explain: %w", p.path, err)
			}
			if worst > slowPage {
				plan, err := explainAnalyze(ctx, db, settings, st.sql, st.args)
				if err != nil {
					return nil, fmt.Errorf("%s: explain: %w", p.path, err)
				}
				slow = append(slow, fmt.Sprintf("%s (`%s`), %s:\n\n%s\n\n%s", p.name, p.path, figure, st.sql, plan))
			}
			settings = ""
			shapes = append(shapes, shape)
		}
		add("page: "+p.name+" (`"+strings.SplitN(p.path, "?", 2)[0]+"`)", figure+"; "+strings.Join(shapes, "; "))
	}
	return slow, nil
}

// pages are the kind's pages: its list newest first, the next page, a
// page deep in it (a cursor 15 days back), the next page of a device's
// old things only, every combination of its filters, one thing with its
// timeline and one of its notifications' payload, and the device pages.
func (k listed) pages(ctx context.Context, db *pgxpool.Pool, base, day string) ([]page, error) {
	var device, product, id string
	if err := db.QueryRow(ctx, k.pick).Scan(&device, &product, &id); err != nil {
		return nil, fmt.Errorf("pick a device: %w", err)
	}
	path := "/" + k.kind
	first, err := nextOf(path, base, path)
	if err != nil {
		return nil, err
	}
	oldNext, err := nextOf(path, base, path+"?device=dev-old")
	if err != nil {
		return nil, err
	}
	deep, err := k.deepCursor(ctx, db)
	if err != nil {
		return nil, err
	}
	list := []page{
		{k.kind + ", newest first", path, true, true},
		{k.kind + ", the next page (keyset)", first, true, true},
		{k.kind + ", a deep page (keyset, a cursor 15 days back)", path + "?" + deep, true, true},
		{k.kind + " of the device with old " + k.kind + " only, the next page (keyset)", oldNext, true, true},
	}
	// Every combination of the list's filters (console/plans_test.go and
	// plans_messages_test.go check their plans): a device of the fleet
	// (ten over the 30 days) and the seed's awkward ones; a product, and
	// with no device a rare pair (product 7 timed out three times, long
	// ago); a status; a day's window.
	devices := append([][3]string{{"", "", ""}, {"a device", device, product}}, k.devices...)
	for _, d := range devices {
		products := [][2]string{{"", ""}, {"its product", d[2]}}
		if d[1] == "" {
			products = [][2]string{{"", ""}, {"a product", product}, {"product 7 (rare with TIMEOUT)", "prod-7"}}
		}
		for _, pr := range products {
			for _, status := range append([]string{""}, k.statuses...) {
				for _, window := range []string{"", day} {
					var name []string
					q := url.Values{}
					if d[1] != "" {
						name = append(name, d[0])
						q.Set("device", d[1])
					}
					if pr[1] != "" {
						name = append(name, pr[0])
						q.Set("product", pr[1])
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
					list = append(list, page{k.kind + ": " + strings.Join(name, ", "), path + "?" + q.Encode() + window, true, true})
				}
			}
		}
	}
	thing := strings.TrimSuffix(k.kind, "s")
	payload, err := k.payload(ctx, db, device, id)
	if err != nil {
		return nil, err
	}
	list = append(list,
		page{"a " + thing + " with its timeline", k.item(device, id), false, true},
		page{"a " + thing + "'s notification, its payload", payload, false, false},
		page{"the device of a " + thing + " (commands, messages and calls)", "/devices/" + url.PathEscape(device), false, true},
		page{"the device with 5,000 old " + k.kind, "/devices/dev-old", false, true})
	if k.kind == "messages" {
		// A broadcast's id, shared by the devices next to this one.
		var shared, on string
		if err := db.QueryRow(ctx, `SELECT message_id, device_id FROM device_messages WHERE message_id = 'cfg-1' LIMIT 1`).
			Scan(&shared, &on); err != nil {
			return nil, fmt.Errorf("pick a shared message id: %w", err)
		}
		list = append(list, page{"a message whose id other devices' messages have too", k.item(on, shared), false, true},
			page{"the busy device (5,000 messages over 30 days)", "/devices/dev-busy", false, true})
	}
	return list, nil
}

// deepCursor is the query string of a page of the list 15 days back: the
// keyset cursor of the newest row older than that.
func (k listed) deepCursor(ctx context.Context, db *pgxpool.Pool) (string, error) {
	desc := k.key + " DESC"
	var sel []string
	for _, id := range k.ids {
		desc += ", " + id + " DESC"
		sel = append(sel, id+"::text") // a message's seq is a number
	}
	var at time.Time
	ids := make([]string, len(k.ids))
	dest := []any{&at}
	for i := range ids {
		dest = append(dest, &ids[i])
	}
	if err := db.QueryRow(ctx, `SELECT `+k.key+`, `+strings.Join(sel, ", ")+` FROM `+k.table+
		` WHERE `+k.key+` < now() - interval '15 days' ORDER BY `+desc+` LIMIT 1`).Scan(dest...); err != nil {
		return "", fmt.Errorf("a cursor 15 days back: %w", err)
	}
	q := url.Values{"before": {at.UTC().Format(time.RFC3339Nano)}}
	for i, p := range k.cursor {
		q.Set(p, ids[i])
	}
	return q.Encode(), nil
}

// payload is the path of the payload of the thing's last notification.
func (k listed) payload(ctx context.Context, db *pgxpool.Pool, device, id string) (string, error) {
	thing := strings.TrimSuffix(k.kind, "s")
	where, args := thing+"_id = $1", []any{id}
	if k.kind == "messages" {
		where, args = where+" AND device_id = $2", append(args, device)
	}
	var key []byte
	var at time.Time
	if err := db.QueryRow(ctx, `SELECT event_key, event_time FROM device_`+thing+`_events
		WHERE `+where+` ORDER BY event_time DESC LIMIT 1`, args...).Scan(&key, &at); err != nil {
		return "", fmt.Errorf("pick a payload: %w", err)
	}
	return k.item(device, id) + "/payload/" + hex.EncodeToString(key) + "?at=" + url.QueryEscape(at.UTC().Format(time.RFC3339Nano)), nil
}

// spread is a page's times: the median of runs, and the fastest and the
// slowest.
type spread struct{ median, min, max time.Duration }

func (s spread) String() string {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return fmt.Sprintf("%.1f ms [%.1f-%.1f]", ms(s.median), ms(s.min), ms(s.max))
}

// spreadOf runs f runs times (after one warm-up run), as median does.
func spreadOf(runs int, f func() error) (spread, error) {
	times, err := timesOf(runs, f)
	if err != nil {
		return spread{}, err
	}
	return spread{times[runs/2], times[0], times[runs-1]}, nil
}

// explainAnalyze is the statement's plan with ANALYZE and BUFFERS, after
// settings (if any), in text.
func explainAnalyze(ctx context.Context, db *pgxpool.Pool, settings, sql string, args []any) (string, error) {
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
	rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+sql, args...)
	if err != nil {
		return "", err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	return strings.Join(lines, "\n"), nil
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
