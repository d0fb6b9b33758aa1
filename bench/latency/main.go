// Command latency measures cmdtrack's end-to-end latency, from the moment a
// notification is handed to the AMQP link by `iotda-sim publish -sent-log`
// to the commit of the transaction that stored its history row.
//
// The commit time is PostgreSQL's own (track_commit_timestamp, which
// scripts/testenv.sh turns on): pg_xact_commit_timestamp(xmin) of the row,
// taken as the commit record is written, before its flush (pg_test_fsync
// gives that flush's cost on the machine) and before the row becomes
// visible. Nothing polls while the worker runs: an earlier version polled
// the table every 2 ms over a 5 s look-back, which cost the 2-core machine
// more CPU than the worker and was itself most of the tail it measured (p99
// 75 ms against 21 ms from the transaction's start). It also reports a
// lower bound: received_at, now() at the start of the worker's
// transaction. Both clocks are this host's.
//
// It waits until -n rows exist (a count every 50 ms), then reads the sent
// log (waiting for the publisher to write it), joins on request_id and
// prints percentiles.
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
	observed  time.Time // the commit of the writing transaction
	started   time.Time // received_at: start of the writing transaction
}

func main() {
	dbURL := flag.String("database-url", os.Getenv("CMDTRACK_DATABASE_URL"), "PostgreSQL URL of the worker's schema (with search_path)")
	sentLog := flag.String("sent", "", "sent log written by iotda-sim publish -sent-log (required)")
	n := flag.Int("n", 0, "history rows to wait for (required)")
	poll := flag.Duration("poll", 50*time.Millisecond, "how often to count the rows while waiting for -n")
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

	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		var count int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM device_command_events`).Scan(&count); err != nil {
			return err
		}
		if count >= n {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("saw %d of %d rows: %w", count, n, ctx.Err())
		case <-tick.C:
		}
	}
	r, err := db.Query(ctx, `SELECT coalesce(request_id, ''), received_at, pg_xact_commit_timestamp(xmin)
		FROM device_command_events`)
	if err != nil {
		return err
	}
	rows, err := pgx.CollectRows(r, func(r pgx.CollectableRow) (seen, error) {
		var s seen
		var committed *time.Time
		if err := r.Scan(&s.requestID, &s.started, &committed); err != nil {
			return s, err
		}
		if committed == nil {
			return s, errors.New("no commit timestamp: PostgreSQL must run with track_commit_timestamp = on " +
				"(scripts/testenv.sh up sets it)")
		}
		s.observed = *committed
		return s, nil
	})
	if err != nil {
		return fmt.Errorf("read commit timestamps: %w", err)
	}

	sent, err := readSent(ctx, sentLog)
	if err != nil {
		return err
	}
	var commit, lower []float64
	for _, s := range rows {
		at, ok := sent[s.requestID]
		if !ok {
			continue
		}
		commit = append(commit, float64(s.observed.UnixNano()-at)/1e6)
		lower = append(lower, float64(s.started.UnixNano()-at)/1e6)
	}
	if len(commit) == 0 {
		return errors.New("no history row matches a request_id of the sent log")
	}
	slices.Sort(commit)
	slices.Sort(lower)
	fmt.Printf("latency: %d of %d rows matched; publish -> commit of its row: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		len(commit), len(rows), pct(commit, 50), pct(commit, 90), pct(commit, 99), commit[len(commit)-1])
	fmt.Printf("latency: publish -> start of the writing transaction (lower bound): p50 %.1f ms, p99 %.1f ms\n",
		pct(lower, 50), pct(lower, 99))
	if out != "" {
		line := fmt.Sprintf("latency\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\n", len(commit),
			pct(commit, 50), pct(commit, 99), commit[len(commit)-1], pct(lower, 50), pct(lower, 99))
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
