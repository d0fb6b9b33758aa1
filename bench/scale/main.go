// Command scale measures cmdtrack's schema at fleet size (`make bench/scale`):
// it seeds -commands commands (default 10 million) with four history rows
// each, spread over the last 30 days, into a fresh schema migrated as
// `cmdtrack migrate` does; then it times every query of the README's
// cookbook (the median of several runs, with its plan's shape), ingest
// through the project's own write path (store.Apply) with the tables empty
// and full, history retention (partitions dropped, dead tuples left) and
// command retention, and reports the tables' and indexes' sizes per million
// commands. It prints a Markdown table.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/migrations"
	"github.com/cmdtrack/cmdtrack/store"
)

func main() {
	url := flag.String("database-url", os.Getenv("CMDTRACK_TEST_DATABASE_URL"), "PostgreSQL URL (a superuser's: the run creates and drops a schema)")
	n := flag.Int("commands", 10_000_000, "commands to seed (four history rows each)")
	msgN := flag.Int("messages", -1, "device messages to seed (two history rows each; -1: as many as -commands)")
	ingestN := flag.Int("ingest", 100_000, "messages for each ingest measurement")
	migrateN := flag.Int("migrate", 4_000_000, "history rows of a version-4 schema to migrate in place (0: skip)")
	runs := flag.Int("runs", 7, "runs of each query (the median is reported)")
	keep := flag.Bool("keep", false, "keep the schema afterwards")
	out := flag.String("out", "", "also write the table here")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "scale: -database-url (or CMDTRACK_TEST_DATABASE_URL) is required")
		os.Exit(2)
	}
	var w io.Writer = os.Stdout
	var f *os.File
	if *out != "" {
		var err error
		if f, err = os.Create(*out); err != nil {
			fmt.Fprintln(os.Stderr, "scale:", err)
			os.Exit(1)
		}
		w = io.MultiWriter(os.Stdout, f)
	}
	if *msgN < 0 {
		*msgN = *n
	}
	err := run(context.Background(), w, *url, *n, *msgN, *ingestN, *migrateN, *runs, *keep)
	if f != nil {
		_ = f.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "scale: "+format+"\n", args...)
}

