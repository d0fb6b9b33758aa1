// Command scale measures cmdtrack's schema at fleet size (`make bench/scale`):
// it seeds -commands commands (default 10 million) with four history rows
// each and -messages device messages with their history, spread over the
// last 30 days, into a fresh schema migrated as `cmdtrack migrate` does;
// then it times every query of the README's cookbook (the median of
// several runs, with its plan's shape), every console page (pages.go: the
// median with its spread, in HTML and JSON; the plans, analyzed, of those
// over 100 ms), ingest through the project's own write path (store.Apply)
// with the tables empty and full, history retention (partitions dropped,
// dead tuples left) and command and message retention, and reports the
// tables' and indexes' sizes per million. It prints a Markdown table.
//
// With -keep the schema stays as seeded (retention is skipped), and
// -reuse SCHEMA re-times the cookbook and the pages on it (after applying
// any migration added since), without seeding again.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"regexp"
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
	keep := flag.Bool("keep", false, "keep the schema afterwards (and skip retention, which would change it)")
	reuse := flag.String("reuse", "", "time only the cookbook and the console's pages, on this schema kept by an earlier -keep run")
	only := flag.String("pages", "", "with -reuse: time only the pages whose names match this regular expression, and no cookbook")
	out := flag.String("out", "", "also write the table here")
	upgradeN := flag.Int("upgrade", 0, "time only each migration after version 23, one by one, on a schema at that version holding this many commands, device messages and history rows of each (0: the full run instead)")
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
	var err error
	switch {
	case *upgradeN > 0:
		err = upgrade(context.Background(), w, *url, *upgradeN)
	case *reuse != "":
		err = rerun(context.Background(), w, *url, *reuse, *only, *runs)
	default:
		err = run(context.Background(), w, *url, *n, *msgN, *ingestN, *migrateN, *runs, *keep)
	}
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
	logf("schema %s", schema)
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
	if err := seedMessages(ctx, db, msgN, n, now); err != nil {
		return err
	}
	var msgEvents int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM device_message_events`).Scan(&msgEvents); err != nil {
		return err
	}
	add(fmt.Sprintf("seeding %d device messages and %d history rows (SQL, 30 days, a statement a day), presence of their %d devices",
		msgN, msgEvents, max(msgN/10, 1)), time.Since(start).Round(time.Second).String())
	// Migration 018's indexes, as 022 and 026 rebuilt them and 031 left
	// them, on the full device_messages (the seed dropped them), before
	// anything reads it.
	indexes, err := migrationIndexes("018_message_lists.sql", "022_message_index_includes.sql", "026_message_seq.sql",
		"031_message_list_indexes.sql")
	if err != nil {
		return err
	}
	start = time.Now()
	if _, err := db.Exec(ctx, indexes); err != nil {
		return err
	}
	add(fmt.Sprintf("migration 018's indexes (two on device_messages, as 022 and 026 rebuilt them and 031 left them), built on %d messages (the table's writes wait meanwhile)", msgN),
		time.Since(start).Round(time.Millisecond).String())
	if _, err := db.Exec(ctx, "ANALYZE device_messages"); err != nil {
		return err
	}

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

	if err := cookbook(ctx, db, runs, add); err != nil {
		return err
	}

	// Migration 012's indexes, built on the full tables (those of 008 took
	// 40 s at 10 M: bench/results/scale.txt of 2026-11-30).
	if _, err := db.Exec(ctx, `DROP INDEX device_commands_device_status_day_idx, device_commands_product_status_day_idx,
		dead_letters_class_received_idx`); err != nil {
		return err
	}
	if indexes, err = migrationIndexes("012_list_indexes.sql"); err != nil {
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

	// The console's pages, over HTTP.
	slow, err := pages(ctx, url, schema, runs, nil, add)
	if err != nil {
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
		(SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'device_command_events'::regclass)
			-- the headers the history keeps once (migration 027), theirs too
			+ coalesce(pg_total_relation_size(to_regclass('notification_headers')), 0)`).
		Scan(&cmdBytes, &histBytes); err != nil {
		return err
	}
	per := float64(n) / 1e6
	add("size per million commands: device_commands with its indexes", fmt.Sprintf("%.0f MiB", float64(cmdBytes)/per/(1<<20)))
	add("size per million commands: history (4 rows each) with its index and headers", fmt.Sprintf("%.0f MiB", float64(histBytes)/per/(1<<20)))
	var msgBytes, msgHistBytes int64
	if err := db.QueryRow(ctx, `SELECT pg_total_relation_size('device_messages'),
		(SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'device_message_events'::regclass)`).
		Scan(&msgBytes, &msgHistBytes); err != nil {
		return err
	}
	perMsg := float64(max(msgN, 1)) / 1e6
	add("size per million device messages: device_messages with its indexes", fmt.Sprintf("%.0f MiB", float64(msgBytes)/perMsg/(1<<20)))
	add("size per million device messages: their history with its index", fmt.Sprintf("%.0f MiB", float64(msgHistBytes)/perMsg/(1<<20)))
	// The devices of the commands and of the messages, whichever are more.
	var presenceBytes, devices int64
	if err := db.QueryRow(ctx, `SELECT pg_total_relation_size('device_presence'), (SELECT count(*) FROM device_presence)`).
		Scan(&presenceBytes, &devices); err != nil {
		return err
	}
	add("size per million devices: device_presence with its index",
		fmt.Sprintf("%.0f MiB", float64(presenceBytes)/(float64(max(devices, 1))/1e6)/(1<<20)))

	if keep {
		add("retention", "skipped: -keep (the schema is kept as seeded, for -reuse)")
	} else if err := retention(ctx, st, part, now, add); err != nil {
		return err
	}

	if migrateN > 0 {
		took, err := migrateInPlace(ctx, admin, url, migrateN)
		if err != nil {
			return err
		}
		add(fmt.Sprintf("migrating an existing database in place (migrations 5-7): %d history rows, %d commands", migrateN, migrateN/4), took.Round(time.Second).String())
	}

	report(w, fmt.Sprintf("%d commands, %d history rows; %d device messages", n, 4*n, msgN), rows, slow)
	return nil
}

