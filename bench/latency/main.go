// Command latency measures cmdtrack's end-to-end latency, from the moment a
// notification is handed to the AMQP link by `iotda-sim publish -sent-log`
// to the moment its history row is committed and visible in PostgreSQL.
//
// It polls device_command_events (recent rows) every -poll, noting for
// each row the time the query that first saw it was sent. A row visible to
// a query was committed before that query took its snapshot, so this time
// is an upper bound of the commit time, late by at most one poll interval
// plus the query's own time. It also reports a lower bound: received_at,
// which is now() at the start of the worker's transaction. The true
// latency lies between the two; the upper bound is the figure to hold
// against targets. Both clocks are this host's.
//
// Once it has seen -n rows it reads the sent log (waiting for the
// publisher to write it), joins on request_id and prints percentiles.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

type seen struct {
	requestID string
	observed  time.Time // start of the first query that saw the row
	started   time.Time // received_at: start of the writing transaction
}

func main() {
	dbURL := flag.String("database-url", os.Getenv("CMDTRACK_DATABASE_URL"), "PostgreSQL URL of the worker's schema (with search_path)")
	sentLog := flag.String("sent", "", "sent log written by iotda-sim publish -sent-log (required)")
	n := flag.Int("n", 0, "history rows to wait for (required)")
	poll := flag.Duration("poll", 5*time.Millisecond, "poll interval")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after this long")
	out := flag.String("out", "", "append the result line to this file")
	flag.Parse()
	if *dbURL == "" || *sentLog == "" || *n < 1 {
		fmt.Fprintln(os.Stderr, "latency: -database-url, -sent and -n are required")
		flag.Usage()
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	err := run(ctx, *dbURL, *sentLog, *n, *poll, *out)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "latency:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dbURL, sentLog string, n int, poll time.Duration, out string) error {
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))

	rows := make([]seen, 0, n)
	// received_at is when the writing transaction began, and several writers
	// commit concurrently, so rows become visible out of received_at order:
	// each poll looks back a while and skips the rows already seen (by
	// command and key: the history's identity).
	const lookback = 5 * time.Second
	seenRows := make(map[string]bool, n)
	var last time.Time
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for len(rows) < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("saw %d of %d rows: %w", len(rows), n, ctx.Err())
		case <-tick.C:
		}
		qstart := time.Now()
		r, err := db.Query(ctx, `SELECT command_id || encode(event_key, 'hex'), coalesce(request_id, ''), received_at
			FROM device_command_events WHERE received_at > $1 ORDER BY received_at LIMIT 20000`, last.Add(-lookback))
		if err != nil {
			return err
		}
		for r.Next() {
			var s seen
			var id string
			if err := r.Scan(&id, &s.requestID, &s.started); err != nil {
				return err
			}
			if s.started.After(last) {
				last = s.started
			}
			if seenRows[id] {
				continue
			}
			seenRows[id] = true
			s.observed = qstart
			rows = append(rows, s)
		}
		if err := r.Err(); err != nil {
			return err
		}
	}

	sent, err := readSent(ctx, sentLog)
	if err != nil {
		return err
	}
	var upper, lower []float64
	for _, s := range rows {
		at, ok := sent[s.requestID]
		if !ok {
			continue
		}
		upper = append(upper, float64(s.observed.UnixNano()-at)/1e6)
		lower = append(lower, float64(s.started.UnixNano()-at)/1e6)
	}
	if len(upper) == 0 {
		return errors.New("no history row matches a request_id of the sent log")
	}
	slices.Sort(upper)
	slices.Sort(lower)
	fmt.Printf("latency: %d of %d rows matched; publish -> committed row (upper bound, poll %s): p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		len(upper), len(rows), poll, pct(upper, 50), pct(upper, 90), pct(upper, 99), upper[len(upper)-1])
	fmt.Printf("latency: publish -> start of the writing transaction (lower bound): p50 %.1f ms, p99 %.1f ms\n",
		pct(lower, 50), pct(lower, 99))
	if out != "" {
		line := fmt.Sprintf("latency\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\n", len(upper),
			pct(upper, 50), pct(upper, 99), upper[len(upper)-1], pct(lower, 50), pct(lower, 99))
		f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		_, err = f.WriteString(line)
		return errors.Join(err, f.Close())
	}
	return nil
}

// pct is the nearest-rank percentile of sorted xs.
func pct(xs []float64, p float64) float64 {
	i := int(float64(len(xs))*p/100+0.5) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

// readSent waits for the sent log (written atomically when publishing ends)
// and maps request_id to send time in Unix nanoseconds.
func readSent(ctx context.Context, path string) (map[string]int64, error) {
	for {
		f, err := os.Open(path)
		if err == nil {
			defer f.Close()
			m := make(map[string]int64)
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				id, at, ok := strings.Cut(sc.Text(), "\t")
				if !ok {
					continue
				}
				ns, err := strconv.ParseInt(at, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", path, err)
				}
				if _, dup := m[id]; !dup {
					m[id] = ns // a duplicate's first send is the one that counts
				}
			}
			return m, sc.Err()
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no sent log at %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