func run(ctx context.Context, w io.Writer, url string, n, msgN, ingestN, migrateN, runs int, keep bool) error {
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	schema := fmt.Sprintf("scale_%d", time.Now().Unix())
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return err
	}
	if !keep {
		defer func() {
			logf("dropping schema %s", schema)
			_, _ = admin.Exec(context.WithoutCancel(ctx), "DROP SCHEMA "+schema+" CASCADE")
		}()
	}
	st, err := store.Open(ctx, url, store.Options{MaxConns: 8, Schema: schema})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	now := time.Now().UTC()
	part := store.Partitioning{Size: store.Daily, Ahead: 3, Back: 31 * 24 * time.Hour}
	if _, err := st.MaintainPartitions(ctx, part, now); err != nil {
		return err
	}
	db := st.Pool()

	var rows [][2]string
	add := func(what, figure string) {
		rows = append(rows, [2]string{what, figure})
		logf("%s: %s", what, figure)
	}

	// Ingest into the empty tables first.
	rate, err := ingestRate(ctx, st, ingestN, 1)
	if err != nil {
		return err
	}
	add(fmt.Sprintf("ingest, tables empty (store.Apply, %d messages, batches of 256, 2 writers, fsync on)", ingestN), fmt.Sprintf("%.0f msg/s", rate))

	start := time.Now()
	if err := seed(ctx, db, n, now); err != nil {
		return err
	}
	add(fmt.Sprintf("seeding %d commands and %d history rows (SQL, 30 days), presence of %d devices", n, 4*n, max(n/10, 1)),
		time.Since(start).Round(time.Second).String())
	start = time.Now()
	if err := seedMessages(ctx, db, msgN, now); err != nil {
		return err
	}
	add(fmt.Sprintf("seeding %d device messages and their history (SQL, 30 days)", msgN), time.Since(start).Round(time.Second).String())
	start = time.Now()
	if err := st.RefreshRollup(ctx, 31, now); err != nil {
		return err
	}
	add("rollup: first fill, 31 days", time.Since(start).Round(time.Millisecond).String())
	if _, err := db.Exec(ctx, "ANALYZE"); err != nil {
		return err
	}
	refresh, err := median(runs, func() error { return st.RefreshRollup(ctx, 3, now) })
	if err != nil {
		return err
	}
	add("rollup: refresh of the last 3 days (every minute)", refresh.Round(time.Millisecond).String())

	// The cookbook, as the README writes it.
	var device, command string
	if err := db.QueryRow(ctx, `SELECT device_id, command_id FROM device_commands WHERE command_id = $1`, fmt.Sprintf("cmd-%d", n/2)).
		Scan(&device, &command); err != nil {
		return fmt.Errorf("pick a device: %w", err)
	}
	cookbook := []struct{ name, sql string }{
		{"a device's last 20 commands", `SELECT command_id, status, created_time, queued_for, delivery_took, device_took, result
			FROM command_durations WHERE device_id = '` + device + `' ORDER BY created_time DESC NULLS LAST LIMIT 20`},
		{"the 100 commands stuck longest (quiet > 1 h)", `SELECT command_id, device_id, status, stuck_for FROM stuck_commands('1 hour')
			ORDER BY last_event_time LIMIT 100`},
		{"the stuck commands by status (quiet > 1 h), as cmdtrack_commands_stuck counts them", `SELECT status, count(*)
			FROM stuck_commands('1 hour') GROUP BY status`},
		{"the 100 stuck longest whose device is online", `SELECT command_id, device_id, status, stuck_for, device_status_since
			FROM stuck_commands WHERE device_status = 'ONLINE' AND last_event_time < now() - interval '10 minutes'
			ORDER BY last_event_time LIMIT 100`},
		{"failure and timeout rates per product per day, last 30 days", `SELECT product_id, day, commands, failure_rate, timeout_rate
			FROM product_daily_outcomes WHERE day > current_date - 30 ORDER BY day DESC, product_id`},
		{"one command's timeline", `SELECT event_time, status, since_previous, request_id, source
			FROM command_timeline WHERE command_id = '` + command + `' ORDER BY event_time`},
		{"the commands stuck longest, as people write it first (stuck_for > 10 min)", `SELECT command_id, device_id, status, stuck_for
			FROM stuck_commands WHERE stuck_for > '10 minutes' ORDER BY stuck_for DESC LIMIT 100`},
	}
	for _, q := range cookbook {
		d, err := median(runs, func() error {
			r, err := db.Query(ctx, q.sql)
			if err != nil {
				return err
			}
			r.Close()
			return r.Err()
		})
		if err != nil {
			return fmt.Errorf("%s: %w", q.name, err)
		}
		shape, err := planShape(ctx, db, q.sql)
		if err != nil {
			return err
		}
		add("query: "+q.name, fmt.Sprintf("%.2f ms (%s)", float64(d.Microseconds())/1000, shape))
	}

	// Migration 012's indexes, built on the full tables (those of 008 took
	// 40 s at 10 M: bench/results/scale.txt of 2026-11-30).
	if _, err := db.Exec(ctx, `DROP INDEX device_commands_device_status_day_idx, device_commands_product_status_day_idx,
		dead_letters_class_received_idx`); err != nil {
		return err
	}
	indexes, err := migrationIndexes("012_list_indexes.sql")
	if err != nil {
		return err
	}
	start = time.Now()
	if _, err := db.Exec(ctx, indexes); err != nil {
		return err
	}
	add(fmt.Sprintf("migration 012's indexes (two on device_commands), built on %d commands (the table's writes wait meanwhile)", n), time.Since(start).Round(time.Millisecond).String())
	if _, err := db.Exec(ctx, "ANALYZE device_commands, dead_letters"); err != nil {
		return err
	}

	// Migration 018's indexes likewise, on the full device_messages.
	if _, err := db.Exec(ctx, `DROP INDEX device_messages_device_status_day_idx, device_messages_product_status_day_idx,
		device_messages_status_day_idx, device_messages_day_idx`); err != nil {
		return err
	}
	if indexes, err = migrationIndexes("018_message_lists.sql", "023_message_index_includes.sql"); err != nil {
		return err
	}
	start = time.Now()
	if _, err := db.Exec(ctx, indexes); err != nil {
		return err
	}
	add(fmt.Sprintf("migration 018's indexes (four on device_messages, two as 023 rebuilt them), built on %d messages (the table's writes wait meanwhile)", msgN),
		time.Since(start).Round(time.Millisecond).String())
	if _, err := db.Exec(ctx, "ANALYZE device_messages"); err != nil {
		return err
	}

	// The console's pages, over HTTP.
	if err := pages(ctx, url, schema, runs, add); err != nil {
		return fmt.Errorf("console pages: %w", err)
	}

	// Ingest into the full tables.
	rate, err = ingestRate(ctx, st, ingestN, 2)
	if err != nil {
		return err
	}
	add(fmt.Sprintf("ingest, tables full (%d commands)", n), fmt.Sprintf("%.0f msg/s", rate))

	// Sizes, per million commands.
	var cmdBytes, histBytes int64
	if err := db.QueryRow(ctx, `SELECT pg_total_relation_size('device_commands'),
		(SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'device_command_events'::regclass)`).
		Scan(&cmdBytes, &histBytes); err != nil {
		return err
	}
	per := float64(n) / 1e6
	add("size per million commands: device_commands with its indexes", fmt.Sprintf("%.0f MiB", float64(cmdBytes)/per/(1<<20)))
	add("size per million commands: history (4 rows each) with its index", fmt.Sprintf("%.0f MiB", float64(histBytes)/per/(1<<20)))
	var presenceBytes int64
	if err := db.QueryRow(ctx, `SELECT pg_total_relation_size('device_presence')`).Scan(&presenceBytes); err != nil {
		return err
	}
	add("size per million devices: device_presence with its index",
		fmt.Sprintf("%.0f MiB", float64(presenceBytes)/(float64(max(n/10, 1))/1e6)/(1<<20)))

	// Retention: keep 20 of the 30 days.
	var before int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM device_command_events`).Scan(&before); err != nil {
		return err
	}
	start = time.Now()
	part.Retention = 20 * 24 * time.Hour
	res, err := st.MaintainPartitions(ctx, part, now)
	if err != nil {
		return err
	}
	took := time.Since(start)
	var after, dead int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM device_command_events`).Scan(&after); err != nil {
		return err
	}
	if err := db.QueryRow(ctx, `SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables
		WHERE schemaname = current_schema() AND relname LIKE 'device_command_events%'`).Scan(&dead); err != nil {
		return err
	}
	add("history retention to 20 days", fmt.Sprintf("%d partitions dropped, %d rows gone, in %s; dead tuples left: %d",
		res.Dropped, before-after, took.Round(time.Millisecond), dead))
	start = time.Now()
	pruned, err := st.Prune(ctx, store.Retention{Commands: 25 * 24 * time.Hour}, now)
	if err != nil {
		return err
	}
	add("command retention to 25 days (batches of 5,000 through the day index)",
		fmt.Sprintf("%d commands in %s", pruned.Commands, time.Since(start).Round(time.Millisecond)))

	if migrateN > 0 {
		took, err := migrateInPlace(ctx, admin, url, migrateN)
		if err != nil {
			return err
		}
		add(fmt.Sprintf("migrating an existing database in place (migrations 5-7): %d history rows, %d commands", migrateN, migrateN/4), took.Round(time.Second).String())
	}

	fmt.Fprintf(w, "\n| %d commands, %d history rows | |\n| --- | --- |\n", n, 4*n)
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s |\n", r[0], r[1])
	}
	return nil
}