// rerun times the cookbook and the console's pages on a schema kept by an
// earlier run (-keep): to re-time them after a change without seeding
// again.
func rerun(ctx context.Context, w io.Writer, url, schema, only string, runs int) error {
	match, err := regexp.Compile(only)
	if err != nil {
		return fmt.Errorf("-pages: %w", err)
	}
	st, err := store.Open(ctx, url, store.Options{MaxConns: 8, Schema: schema})
	if err != nil {
		return err
	}
	defer st.Close()
	// Migrations added since the schema was seeded (an index being
	// tried) are timed as they are applied.
	start := time.Now()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	db := st.Pool()
	var rows [][2]string
	add := func(what, figure string) {
		rows = append(rows, [2]string{what, figure})
		logf("%s: %s", what, figure)
	}
	add("migrating the kept schema to the latest (nothing, or the migrations added since it was seeded)",
		time.Since(start).Round(time.Millisecond).String())
	var n, msgN int
	if err := db.QueryRow(ctx, `SELECT (SELECT count(*) FROM device_commands), (SELECT count(*) FROM device_messages)`).
		Scan(&n, &msgN); err != nil {
		return err
	}
	if only == "" {
		if err := cookbook(ctx, db, runs, add); err != nil {
			return err
		}
	}
	slow, err := pages(ctx, url, schema, runs, match, add)
	if err != nil {
		return fmt.Errorf("console pages: %w", err)
	}
	report(w, fmt.Sprintf("schema %s kept by an earlier run: %d commands, %d device messages", schema, n, msgN), rows, slow)
	return nil
}

// report writes the rows as a Markdown table under title, then the plans
// of the pages over slowPage.
func report(w io.Writer, title string, rows [][2]string, slow []string) {
	table(w, title, rows)
	if len(slow) == 0 {
		fmt.Fprintf(w, "\nNo page over %s.\n", slowPage)
		return
	}
	fmt.Fprintf(w, "\nThe pages over %s, each statement's plan (EXPLAIN (ANALYZE, BUFFERS), after the run):\n", slowPage)
	for _, p := range slow {
		fmt.Fprintf(w, "\n%s\n", indent(p))
	}
}

// table writes the rows as a Markdown table under title.
func table(w io.Writer, title string, rows [][2]string) {
	fmt.Fprintf(w, "\n| %s | |\n| --- | --- |\n", title)
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s |\n", r[0], r[1])
	}
}

