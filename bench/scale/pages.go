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
	var first struct {
		Next string `json:"next"`
	}
	if err := getJSON(srv.URL+"/commands", &first); err != nil {
		return err
	}
	list := []struct{ name, path string }{
		{"overview", "/"},
		{"commands, newest first", "/commands"},
		{"commands, the next page (keyset)", "/commands?" + first.Next},
		{"commands of a device", "/commands?device=" + url.QueryEscape(device)},
		{"commands of a product", "/commands?product=" + url.QueryEscape(product)},
		{"commands that failed", "/commands?status=FAILED"},
		{"commands canceled (none: a rare status)", "/commands?status=CANCELED"},
		{"commands of a product and status in a day", "/commands?product=" + url.QueryEscape(product) + "&status=TIMEOUT&since=" +
			time.Now().UTC().AddDate(0, 0, -3).Format(time.DateOnly) + "&until=" + time.Now().UTC().AddDate(0, 0, -2).Format(time.DateOnly)},
		{"a command with its timeline", "/commands/" + url.PathEscape(command)},
		{"a device", "/devices/" + url.PathEscape(device)},
		{"stuck commands", "/stuck"},
		{"dead letters", "/dead-letters"},
		{"dead letters of a class", "/dead-letters?class=invalid_json"},
		{"a dead letter", fmt.Sprintf("/dead-letters/%d", deadID)},
		{"outcomes, 30 days, every product", "/outcomes"},
		{"outcomes, 90 days, one product", "/outcomes?product=" + url.QueryEscape(product) + "&days=90"},
	}
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
		for _, s := range stmts {
			shape, err := planShapeArgs(ctx, db, s.sql, s.args)
			if err != nil {
				return fmt.Errorf("%s: explain: %w", p.path, err)
			}
			shapes = append(shapes, shape)
		}
		add("page: "+p.name+" (`"+strings.SplitN(p.path, "?", 2)[0]+"`)",
			fmt.Sprintf("%.1f ms; %s", float64(d.Microseconds())/1000, strings.Join(shapes, "; ")))
	}
	return nil
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

var partitionScan = regexp.MustCompile(`on device_command_events_\w+ device_command_events`)

// planShapeArgs is planShape for a statement with arguments, with the
// number of history partitions it reads.
func planShapeArgs(ctx context.Context, db *pgxpool.Pool, sql string, args []any) (string, error) {
	rows, err := db.Query(ctx, "EXPLAIN "+sql, args...)
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
	return shape, nil
}