// median runs f runs times (after one warm-up run) and returns the median
// time.
func median(runs int, f func() error) (time.Duration, error) {
	if err := f(); err != nil {
		return 0, err
	}
	times := make([]time.Duration, runs)
	for i := range runs {
		start := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		times[i] = time.Since(start)
	}
	slices.Sort(times)
	return times[runs/2], nil
}

// planShape is the plan's node types, outermost first, in one line.
func planShape(ctx context.Context, db *pgxpool.Pool, sql string) (string, error) {
	rows, err := db.Query(ctx, "EXPLAIN "+sql)
	if err != nil {
		return "", err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	return shapeOf(lines, 6), nil
}

// shapeOf is a plan's node types, outermost first, at most max of them.
func shapeOf(lines []string, most int) string {
	var nodes []string
	for _, l := range lines {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "->"))
		if i := strings.Index(l, "  (cost="); i > 0 {
			node := l[:i]
			if len(nodes) == 0 || nodes[len(nodes)-1] != node {
				nodes = append(nodes, node)
			}
		}
	}
	if len(nodes) > most {
		nodes = append(nodes[:most], "...")
	}
	return strings.Join(nodes, " > ")
}

// seed fills the schema in SQL: commands spread evenly over the last 30
// days, ten per device, twenty products, mostly final with a few still on
// their way, each with a history of PENDING, SENT, DELIVERED and its final
// status (or fewer, if it is not final).
func seed(ctx context.Context, db *pgxpool.Pool, n int, now time.Time) error {
	from := now.AddDate(0, 0, -30)
	logf("seeding %d commands", n)
	if _, err := db.Exec(ctx, `
		INSERT INTO device_commands (command_id, device_id, product_id, app_id, status, status_rank,
			created_time, sent_time, delivered_time, response_time, result, last_event_time, last_event_key, last_request_id,
			first_seen_at, updated_at)
		SELECT 'cmd-' || g, 'dev-' || (g % greatest($1 / 10, 1)), 'prod-' || (g % 20), 'app-1', s.status, s.rank,
			t, t + interval '1 s', CASE WHEN s.rank >= 2 THEN t + interval '3 s' END,
			CASE WHEN s.rank = 3 THEN t + interval '9 s' END,
			CASE WHEN s.rank = 3 THEN '{"code":0}'::jsonb END,
			t + CASE s.rank WHEN 3 THEN interval '9 s' WHEN 2 THEN interval '3 s' ELSE interval '1 s' END,
			sha256(('cmd-' || g)::bytea), 'req-' || g,
			-- As a worker would have written them: first heard of when
			-- created, last written at the last event.
			t, t + CASE s.rank WHEN 3 THEN interval '9 s' WHEN 2 THEN interval '3 s' ELSE interval '1 s' END
		FROM generate_series(1, $1) g,
		LATERAL (SELECT $2::timestamptz + (g::float8 / $1) * interval '30 days' AS t) tt,
		LATERAL (SELECT CASE WHEN g % 200 = 0 THEN 'SENT' WHEN g % 200 < 3 THEN 'DELIVERED'
		                     WHEN g % 100 < 4 THEN 'FAILED' WHEN g % 100 < 7 THEN 'TIMEOUT' WHEN g % 100 = 7 THEN 'EXPIRED'
		                     ELSE 'SUCCESSFUL' END AS status,
		                CASE WHEN g % 200 = 0 THEN 1 WHEN g % 200 < 3 THEN 2 ELSE 3 END::int2 AS rank) s`, n, from); err != nil {
		return fmt.Errorf("seed commands: %w", err)
	}
	// The lists' awkward filters (console/plans_test.go has the same): a
	// device with 5,000 commands, all in the first day, its three oldest
	// failed; a rare device; a rare pair (the fleet's products 4 to 6 time
	// out, product 7 three times, long ago).
	if _, err := db.Exec(ctx, `
		INSERT INTO device_commands (command_id, device_id, product_id, app_id, status, status_rank, created_time,
			last_event_time, last_event_key, first_seen_at, updated_at)
		SELECT id, device, product, 'app-1', status, 3, t, t, sha256(id::bytea), t, t
		FROM (
			SELECT 'old-' || g AS id, 'dev-old' AS device, 'prod-3' AS product,
				CASE WHEN g <= 3 THEN 'FAILED' ELSE 'SUCCESSFUL' END AS status, $1::timestamptz + (g / 5000.0) * interval '1 day' AS t
			FROM generate_series(1, 5000) g
			UNION ALL
			SELECT 'rare-' || g, 'dev-rare', 'prod-5', 'FAILED', $1::timestamptz + interval '10 days' + g * interval '1 min'
			FROM generate_series(1, 3) g
			UNION ALL
			SELECT 'pair-' || g, 'dev-pair-' || g, 'prod-7', 'TIMEOUT', $1::timestamptz + interval '2 days' + g * interval '1 min'
			FROM generate_series(1, 3) g
		) s`, from); err != nil {
		return fmt.Errorf("seed the lists' filters: %w", err)
	}
	// Dead letters: one per thousand commands, in three classes, and a rare
	// class three times, long ago.
	if _, err := db.Exec(ctx, `
		INSERT INTO dead_letters (received_at, source, reason_class, reason, body, body_length, body_sha256, properties)
		SELECT $2::timestamptz + (g::float8 / ($1 / 1000 + 1)) * interval '30 days', 'amqp:DefaultQueue',
			(ARRAY['invalid_json', 'missing_field', 'unknown_status'])[g % 3 + 1], 'seeded for the console''s pages',
			convert_to('{"not":"a notification ' || g || '"}', 'UTF8'), 40, sha256(g::text::bytea), '{"queue":"DefaultQueue"}'
		FROM generate_series(1, $1 / 1000 + 1) g
		UNION ALL
		SELECT $2::timestamptz + g * interval '1 hour', 'amqp:DefaultQueue', 'rare_class', 'seeded for the console''s pages',
			'{}', 2, sha256(('rare-' || g)::bytea), '{"queue":"DefaultQueue"}'::jsonb
		FROM generate_series(1, 3) g`, n, from); err != nil {
		return fmt.Errorf("seed dead letters: %w", err)
	}
	// Presence, one row per device: online, but for most devices whose
	// commands are stuck (as in the simulator, a device offline while its
	// commands wait), so that the online ones among them are few.
	logf("seeding the presence of %d devices", max(n/10, 1))
	if _, err := db.Exec(ctx, `
		INSERT INTO device_presence (device_id, status, status_since, last_event_key, last_event_time, last_request_id,
			last_online_time, last_offline_time, product_id, app_id)
		SELECT 'dev-' || d, CASE WHEN offline THEN 'OFFLINE' ELSE 'ONLINE' END, t, sha256(('dev-' || d)::bytea), t, 'req-dev-' || d,
			CASE WHEN offline THEN t - interval '1 hour' ELSE t END, CASE WHEN offline THEN t END, 'prod-' || (d % 20), 'app-1'
		FROM generate_series(0, greatest($1 / 10, 1) - 1) d,
		LATERAL (SELECT d % 200 < 3 AND d % 7 <> 0 AS offline,
		                $2::timestamptz - (d::float8 / greatest($1 / 10, 1)) * interval '30 days' AS t) x`, n, now); err != nil {
		return fmt.Errorf("seed presence: %w", err)
	}
	// The history, a day at a time (so that progress shows).
	const payload = `{"resource":"device.command.status","event":"update","event_time":"%s","request_id":"%s",` +
		`"notify_data":{"header":{"app_id":"app-1","device_id":"%s","node_id":"node","product_id":"%s","gateway_id":"%s"},` +
		`"body":{"command_id":"%s","created_time":"%s","status":"%s","result":null}}}`
	for day := range 30 {
		lo, hi := from.AddDate(0, 0, day), from.AddDate(0, 0, day+1)
		logf("seeding history, day %d of 30", day+1)
		if _, err := db.Exec(ctx, `
			INSERT INTO device_command_events (command_id, event_key, status, event_time, request_id, source, payload, received_at)
			SELECT c.command_id, sha256((c.command_id || e.status)::bytea), e.status, e.at, c.last_request_id, 'amqp:DefaultQueue',
				format($3, to_char(e.at, 'YYYYMMDD"T"HH24MISS"Z"'), c.last_request_id, c.device_id, c.product_id, c.device_id,
					c.command_id, to_char(c.created_time, 'YYYYMMDD"T"HH24MISS"Z"'), e.status),
				e.at + interval '20 ms'
			FROM device_commands c,
			LATERAL (VALUES ('PENDING', c.created_time, 0), ('SENT', c.sent_time, 1), ('DELIVERED', c.delivered_time, 2),
			                (c.status, c.last_event_time, 3)) AS e(status, at, rank)
			WHERE coalesce(c.created_time, c.first_seen_at) >= $1 AND coalesce(c.created_time, c.first_seen_at) < $2
			  AND e.at IS NOT NULL AND (e.rank < 3 OR c.status_rank = 3)`, lo, hi, payload); err != nil {
			return fmt.Errorf("seed history: %w", err)
		}
	}
	return nil
}