// indent makes text a Markdown code block.
func indent(text string) string {
	return "    " + strings.ReplaceAll(text, "\n", "\n    ")
}

// cookbook times each query of the README's cookbook, as it writes them,
// and says its plan's shape.
func cookbook(ctx context.Context, db *pgxpool.Pool, runs int, add func(string, string)) error {
	var device, command string
	if err := db.QueryRow(ctx, `SELECT device_id, command_id FROM device_commands WHERE command_id = `+middleCommand).
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
	// The device messages' queries (README, the cookbook's second half,
	// and the message alerts' runbooks), on a message of the last days.
	var msgDevice, message string
	if err := db.QueryRow(ctx, `SELECT device_id, message_id FROM device_messages
		WHERE device_id = 'dev-1' ORDER BY coalesce(pending_time, first_seen_at) DESC LIMIT 1`).Scan(&msgDevice, &message); err != nil {
		return fmt.Errorf("pick a message: %w", err)
	}
	cookbook = append(cookbook, []struct{ name, sql string }{
		{"did a message reach its device, and if not why", `SELECT m.status, m.error_code, m.error_msg, m.pending_time,
			m.delivered_time, m.failed_time, m.timeout_time, p.status AS device_status, p.status_since AS device_status_since
			FROM device_messages m LEFT JOIN device_presence p ON p.device_id = m.device_id
			WHERE m.device_id = '` + msgDevice + `' AND m.message_id = '` + message + `'`},
		{"a message's notifications in order (event_time bounded to 7 days)", `SELECT event_time, status, request_id, source,
			coalesce(payload::jsonb -> 'notify_data' -> 'body', payload::jsonb -> 'body') -> 'error_info' AS error_info
			FROM message_events WHERE device_id = '` + msgDevice + `' AND message_id = '` + message + `'
			AND event_time > now() - interval '7 days' ORDER BY event_time`},
		{"a device's messages, newest first", `SELECT message_id, name, topic, status, coalesce(pending_time, first_seen_at) AS sent,
			error_code FROM device_messages WHERE device_id = '` + msgDevice + `' ORDER BY sent DESC LIMIT 20`},
		{"the 100 messages held PENDING longest (quiet > 1 h)", `SELECT device_id, message_id, name, stuck_for, device_status
			FROM stuck_messages('1 hour') ORDER BY last_event_time LIMIT 100`},
		{"messages per product, last 7 days, from device_messages itself (not in the README: the rollup's form is)", `SELECT product_id, count(*) AS messages,
			count(*) FILTER (WHERE status = 'DELIVERED') AS delivered, count(*) FILTER (WHERE status = 'FAILED') AS failed,
			count(*) FILTER (WHERE status = 'TIMEOUT') AS timed_out, count(*) FILTER (WHERE status = 'PENDING') AS pending
			FROM device_messages WHERE coalesce(pending_time, first_seen_at) > now() - interval '7 days'
			GROUP BY product_id ORDER BY product_id`},
		{"messages per product, last 7 days (message_outcomes_daily)", `SELECT product_id,
			sum(messages) AS messages, sum(messages) FILTER (WHERE status = 'DELIVERED') AS delivered,
			sum(messages) FILTER (WHERE status = 'FAILED') AS failed, sum(messages) FILTER (WHERE status = 'TIMEOUT') AS timed_out,
			sum(messages) FILTER (WHERE status = 'PENDING') AS pending
			FROM message_outcomes_daily WHERE day > current_date - 7 GROUP BY product_id ORDER BY product_id`},
		{"why the failed messages of the last day failed", `SELECT product_id, error_code, error_msg, count(*) FROM device_messages
			WHERE status = 'FAILED' AND coalesce(pending_time, first_seen_at) > now() - interval '1 day'
			GROUP BY 1, 2, 3 ORDER BY 4 DESC`},
		{"runbook CmdtrackProductMessagesFailing: a product's failures of the last hour", `SELECT error_code, error_msg, topic, count(*)
			FROM device_messages WHERE product_id = 'prod-1' AND status = 'FAILED'
			AND coalesce(pending_time, first_seen_at) > now() - interval '1 hour' GROUP BY 1, 2, 3 ORDER BY 4 DESC`},
		{"runbook CmdtrackProductMessagesTimingOut: a product's timeouts of the last day by device status", `SELECT p.status, count(*)
			FROM device_messages m LEFT JOIN device_presence p USING (device_id) WHERE m.product_id = 'prod-1'
			AND m.status = 'TIMEOUT' AND coalesce(m.pending_time, m.first_seen_at) > now() - interval '1 day' GROUP BY 1`},
	}...)
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

	return nil
}

