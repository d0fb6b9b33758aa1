package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cmdtrack/cmdtrack/migrations"
)

// upgradeFrom is the version -upgrade seeds: the schema before issue 30's
// migrations, the last that an installation with both kinds' rows may run.
const upgradeFrom = 23

// upgrade times each migration after upgradeFrom, one at a time, on a
// schema at that version holding n commands and n device messages and n
// history rows of each kind (the tables an operator upgrading a fleet's
// database has full): how long each holds its tables' locks, which the
// README's upgrade notes quote.
func upgrade(ctx context.Context, w io.Writer, url string, n int) error {
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	st, drop, err := scratchSchema(ctx, admin, url, "scale_upgrade", upgradeFrom)
	if err != nil {
		return err
	}
	defer drop()
	var rows [][2]string
	add := func(what, figure string) {
		logf("%s: %s", what, figure)
		rows = append(rows, [2]string{what, figure})
	}
	db := st.Pool()
	// Over the last 30 days; 1 device in 10 commands or messages, 20
	// products; statuses as a working fleet's, a few left open.
	seeds := []struct{ what, sql string }{
		{"device_commands", `
			INSERT INTO device_commands (command_id, device_id, product_id, status, status_rank, created_time,
				last_event_time, last_event_key, first_seen_at, updated_at)
			SELECT 'cmd-' || g, 'dev-' || (g / 10), 'prod-' || (g % 20), s, CASE WHEN s IN ('SENT', 'DELIVERED') THEN 1 ELSE 3 END,
				t, t, '\x00', t, t
			FROM (SELECT g, now() - (g::float8 / $1) * interval '30 days' AS t,
				CASE WHEN g % 200 = 0 THEN 'SENT' WHEN g % 200 < 3 THEN 'DELIVERED' WHEN g % 100 < 4 THEN 'FAILED'
				     WHEN g % 100 < 7 THEN 'TIMEOUT' ELSE 'SUCCESSFUL' END AS s
				FROM generate_series(1, $1) g) x`},
		{"device_messages", `
			INSERT INTO device_messages (device_id, message_id, status, status_rank, product_id, pending_time,
				last_event_time, last_event_key, first_seen_at, updated_at)
			SELECT 'dev-' || (g / 10), gen_random_uuid()::text, s, CASE WHEN s = 'PENDING' THEN 0 ELSE 1 END,
				'prod-' || (g % 20), CASE WHEN g % 2 = 0 THEN t END, t, '\x00', t, t
			FROM (SELECT g, now() - (g::float8 / $1) * interval '30 days' AS t,
				CASE WHEN g % 200 = 0 THEN 'PENDING' WHEN g % 100 < 4 THEN 'FAILED' WHEN g % 100 < 7 THEN 'TIMEOUT'
				     ELSE 'DELIVERED' END AS s
				FROM generate_series(1, $1) g) x`},
		{"device_command_events", `
			INSERT INTO device_command_events (command_id, event_key, status, event_time, request_id, source, payload, received_at)
			SELECT 'cmd-' || (g / 4), sha256(g::text::bytea), 'SENT', now() - (g::float8 / $1) * interval '30 days',
				'req-' || g, 'amqp:DefaultQueue', '{"resource":"device.command.status","event":"update"}', now()
			FROM generate_series(1, $1) g`},
		{"device_message_events", `
			INSERT INTO device_message_events (device_id, message_id, event_key, status, event_time, request_id, source, payload, received_at)
			SELECT 'dev-' || (g / 20), 'msg-' || (g / 2), sha256(g::text::bytea), 'DELIVERED',
				now() - (g::float8 / $1) * interval '30 days', 'req-' || g, 'amqp:DefaultQueue',
				'{"resource":"device.message.status","event":"update"}', now()
			FROM generate_series(1, $1) g`},
	}
	for _, s := range seeds {
		start := time.Now()
		if _, err := db.Exec(ctx, s.sql, n); err != nil {
			return fmt.Errorf("seed %s at version %d: %w", s.what, upgradeFrom, err)
		}
		if _, err := db.Exec(ctx, "ANALYZE "+s.what); err != nil {
			return err
		}
		add(fmt.Sprintf("seeding %d rows of %s at version %d", n, s.what, upgradeFrom), time.Since(start).Round(time.Second).String())
	}
	names, err := migrationNames()
	if err != nil {
		return err
	}
	for v := upgradeFrom + 1; v <= len(names); v++ {
		start := time.Now()
		if err := st.MigrateTo(ctx, int32(v)); err != nil {
			return err
		}
		add("migration "+names[v-1], time.Since(start).Round(time.Millisecond).String())
	}
	table(w, fmt.Sprintf("upgrading from version %d: %d commands, %d device messages, %d history rows of each", upgradeFrom, n, n, n), rows)
	return nil
}

// migrationNames are the migrations' file names, in their order (version 1
// first).
func migrationNames() ([]string, error) {
	entries, err := fs.ReadDir(migrations.FS, ".")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sql") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for i, name := range names {
		if v, _ := strconv.Atoi(strings.SplitN(name, "_", 2)[0]); v != i+1 {
			return nil, fmt.Errorf("migration %s: want version %d there", name, i+1)
		}
	}
	return names, nil
}