// seedMessages fills device_messages and their history in SQL, shaped as
// the commands: n messages spread evenly over the last 30 days, ten per
// device, twenty products, half of them held PENDING first (the others
// delivered at once, without a pending_time), a few still PENDING; and
// the lists' awkward filters (console/plans_messages_test.go has the
// same): a device whose 5,000 messages are all in the first day, a rare
// device, a rare pair (product 7's three timeouts, long ago).
func seedMessages(ctx context.Context, db *pgxpool.Pool, n int, now time.Time) error {
	from := now.AddDate(0, 0, -30)
	logf("seeding %d device messages", n)
	if _, err := db.Exec(ctx, `
		INSERT INTO device_messages (device_id, message_id, status, status_rank, error_code, error_msg, name, topic,
			product_id, app_id, pending_time, delivered_time, failed_time, timeout_time, last_event_time, last_event_key,
			last_request_id, first_seen_at, updated_at)
		SELECT 'dev-' || (g % greatest($1 / 10, 1)), 'msg-' || g, s.status, CASE WHEN s.status = 'PENDING' THEN 0 ELSE 1 END,
			CASE WHEN s.status = 'FAILED' THEN 'IOTDA.014112' END, CASE WHEN s.status = 'FAILED' THEN 'not subscribed' END,
			'set-interval', '$oc/devices/dev-' || (g % greatest($1 / 10, 1)) || '/sys/messages/down', 'prod-' || (g % 20), 'app-1',
			CASE WHEN g % 2 = 0 THEN t END,
			CASE WHEN s.status = 'DELIVERED' THEN t + interval '2 s' END, CASE WHEN s.status = 'FAILED' THEN t + interval '2 s' END,
			CASE WHEN s.status = 'TIMEOUT' THEN t + interval '1 day' END,
			t + CASE s.status WHEN 'PENDING' THEN interval '0' WHEN 'TIMEOUT' THEN interval '1 day' ELSE interval '2 s' END,
			sha256(('msg-' || g)::bytea), 'req-msg-' || g, t, t + interval '2 s'
		FROM generate_series(1, $1) g,
		LATERAL (SELECT $2::timestamptz + (g::float8 / $1) * interval '30 days' AS t) tt,
		LATERAL (SELECT CASE WHEN g % 200 = 0 THEN 'PENDING' WHEN g % 100 < 4 THEN 'FAILED' WHEN g % 100 < 7 THEN 'TIMEOUT'
		                     ELSE 'DELIVERED' END AS status) s`, n, from); err != nil {
		return fmt.Errorf("seed messages: %w", err)
	}
	if _, err := db.Exec(ctx, `
		INSERT INTO device_messages (device_id, message_id, status, status_rank, product_id, app_id, pending_time,
			last_event_time, last_event_key, first_seen_at, updated_at)
		SELECT device, id, status, 1, product, 'app-1', t, t, sha256(id::bytea), t, t
		FROM (
			SELECT 'dev-old' AS device, 'old-' || g AS id, 'prod-3' AS product,
				CASE WHEN g <= 3 THEN 'FAILED' ELSE 'DELIVERED' END AS status, $1::timestamptz + (g / 5000.0) * interval '1 day' AS t
			FROM generate_series(1, 5000) g
			UNION ALL
			SELECT 'dev-rare', 'rare-' || g, 'prod-5', 'FAILED', $1::timestamptz + interval '10 days' + g * interval '1 min'
			FROM generate_series(1, 3) g
			UNION ALL
			SELECT 'dev-pair-' || g, 'msg-' || g, 'prod-7', 'TIMEOUT', $1::timestamptz + interval '2 days' + g * interval '1 min'
			FROM generate_series(1, 3) g
		) s`, from); err != nil {
		return fmt.Errorf("seed the message lists' filters: %w", err)
	}
	const payload = `{"resource":"device.message.status","event":"update","event_time":"%s","request_id":"%s",` +
		`"notify_data":{"header":{"app_id":"app-1","device_id":"%s","node_id":"node","product_id":"%s","gateway_id":"%s"},` +
		`"body":{"message_id":"%s","name":"set-interval","status":"%s","timestamp":"%s"}}}`
	for day := range 30 {
		lo, hi := from.AddDate(0, 0, day), from.AddDate(0, 0, day+1)
		logf("seeding message history, day %d of 30", day+1)
		if _, err := db.Exec(ctx, `
			INSERT INTO device_message_events (device_id, message_id, event_key, status, event_time, request_id, source, payload, received_at)
			SELECT m.device_id, m.message_id, sha256((m.device_id || m.message_id || e.status)::bytea), e.status, e.at,
				m.last_request_id, 'amqp:DefaultQueue',
				format($3, to_char(e.at, 'YYYYMMDD"T"HH24MISS"Z"'), m.last_request_id, m.device_id, m.product_id, m.device_id,
					m.message_id, e.status, to_char(e.at, 'YYYYMMDD"T"HH24MISS"Z"')),
				e.at + interval '20 ms'
			FROM device_messages m,
			LATERAL (VALUES ('PENDING', m.pending_time), (m.status, CASE WHEN m.status <> 'PENDING' THEN m.last_event_time END))
				AS e(status, at)
			WHERE coalesce(m.pending_time, m.first_seen_at) >= $1 AND coalesce(m.pending_time, m.first_seen_at) < $2
			  AND e.at IS NOT NULL`, lo, hi, payload); err != nil {
			return fmt.Errorf("seed message history: %w", err)
		}
	}
	return nil
}