// retention times history retention to 20 days (partitions dropped) and
// command and message retention to 25 days.
func retention(ctx context.Context, st *store.Store, part store.Partitioning, now time.Time, add func(string, string)) error {
	db := st.Pool()
	var before int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM device_command_events`).Scan(&before); err != nil {
		return err
	}
	start := time.Now()
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
	add("command and message retention to 25 days (batches of 5,000 through the day indexes)",
		fmt.Sprintf("%d commands and %d messages in %s", pruned.Commands, pruned.Messages, time.Since(start).Round(time.Millisecond)))
	return nil
}

// median runs f runs times (after one warm-up run) and returns the median
// time.
func median(runs int, f func() error) (time.Duration, error) {
	times, err := timesOf(runs, f)
	if err != nil {
		return 0, err
	}
	return times[runs/2], nil
}

// timesOf runs f runs times after one warm-up run and returns the times,
// sorted.
func timesOf(runs int, f func() error) ([]time.Duration, error) {
	if err := f(); err != nil {
		return nil, err
	}
	times := make([]time.Duration, runs)
	for i := range runs {
		start := time.Now()
		if err := f(); err != nil {
			return nil, err
		}
		times[i] = time.Since(start)
	}
	slices.Sort(times)
	return times, nil
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

// seededHeader is the notification header of every notification seeded, of
// either kind, for a device and its product (the device is its gateway).
const seededHeader = `{"app_id":"app-1","device_id":"%s","node_id":"node","product_id":"%s","gateway_id":"%s"}`

// seededHeaderID is the id seeded under seededHeader's text for the device
// and product of the rows r, formatted by the parameter param: any 64 bits
// of the text (the writer's own is another hash, which only means a live
// notification adds its own row).
func seededHeaderID(param, r string) string {
	return `('x' || left(md5(format(` + param + `, ` + r + `.device_id, ` + r + `.product_id, ` + r + `.device_id)), 16))::bit(64)::bigint`
}

// fleetCommandID is the SQL of the g-th seeded command's id: a UUID, as
// the platform allocates (seed 002), in no order, so that the indexes it
// leads are as wide and take their inserts where a fleet's do (a rising
// 'cmd-N' was both shorter and always at the right edge).
func fleetCommandID(g string) string { return "md5('cmd-' || " + g + ")::uuid::text" }

// fleetMessageID is the SQL of the g-th seeded message's own id, a UUID as
// IoTDA recommends its callers choose (the others share a caller's
// 'cfg-N' with other devices).
func fleetMessageID(g string) string { return "md5('msg-' || " + g + ")::uuid::text" }

// middleCommand is the SQL of a fleet command's id halfway through the 30
// days: the fleet's commands are numbered in the order of their time.
var middleCommand = fleetCommandID("((SELECT count(*) FROM device_commands) / 2)")

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
		SELECT `+fleetCommandID("g")+`, 'dev-' || (g % greatest($1 / 10, 1)), 'prod-' || (g % 20), 'app-1', s.status, s.rank,
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
	// The history, a day at a time (so that progress shows), as the writer
	// stores it: each device's header once in notification_headers, the
	// payloads without it (migration 027; the id: seededHeaderID).
	const (
		before = `{"resource":"device.command.status","event":"update","event_time":"%s","request_id":"%s","notify_data":{"header":`
		after  = `,"body":{"command_id":"%s","created_time":"%s","status":"%s","result":null}}}`
	)
	headerID := seededHeaderID("$1", "c")
	logf("seeding the devices' headers")
	if _, err := db.Exec(ctx, `
		INSERT INTO notification_headers (id, header)
		SELECT DISTINCT `+headerID+`, format($1, c.device_id, c.product_id, c.device_id) FROM device_commands c
		ON CONFLICT (id) DO NOTHING`, seededHeader); err != nil {
		return fmt.Errorf("seed headers: %w", err)
	}
	for day := range 30 {
		lo, hi := from.AddDate(0, 0, day), from.AddDate(0, 0, day+1)
		logf("seeding history, day %d of 30", day+1)
		if _, err := db.Exec(ctx, `
			INSERT INTO device_command_events (command_id, event_key, status, event_time, request_id, source, stored_payload,
				header_id, header_at, received_at)
			SELECT c.command_id, sha256((c.command_id || e.status)::bytea), e.status, e.at, c.last_request_id, 'amqp:DefaultQueue',
				p.before || format($5, c.command_id, to_char(c.created_time, 'YYYYMMDD"T"HH24MISS"Z"'), e.status),
				`+seededHeaderID("$4", "c")+`, length(p.before) + 1, e.at + interval '20 ms'
			FROM device_commands c,
			LATERAL (VALUES ('PENDING', c.created_time, 0), ('SENT', c.sent_time, 1), ('DELIVERED', c.delivered_time, 2),
			                (c.status, c.last_event_time, 3)) AS e(status, at, rank),
			LATERAL (SELECT format($3, to_char(e.at, 'YYYYMMDD"T"HH24MISS"Z"'), c.last_request_id) AS before) p
			WHERE coalesce(c.created_time, c.first_seen_at) >= $1 AND coalesce(c.created_time, c.first_seen_at) < $2
			  AND e.at IS NOT NULL AND (e.rank < 3 OR c.status_rank = 3)`, lo, hi, before, seededHeader, after); err != nil {
			return fmt.Errorf("seed history: %w", err)
		}
	}
	return nil
}

// seedMessages fills device_messages and their history in SQL, a day of
// messages per statement (a data-modifying WITH writes the day's messages
// and, from what it returns, their history: no scan of the table to find
// them), into the partitions upkeep made (MaintainPartitions, daily).
//
// The fleet's messages: n spread evenly over the last 30 days, on n/10
// devices (the commands' devices first: the device page shows both) of 20
// products (a device's product is its commands'); their outcome drawn from
// a hash of their number, not from the device, so that a device's messages
// differ: 3 % FAILED (two platform errors), 3 % TIMEOUT a day after they
// were held (those of the last day are still PENDING: within their time to
// live), 0.2 % stuck PENDING whatever their age (their final notification
// lost), the rest DELIVERED; half held PENDING first (delivered up to two
// hours later, as a device comes online), the others delivered at once
// (no pending_time: their day is when cmdtrack first heard of them). Half
// have ids of their own; the others share theirs with the 999 devices next
// to them, as an application broadcasting one configuration message under
// one id does (a message id is unique per device only).
//
// The lists' awkward filters (console/plans_messages_test.go has the
// same): a device whose 5,000 messages are all in the first day, a busy
// device whose only failures are its oldest, a rare device, a rare pair
// (product 7's three timeouts, long ago, under fleet messages' ids).
//
// Migration 018's indexes are dropped first and built after (run times
// that build): a day index to find each day's messages is not needed, and
// the four indexes built once cost less than kept up row by row.
func seedMessages(ctx context.Context, db *pgxpool.Pool, n, commands int, now time.Time) error {
	from := now.AddDate(0, 0, -30)
	if _, err := db.Exec(ctx, `DROP INDEX device_messages_product_status_day_idx, device_messages_day_idx`); err != nil {
		return fmt.Errorf("seed messages: %w", err)
	}
	devices := max(n/10, 1)
	// The history as the writer stores it, as the commands' (seed): each
	// device's header once, the payloads without it (migration 029).
	const (
		before = `{"resource":"device.message.status","event":"update","event_time":"%s","request_id":"%s","notify_data":{"header":`
		after  = `,"body":{"message_id":"%s","name":"%s","status":"%s","timestamp":"%s"}}}`
	)
	if _, err := db.Exec(ctx, `
		INSERT INTO notification_headers (id, header)
		SELECT `+seededHeaderID("$1", "m")+`, format($1, m.device_id, m.product_id, m.device_id)
		FROM (SELECT 'dev-' || d AS device_id, 'prod-' || (d % 20) AS product_id FROM generate_series(0, $2::int8 - 1) d) m
		ON CONFLICT (id) DO NOTHING`, seededHeader, devices); err != nil {
		return fmt.Errorf("seed message headers: %w", err)
	}
	for day := range 30 {
		lo, hi := int64(n)*int64(day)/30+1, int64(n)*int64(day+1)/30
		logf("seeding device messages and their history, day %d of 30", day+1)
		if _, err := db.Exec(ctx, `
			WITH m AS (
				INSERT INTO device_messages (device_id, message_id, status, status_rank, previous_status, error_code, error_msg,
					name, topic, product_id, app_id, node_id, gateway_id, pending_time, delivered_time, failed_time, timeout_time,
					last_event_time, last_event_key, last_request_id, first_seen_at, updated_at)
				SELECT 'dev-' || d, id, s.status, CASE WHEN s.status = 'PENDING' THEN 0 ELSE 1 END,
					CASE WHEN held AND s.status <> 'PENDING' THEN 'PENDING' END,
					CASE WHEN s.status = 'FAILED' THEN CASE WHEN k < 25 THEN 'IOTDA.014112' ELSE 'IOTDA.014016' END END,
					CASE WHEN s.status = 'FAILED' THEN CASE WHEN k < 25 THEN 'the device has not subscribed to the topic'
						ELSE 'the device is not online' END END,
					name, '$oc/devices/dev-' || d || '/sys/messages/down', 'prod-' || (d % 20), 'app-1', 'node', 'dev-' || d,
					CASE WHEN held THEN t END,
					CASE WHEN s.status = 'DELIVERED' THEN last END, CASE WHEN s.status = 'FAILED' THEN last END,
					CASE WHEN s.status = 'TIMEOUT' THEN last END,
					last, sha256((d || id || s.status)::bytea), 'req-msg-' || g, t, last
				FROM generate_series($1::int8, $2::int8) g,
				LATERAL (SELECT g % $3::int8 AS d, hashint8(g) & 2147483647 AS h,
				                $4::timestamptz + (g::float8 / $5::int8) * interval '30 days' AS t) x,
				LATERAL (SELECT CASE WHEN h % 2 = 0 THEN `+fleetMessageID("g")+` ELSE 'cfg-' || (g / least(1000, $3::int8)) END AS id,
				                CASE WHEN h % 2 = 0 THEN 'ping' ELSE 'set-interval' END AS name,
				                h / 2 % 1000 AS k, h / 2000 % 2 = 0 AS heldflag) y,
				LATERAL (SELECT CASE WHEN k < 30 THEN 'FAILED'
				                     WHEN k < 60 AND t < $6::timestamptz - interval '1 day' THEN 'TIMEOUT'
				                     WHEN k < 62 THEN 'PENDING'
				                     ELSE 'DELIVERED' END AS status) s,
				LATERAL (SELECT s.status IN ('PENDING', 'TIMEOUT') OR heldflag AS held,
				                least($6::timestamptz, t + CASE WHEN s.status = 'PENDING' THEN interval '0'
				                                                WHEN s.status = 'TIMEOUT' THEN interval '1 day'
				                                                WHEN heldflag THEN (h / 4000 % 7200) * interval '1 s'
				                                                ELSE interval '2 s' END) AS last) z
				RETURNING device_id, message_id, name, status, product_id, pending_time, last_event_time, last_request_id
			)
			INSERT INTO device_message_events (device_id, message_id, event_key, status, event_time, request_id, source,
				stored_payload, header_id, header_at, received_at)
			SELECT m.device_id, m.message_id, sha256((m.device_id || m.message_id || e.status)::bytea), e.status, e.at,
				m.last_request_id, 'amqp:DefaultQueue',
				p.before || format($9, m.message_id, m.name, e.status, to_char(e.at, 'YYYYMMDD"T"HH24MISS"Z"')),
				`+seededHeaderID("$8", "m")+`, length(p.before) + 1, e.at + interval '20 ms'
			FROM m,
			LATERAL (VALUES ('PENDING', m.pending_time), (m.status, CASE WHEN m.status <> 'PENDING' THEN m.last_event_time END))
				AS e(status, at),
			LATERAL (SELECT format($7, to_char(e.at, 'YYYYMMDD"T"HH24MISS"Z"'), m.last_request_id) AS before) p
			WHERE e.at IS NOT NULL`, lo, hi, devices, from, n, now, before, seededHeader, after); err != nil {
			return fmt.Errorf("seed messages, day %d: %w", day+1, err)
		}
	}
	if _, err := db.Exec(ctx, `
		INSERT INTO device_messages (device_id, message_id, status, status_rank, previous_status, product_id, app_id, pending_time,
			last_event_time, last_event_key, first_seen_at, updated_at)
		SELECT device, id, status, 1, 'PENDING', product, 'app-1', t, t, sha256(id::bytea), t, t
		FROM (
			SELECT 'dev-old' AS device, 'old-' || g AS id, 'prod-3' AS product,
				CASE WHEN g <= 3 THEN 'FAILED' ELSE 'DELIVERED' END AS status, $1::timestamptz + (g / 5000.0) * interval '1 day' AS t
			FROM generate_series(1, 5000) g
			UNION ALL
			SELECT 'dev-busy', 'busy-' || g, 'prod-4', CASE WHEN g <= 3 THEN 'FAILED' ELSE 'DELIVERED' END,
				$1::timestamptz + (g / 5000.0) * interval '30 days'
			FROM generate_series(1, 5000) g
			UNION ALL
			SELECT 'dev-rare', 'rare-' || g, 'prod-5', 'FAILED', $1::timestamptz + interval '10 days' + g * interval '1 min'
			FROM generate_series(1, 3) g
			UNION ALL
			SELECT 'dev-pair-' || g, 'cfg-' || g, 'prod-7', 'TIMEOUT', $1::timestamptz + interval '2 days' + g * interval '1 min'
			FROM generate_series(1, 3) g
		) s`, from); err != nil {
		return fmt.Errorf("seed the message lists' filters: %w", err)
	}
	// Presence of the devices that have messages but no commands, as the
	// commands' devices have theirs.
	if _, err := db.Exec(ctx, `
		INSERT INTO device_presence (device_id, status, status_since, last_event_key, last_event_time, last_request_id,
			last_online_time, last_offline_time, product_id, app_id)
		SELECT 'dev-' || d, CASE WHEN offline THEN 'OFFLINE' ELSE 'ONLINE' END, t, sha256(('dev-' || d)::bytea), t, 'req-dev-' || d,
			CASE WHEN offline THEN t - interval '1 hour' ELSE t END, CASE WHEN offline THEN t END, 'prod-' || (d % 20), 'app-1'
		FROM generate_series(greatest($1 / 10, 1), $2 - 1) d,
		LATERAL (SELECT d % 200 < 3 AND d % 7 <> 0 AS offline,
		                $3::timestamptz - (d::float8 / $2) * interval '30 days' AS t) x`, commands, devices, now); err != nil {
		return fmt.Errorf("seed presence of the message devices: %w", err)
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
	st, drop, err := scratchSchema(ctx, admin, url, "scale_migrate", 4)
	if err != nil {
		return 0, err
	}
	defer drop()
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

// scratchSchema is a new schema named for prefix and the time, migrated to
// version, and its store; drop closes the store and drops the schema.
func scratchSchema(ctx context.Context, admin *pgx.Conn, url, prefix string, version int32) (*store.Store, func(), error) {
	schema := fmt.Sprintf("%s_%d", prefix, time.Now().Unix())
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return nil, nil, err
	}
	dropSchema := func() { _, _ = admin.Exec(context.WithoutCancel(ctx), "DROP SCHEMA "+schema+" CASCADE") }
	st, err := store.Open(ctx, url, store.Options{MaxConns: 2, Schema: schema})
	if err != nil {
		dropSchema()
		return nil, nil, err
	}
	drop := func() {
		st.Close()
		dropSchema()
	}
	if err := st.MigrateTo(ctx, version); err != nil {
		drop()
		return nil, nil, err
	}
	return st, drop, nil
}

// migrationIndexes returns the CREATE INDEX statements of the named
// migrations, so that the benchmark builds exactly what they do: an index
// a later one of them rebuilds (migration 022 rebuilt two of 018's) as the
// later one defines it, and none that a later one drops (031).
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
			if dropped, ok := strings.CutPrefix(s, "DROP INDEX"); ok {
				found = true
				for _, index := range strings.Split(strings.TrimPrefix(strings.TrimSpace(dropped), "IF EXISTS"), ",") {
					if i, ok := at[strings.TrimSpace(index)]; ok {
						out[i] = ""
					}
				}
				continue
			}
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
			return "", fmt.Errorf("%s: no CREATE INDEX or DROP INDEX", name)
		}
	}
	out = slices.DeleteFunc(out, func(s string) bool { return s == "" })
	return strings.Join(out, ";\n"), nil
}