// ingestRate applies a simulated stream (out of order, a few duplicates)
// through store.Apply, in batches of 256 with two writers as the worker
// does, with fsync on, and returns messages per second.
func ingestRate(ctx context.Context, st *store.Store, n int, seed uint64) (float64, error) {
	db := st.Pool()
	if _, err := db.Exec(ctx, `ALTER SYSTEM SET fsync = on`); err == nil {
		_, _ = db.Exec(ctx, `ALTER SYSTEM SET synchronous_commit = on`)
		_, _ = db.Exec(ctx, `SELECT pg_reload_conf()`)
		defer func() {
			ctx := context.WithoutCancel(ctx)
			_, _ = db.Exec(ctx, `ALTER SYSTEM RESET fsync`)
			_, _ = db.Exec(ctx, `ALTER SYSTEM RESET synchronous_commit`)
			_, _ = db.Exec(ctx, `SELECT pg_reload_conf()`)
		}()
	}
	s := simulate.GenerateN(simulate.Config{Seed: seed + uint64(rand.IntN(1000)), OutOfOrder: 0.1, Duplicate: 0.02,
		Start: time.Now().Add(-time.Hour)}, n)
	now := time.Now()
	lim := ingest.Limits{MaxBodyBytes: 1 << 20}
	items := make([]ingest.Item, len(s.Messages))
	for i, m := range s.Messages {
		items[i] = ingest.Classify(m.Body, "amqp:bench", now, lim)
	}
	batches := make(chan []ingest.Item)
	g, gctx := errgroup.WithContext(ctx)
	for range 2 {
		g.Go(func() error {
			for b := range batches {
				if _, err := st.Apply(gctx, b); err != nil {
					return err
				}
			}
			return nil
		})
	}
	start := time.Now()
	g.Go(func() error {
		defer close(batches)
		for len(items) > 0 {
			k := min(256, len(items))
			select {
			case batches <- items[:k]:
			case <-gctx.Done():
				return gctx.Err()
			}
			items = items[k:]
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return 0, fmt.Errorf("ingest: %w", err)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// migrateInPlace seeds a schema at version 4 (the history one table, jsonb
// payloads) with rows history rows and times the migration to the latest.
func migrateInPlace(ctx context.Context, admin *pgx.Conn, url string, rows int) (time.Duration, error) {
	schema := fmt.Sprintf("scale_migrate_%d", time.Now().Unix())
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return 0, err
	}
	defer func() { _, _ = admin.Exec(context.WithoutCancel(ctx), "DROP SCHEMA "+schema+" CASCADE") }()
	st, err := store.Open(ctx, url, store.Options{MaxConns: 2, Schema: schema})
	if err != nil {
		return 0, err
	}
	defer st.Close()
	if err := st.MigrateTo(ctx, 4); err != nil {
		return 0, err
	}
	logf("seeding a version-4 history of %d rows", rows)
	if _, err := st.Pool().Exec(ctx, `
		INSERT INTO device_command_events (command_id, event_key, status, event_time, request_id, source, payload, received_at)
		SELECT 'cmd-' || (g / 4), sha256(g::text::bytea), 'SENT', now() - (g::float8 / $1) * interval '30 days', 'req-' || g,
			'amqp:DefaultQueue', jsonb_build_object('resource', 'device.command.status', 'event', 'update',
				'notify_data', jsonb_build_object('header', jsonb_build_object('device_id', 'dev-' || (g / 40)),
				'body', jsonb_build_object('command_id', 'cmd-' || (g / 4), 'status', 'SENT'))), now()
		FROM generate_series(1, $1) g`, rows); err != nil {
		return 0, fmt.Errorf("seed version 4: %w", err)
	}
	// A command per four history rows: migration 6 indexes them.
	if _, err := st.Pool().Exec(ctx, `
		INSERT INTO device_commands (command_id, device_id, status, status_rank, created_time, last_event_time, last_event_key)
		SELECT 'cmd-' || g, 'dev-' || (g / 10), 'SUCCESSFUL', 3, now() - (g::float8 / $1) * interval '30 days', now(), '\x00'
		FROM generate_series(0, $1 / 4) g`, rows); err != nil {
		return 0, fmt.Errorf("seed version 4: %w", err)
	}
	logf("migrating in place")
	start := time.Now()
	if err := st.Migrate(ctx); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// migrationIndexes returns the CREATE INDEX statements of the named
// migrations, so that the benchmark builds exactly what they do: an index
// a later one of them rebuilds (migration 023 rebuilt two of 018's) as the
// later one defines it.
func migrationIndexes(names ...string) (string, error) {
	var out []string
	at := map[string]int{} // an index's statement in out, by its name
	for _, name := range names {
		src, err := fs.ReadFile(migrations.FS, name)
		if err != nil {
			return "", err
		}
		// Comments first: one may hold a semicolon.
		var lines []string
		for _, l := range strings.Split(string(src), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "--") {
				lines = append(lines, l)
			}
		}
		found := false
		for _, stmt := range strings.Split(strings.Join(lines, "\n"), ";") {
			s := strings.TrimSpace(stmt)
			if !strings.HasPrefix(s, "CREATE INDEX") {
				continue
			}
			found = true
			index := strings.Fields(s)[2]
			if i, ok := at[index]; ok {
				out[i] = s
				continue
			}
			at[index] = len(out)
			out = append(out, s)
		}
		if !found {
			return "", fmt.Errorf("%s: no CREATE INDEX", name)
		}
	}
	return strings.Join(out, ";\n"), nil
}
