package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// historyCase is one partitioned history, for the tests that hold for every
// one: upkeep keeps them alike.
type historyCase struct {
	name, table string
	// ids are its id columns; idsOf gives their values from one text
	// expression.
	ids   string
	idsOf func(expr string) string
	// payload is the column that stores the payload.
	payload string
}

var historyCases = []historyCase{
	{name: "command", table: "device_command_events", ids: "command_id", idsOf: func(e string) string { return e }, payload: "stored_payload"},
	{name: "message", table: "device_message_events", ids: "device_id, message_id", idsOf: func(e string) string { return "'dev-1', " + e }, payload: "stored_payload"},
}

var commandHistory = historyCases[0]

func (h historyCase) defaultPartition() string { return h.table + "_default" }

// partition is the name of the partition that begins on from's day.
func (h historyCase) partition(from time.Time) string { return h.table + "_" + from.Format("20060102") }

// insert writes rows into the history with SQL (a bulk import), each with
// the id and event time of the SQL expressions id and at, over the rest of
// the statement, from (a FROM clause, or nothing for one row).
func (h historyCase) insert(t *testing.T, st *store.Store, id, at, from string, args ...any) {
	t.Helper()
	_, err := st.Pool().Exec(context.Background(), fmt.Sprintf(`INSERT INTO %s (%s, event_key, status, event_time, source, %s)
		SELECT %s, sha256(convert_to(%s, 'UTF8')), 'SENT', %s, 'import', '{}' %s`, h.table, h.ids, h.payload, h.idsOf(id), id, at, from), args...)
	require.NoError(t, err)
}

// row writes one row dated at.
func (h historyCase) row(t *testing.T, st *store.Store, id string, at time.Time) {
	t.Helper()
	h.insert(t, st, "$1::text", "$2::timestamptz", "", id, at)
}

// partitionsOf lists the command history's partitions, by name.
func partitionsOf(t *testing.T, st *store.Store) []string {
	t.Helper()
	return commandHistory.partitionsOf(t, st)
}

// partitionsOf lists the history's partitions, by name.
func (h historyCase) partitionsOf(t *testing.T, st *store.Store) []string {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `
		SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = $1::regclass ORDER BY 1`, h.table)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

func historyRow(t *testing.T, st *store.Store, id string, at time.Time) {
	t.Helper()
	commandHistory.row(t, st, id, at)
}

func countIn(t *testing.T, st *store.Store, table string) int {
	t.Helper()
	return count(t, st, `SELECT count(*) FROM `+table)
}

// Upkeep makes partitions back over the retention window and ahead of now,
// empties the default partition into partitions made for its rows, and
// drops what retention no longer keeps, without a DELETE: for every
// history, in one run.
func TestMaintainPartitions(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2027, 3, 10, 12, 0, 0, 0, time.UTC) // far from the days migration 005 made

	// Rows written straight into the tables (a bulk import), before any
	// partition covers their days: they land in the default partitions.
	for _, h := range historyCases {
		h.row(t, st, "imported-old", now.AddDate(0, 0, -40))
		h.row(t, st, "imported-recent", now.AddDate(0, 0, -2))
		h.row(t, st, "imported-future", now.AddDate(0, 0, 20))
		require.Equal(t, 3, countIn(t, st, h.defaultPartition()))
	}

	p := store.Partitioning{Size: store.Daily, Ahead: 3, Retention: 30 * 24 * time.Hour}
	res, err := st.MaintainPartitions(ctx, p, now)
	require.NoError(t, err)
	require.Equal(t, int64(len(historyCases)), res.Deleted)
	require.Equal(t, int64(2*len(historyCases)), res.Moved)
	for _, h := range historyCases {
		r := res.Histories[h.name]
		require.Equal(t, int64(1), r.Deleted, "%s: the row older than retention is gone", h.name)
		require.Equal(t, int64(2), r.Moved, h.name)
		require.Positive(t, r.Created, h.name)
		require.Zero(t, countIn(t, st, h.defaultPartition()), "%s: the default partition is empty", h.name)
		names := h.partitionsOf(t, st)
		for _, day := range []string{"20270208", "20270310", "20270313", "20270330"} {
			require.Contains(t, names, h.table+"_"+day)
		}
		require.NotContains(t, names, h.table+"_20270314", "three partitions ahead, no more")
		require.Equal(t, 2, countIn(t, st, h.table))
	}
	require.Equal(t, res.Created, res.Histories["command"].Created+res.Histories["message"].Created)

	// A second run has nothing to do.
	res, err = st.MaintainPartitions(ctx, p, now)
	require.NoError(t, err)
	require.Equal(t, store.PartitionResult{}, res)

	// Ten days later the oldest ten partitions are dropped whole: the row
	// of two days before is in one of them, the future one is kept.
	res, err = st.MaintainPartitions(ctx, p, now.AddDate(0, 0, 30))
	require.NoError(t, err)
	require.Zero(t, res.Deleted, "retention deletes nothing row by row")
	for _, h := range historyCases {
		require.GreaterOrEqual(t, res.Histories[h.name].Dropped, 30, h.name)
		require.Equal(t, 1, count(t, st, `SELECT count(*) FROM `+h.table+` WHERE event_time > $1`, now), h.name)
		require.Zero(t, count(t, st, `SELECT count(*) FROM `+h.table+` WHERE event_time < $1`, now), h.name)
	}
}

// Partition size can be changed on a live table: new partitions fit around
// the existing ones.
func TestPartitionSizeChange(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2027, 5, 5, 12, 0, 0, 0, time.UTC) // a Wednesday
	_, err := st.MaintainPartitions(ctx, store.Partitioning{Size: store.Daily, Ahead: 1}, now)
	require.NoError(t, err)
	_, err = st.MaintainPartitions(ctx, store.Partitioning{Size: store.Weekly, Ahead: 2}, now)
	require.NoError(t, err)
	names := partitionsOf(t, st)
	require.Contains(t, names, "device_command_events_20270507", "the rest of this week, after the daily ones")
	require.Contains(t, names, "device_command_events_20270510", "next Monday's week")
	historyRow(t, st, "w", time.Date(2027, 5, 8, 1, 0, 0, 0, time.UTC))
	require.Zero(t, countIn(t, st, "device_command_events_default"))
}

// A redelivered notification adds no second history row, whichever day it
// is redelivered on: the partition key (the event time) is part of its
// content, so both copies meet in one partition, and its unique key. That
// holds when a partition was made for it in between, and for a legacy
// callback timed by its receipt, whose copies fall on different days.
func TestRedeliveryAcrossPartitions(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	at := time.Date(2027, 1, 31, 23, 59, 59, 900000000, time.UTC) // the last moment of a day
	v5 := func() ingest.Item {
		n := notification.Notification{CommandID: "c1", Status: notification.Delivered, EventTime: at,
			DeviceID: "d1", Payload: []byte(`{"a":1}`)}
		return ingest.Item{Source: "amqp:q", Record: &n}
	}
	apply(t, st, []ingest.Item{v5()}) // no partition for that day yet: the default one
	require.Equal(t, 1, countIn(t, st, "device_command_events_default"))
	_, err := st.MaintainPartitions(ctx, store.Partitioning{Size: store.Daily, Ahead: 1, Back: 7 * 24 * time.Hour}, at.AddDate(0, 0, 1))
	require.NoError(t, err)
	require.Equal(t, 1, countIn(t, st, "device_command_events_20270131"), "moved into its day's partition")
	apply(t, st, []ingest.Item{v5()}) // redelivered the next day
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM device_command_events WHERE command_id = 'c1'`))

	legacy := func(received time.Time) ingest.Item {
		body := []byte(`{"deviceId":"d","commandId":"legacy-2","result":{"resultCode":"DELIVERED"}}`)
		return ingest.Classify(body, "http", received, ingest.Limits{MaxBodyBytes: 4096})
	}
	first := at.Add(-time.Minute)
	apply(t, st, []ingest.Item{legacy(first)})
	apply(t, st, []ingest.Item{legacy(first.Add(24 * time.Hour))}) // another day, another partition
	apply(t, st, []ingest.Item{legacy(first.Add(48 * time.Hour)), legacy(first.Add(49 * time.Hour))})
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM device_command_events WHERE command_id = 'legacy-2'`))
	var last time.Time
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT last_event_time FROM device_commands WHERE command_id = 'legacy-2'`).Scan(&last))
	require.Equal(t, first.Truncate(time.Microsecond), last.UTC(), "it keeps the time of its first receipt")
}

// The rollup behind product_daily_outcomes is recomputed for the last days
// only; older days stay as they were, even once their commands are deleted.
func TestRefreshRollup(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2027, 2, 10, 12, 0, 0, 0, time.UTC)
	exec := func(q string, args ...any) {
		t.Helper()
		_, err := st.Pool().Exec(ctx, q, args...)
		require.NoError(t, err)
	}
	exec(`INSERT INTO device_commands (command_id, product_id, status, status_rank, created_time, last_event_time, last_event_key)
		SELECT 'c' || g, 'p', CASE WHEN g % 4 = 0 THEN 'FAILED' ELSE 'SUCCESSFUL' END, 3, $1, $1, '\\x00'
		FROM generate_series(1, 100) g`, now.Add(-time.Hour))
	exec(`INSERT INTO device_commands (command_id, product_id, status, status_rank, created_time, last_event_time, last_event_key)
		VALUES ('old', 'p', 'TIMEOUT', 3, $1, $1, '\\x00')`, now.AddDate(0, 0, -5))
	require.NoError(t, st.RefreshRollup(ctx, 30, now))
	var commands, failed int
	var rate float64
	row := func(day time.Time) {
		t.Helper()
		require.NoError(t, st.Pool().QueryRow(ctx, `SELECT commands, failed, failure_rate FROM product_daily_outcomes
			WHERE product_id = 'p' AND day = $1`, day).Scan(&commands, &failed, &rate))
	}
	row(time.Date(2027, 2, 10, 0, 0, 0, 0, time.UTC))
	require.Equal(t, []int{100, 25}, []int{commands, failed})
	require.InDelta(t, 0.25, rate, 1e-9)

	exec(`DELETE FROM device_commands WHERE command_id = 'old'`)
	exec(`UPDATE device_commands SET status = 'FAILED' WHERE command_id = 'c1'`)
	require.NoError(t, st.RefreshRollup(ctx, 3, now))
	row(time.Date(2027, 2, 10, 0, 0, 0, 0, time.UTC))
	require.Equal(t, []int{100, 26}, []int{commands, failed}, "today is recomputed")
	row(time.Date(2027, 2, 5, 0, 0, 0, 0, time.UTC))
	require.Equal(t, 1, commands, "a final day stays, though its command was deleted")

	// The hourly rollup (the console's sliding windows) comes from the same
	// scan, and keeps eight days.
	hourly := func(hour time.Time) (n int) {
		t.Helper()
		require.NoError(t, st.Pool().QueryRow(ctx, `SELECT coalesce(sum(commands), 0) FROM command_outcomes_hourly
			WHERE product_id = 'p' AND hour = $1`, hour).Scan(&n))
		return n
	}
	require.Equal(t, 100, hourly(now.Add(-time.Hour)))
	require.Equal(t, 1, hourly(now.AddDate(0, 0, -5)), "an hour older than the days refreshed stays")
	require.NoError(t, st.RefreshRollup(ctx, 3, now.AddDate(0, 0, 4)))
	require.Zero(t, hourly(now.AddDate(0, 0, -5)), "hours older than eight days go")
	require.Equal(t, 100, hourly(now.Add(-time.Hour)))
	row(time.Date(2027, 2, 5, 0, 0, 0, 0, time.UTC))
	require.Equal(t, 1, commands, "the daily rollup keeps its days")
}

// An existing database migrates in place: the history of version 4 (one
// table, jsonb payloads) moves into the partitioned table, in partitions for
// its days; views and the rollup answer from it.
func TestMigrateHistoryInPlace(t *testing.T) {
	t.Parallel()
	st, _, _ := testenv.EmptySchema(t)
	ctx := context.Background()
	require.NoError(t, st.MigrateTo(ctx, 4))
	exec := func(q string, args ...any) {
		t.Helper()
		_, err := st.Pool().Exec(ctx, q, args...)
		require.NoError(t, err)
	}
	exec(`INSERT INTO device_command_events (command_id, event_key, status, event_time, source, payload, received_at)
		SELECT 'c' || (g % 50), sha256(g::text::bytea), 'SENT', $1::timestamptz + g * interval '1 hour', 'amqp:q', jsonb_build_object('n', g), now()
		FROM generate_series(1, 240) g`, time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
	exec(`INSERT INTO device_commands (command_id, product_id, status, status_rank, created_time, last_event_time, last_event_key)
		VALUES ('c1', 'p', 'SUCCESSFUL', 3, '2026-06-01T01:00:00Z', '2026-06-01T02:00:00Z', '\\x00')`)
	require.NoError(t, st.Migrate(ctx))

	require.Equal(t, 240, count(t, st, `SELECT count(*) FROM device_command_events`))
	require.Zero(t, countIn(t, st, "device_command_events_default"))
	names := partitionsOf(t, st)
	for _, day := range []string{"20260601", "20260605", "20260611"} {
		require.Contains(t, names, "device_command_events_"+day)
	}
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM command_events WHERE payload::jsonb ->> 'n' = '7'`))
	require.Equal(t, 5, count(t, st, `SELECT count(*) FROM command_timeline WHERE command_id = 'c1'`))
	require.Equal(t, 1, count(t, st, `SELECT commands FROM product_daily_outcomes WHERE day = '2026-06-01'`))
}

// Two writers apply copies of one legacy callback (timed by its receipt) at
// once, the second received later; then a notification whose time falls
// between the two. The row and the history must be what the same copies
// give one after the other: the first receipt's time, once.
func TestConcurrentReceiptTimedCopies(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	lim := ingest.Limits{MaxBodyBytes: 1 << 20}
	t1 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	t2, between := t1.Add(time.Minute), t1.Add(30*time.Second)
	legacy := func(id string, received time.Time) ingest.Item {
		return ingest.Classify([]byte(`{"deviceId":"d1","commandId":"`+id+`","result":{"resultCode":"FAILED"}}`), "http", received, lim)
	}
	v5 := func(id string) ingest.Item {
		n := notification.Notification{CommandID: id, Status: notification.Successful, EventTime: between, Payload: []byte(`{}`)}
		return ingest.Item{Source: "amqp:q", Record: &n}
	}
	// One after the other.
	apply(t, st, []ingest.Item{legacy("seq", t1)})
	apply(t, st, []ingest.Item{v5("seq")})
	apply(t, st, []ingest.Item{legacy("seq", t2)})

	// At once: the first writer's transaction is open when the second
	// writes.
	tx, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	b := &pgx.Batch{}
	store.QueueWrites(b, []ingest.Item{legacy("race", t1)}, nil)
	require.NoError(t, tx.SendBatch(ctx, b).Close())
	done := make(chan error, 1)
	go func() {
		_, err := st.Apply(ctx, []ingest.Item{legacy("race", t2)})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // the second writer waits for the first
	require.NoError(t, tx.Commit(ctx))
	require.NoError(t, <-done)
	apply(t, st, []ingest.Item{v5("race")})

	seq, race := readRow(t, st, "seq"), readRow(t, st, "race")
	require.Equal(t, "SUCCESSFUL", race.Status, "the legacy FAILED, first received before it, does not win")
	require.Equal(t, seq.LastEventTime, race.LastEventTime)
	require.Equal(t, seq.Status, race.Status)
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM device_command_events WHERE command_id = 'race' AND status = 'FAILED'`))
	var first time.Time
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT event_time FROM device_command_events
		WHERE command_id = 'race' AND status = 'FAILED'`).Scan(&first))
	require.Equal(t, t1, first.UTC())
}

// A batch without legacy callbacks does not read, and so does not lock,
// every partition of the history: its statements touch the partitions their
// rows go to.
func TestBatchLocksFewPartitions(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2027, 6, 1, 12, 0, 0, 0, time.UTC)
	_, err := st.MaintainPartitions(ctx, store.Partitioning{Size: store.Daily, Ahead: 1, Back: 200 * 24 * time.Hour}, now)
	require.NoError(t, err)
	n := notification.Notification{CommandID: "one", Status: notification.Sent, EventTime: now, Payload: []byte(`{}`)}
	for range 6 { // past pgx's and PostgreSQL's switch to a generic plan
		tx, err := st.Pool().Begin(ctx)
		require.NoError(t, err)
		b := &pgx.Batch{}
		store.QueueWrites(b, []ingest.Item{{Source: "q", Record: &n}}, nil)
		require.NoError(t, tx.SendBatch(ctx, b).Close())
		var locks int
		require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'`).Scan(&locks))
		require.NoError(t, tx.Rollback(ctx))
		require.Less(t, locks, 40, "a batch locked %d relations with 200 partitions", locks)
	}
}

// Upkeep's DDL waits for a lock only a moment at a time: a long reader of the
// history (a dashboard, pg_dump) makes upkeep leave what it holds for later,
// rather than make every writer queue behind it.
func TestUpkeepYieldsToReaders(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2027, 8, 1, 12, 0, 0, 0, time.UTC)
	p := store.Partitioning{Size: store.Daily, Ahead: 1, Back: 5 * 24 * time.Hour}
	_, err := st.MaintainPartitions(ctx, p, now)
	require.NoError(t, err)
	reader, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = reader.Rollback(ctx) }()
	require.Equal(t, 0, func() int {
		var n int
		require.NoError(t, reader.QueryRow(ctx, `SELECT count(*) FROM device_command_events`).Scan(&n))
		return n
	}())

	upkeep := make(chan store.PartitionResult, 1)
	go func() {
		p.Retention = 2 * 24 * time.Hour // drops partitions the reader holds
		res, err := st.MaintainPartitions(ctx, p, now)
		assert.NoError(t, err)
		upkeep <- res
	}()
	time.Sleep(100 * time.Millisecond)
	n := notification.Notification{CommandID: "w", Status: notification.Sent, EventTime: now, Payload: []byte(`{}`)}
	start := time.Now()
	apply(t, st, []ingest.Item{{Source: "q", Record: &n}})
	require.Less(t, time.Since(start), 2*time.Second, "a writer waited behind upkeep")
	res := <-upkeep
	require.NotEmpty(t, res.Later, "upkeep left the partitions the reader holds for later")
	require.Zero(t, res.Histories["command"].Dropped)
}

// unattachedMarks says whether a table carries the marks of one being
// filled: its bounds' CHECK constraint and the comment.
func unattachedMarks(t *testing.T, st *store.Store, table string) (check, comment bool) {
	t.Helper()
	check = count(t, st, `SELECT count(*) FROM pg_constraint WHERE conrelid = $1::regclass AND conname = 'cmdtrack_partition_bounds'`, table) > 0
	comment = count(t, st, `SELECT count(*) FROM pg_class WHERE oid = $1::regclass AND obj_description(oid, 'pg_class') IS NOT NULL`, table) > 0
	return check, comment
}

var errCrash = errors.New("crashed")

// A run that stops between two batches of a move (a crash, a deploy) leaves
// every row in one place: the default partition, or the table being filled
// for it. The next run finishes the job; a copy of a moved row that came
// into the default partition meanwhile is not kept twice. For each history.
func TestPartitionMoveResumesAfterCrash(t *testing.T) {
	t.Parallel()
	for _, h := range historyCases {
		t.Run(h.name, func(t *testing.T) {
			t.Parallel()
			st := setup(t)
			ctx := context.Background()
			now := time.Date(2028, 7, 1, 12, 0, 0, 0, time.UTC)
			p := store.Partitioning{Size: store.Daily, Ahead: 1}
			_, err := st.MaintainPartitions(ctx, p, now)
			require.NoError(t, err)
			dayA, dayB := now.AddDate(0, 0, 3).Truncate(24*time.Hour), now.AddDate(0, 0, 4).Truncate(24*time.Hour)
			const loaded = 20_000 // the two days' rows, interleaved on the default partition's pages
			h.insert(t, st, `'bulk-' || g`, `CASE WHEN g % 2 = 0 THEN $1::timestamptz ELSE $2::timestamptz END + g * interval '1 s'`,
				`FROM generate_series(1, $3::int) g`, dayA, dayB, loaded)
			tableA, tableB := h.partition(dayA), h.partition(dayB)

			p.Ahead = 5
			batches := 0
			crashing := store.WithMoveBatches(ctx, 8, func(batch int) error {
				batches = batch
				if batch == 3 {
					return errCrash
				}
				return nil
			})
			res, err := st.MaintainPartitions(crashing, p, now)
			require.ErrorIs(t, err, errCrash)
			require.Equal(t, 3, batches)
			require.Zero(t, res.Histories[h.name].Created, "nothing is attached before every row is moved")
			inDefault, inA, inB := countIn(t, st, h.defaultPartition()), countIn(t, st, tableA), countIn(t, st, tableB)
			t.Logf("after the crash: %d rows in the default partition, %d and %d in the tables being filled", inDefault, inA, inB)
			require.Positive(t, inA)
			require.Positive(t, inB)
			require.Positive(t, inDefault)
			require.Equal(t, loaded, inDefault+inA+inB, "every row is in one place")
			require.Equal(t, int64(inA+inB), res.Histories[h.name].Moved)
			require.NotContains(t, h.partitionsOf(t, st), tableA)
			check, comment := unattachedMarks(t, st, tableA)
			require.True(t, check && comment, "the table being filled is marked")

			// A copy of a moved row comes again: no partition takes it yet.
			_, err = st.Pool().Exec(ctx, `INSERT INTO `+h.table+` SELECT * FROM `+tableA+` LIMIT 1`)
			require.NoError(t, err)
			require.Equal(t, inDefault+1, countIn(t, st, h.defaultPartition()))

			res, err = st.MaintainPartitions(ctx, p, now)
			require.NoError(t, err)
			require.Empty(t, res.Later)
			require.Zero(t, countIn(t, st, h.defaultPartition()))
			require.Subset(t, h.partitionsOf(t, st), []string{tableA, tableB})
			require.Equal(t, loaded, countIn(t, st, h.table))
			require.Equal(t, loaded, count(t, st, `SELECT count(DISTINCT (`+h.ids+`, event_key, event_time)) FROM `+h.table))
			require.Equal(t, loaded/2, countIn(t, st, tableA))
			check, comment = unattachedMarks(t, st, tableA)
			require.False(t, check || comment, "an attached partition keeps no marks")

			res, err = st.MaintainPartitions(ctx, p, now)
			require.NoError(t, err)
			require.Equal(t, store.PartitionResult{}, res, "nothing left to do")
		})
	}
}

// A table left half filled whose range retention no longer keeps is
// dropped, with the rest of its rows in the default partition.
func TestUnattachedPartitionExpires(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2028, 8, 1, 12, 0, 0, 0, time.UTC)
	p := store.Partitioning{Size: store.Daily, Ahead: 1, Back: 3 * 24 * time.Hour}
	_, err := st.MaintainPartitions(ctx, p, now)
	require.NoError(t, err)
	old := now.AddDate(0, 0, -10).Truncate(24 * time.Hour)
	_, err = st.Pool().Exec(ctx, `INSERT INTO device_command_events (command_id, event_key, status, event_time, source, stored_payload)
		SELECT 'old-' || g, sha256(g::text::bytea), 'SENT', $1::timestamptz + g * interval '1 s', 'import', '{}'
		FROM generate_series(1, 3000) g`, old)
	require.NoError(t, err)
	p.Back = 20 * 24 * time.Hour
	_, err = st.MaintainPartitions(store.WithMoveBatches(ctx, 8, func(int) error { return errCrash }), p, now)
	require.ErrorIs(t, err, errCrash)
	table := "device_command_events_" + old.Format("20060102")
	left := countIn(t, st, table)
	require.Positive(t, left)

	p.Retention = 5 * 24 * time.Hour
	res, err := st.MaintainPartitions(ctx, p, now)
	require.NoError(t, err)
	require.Equal(t, int64(3000), res.Deleted, "the table's rows and the default partition's")
	require.Zero(t, count(t, st, `SELECT count(*) FROM pg_class WHERE relname = $1 AND relnamespace = current_schema()::regnamespace`, table))
	require.Zero(t, countIn(t, st, "device_command_events_default"))
}

// TestPartitionStopAfterFillStillAttaches: a run stopped (the worker's
// SIGTERM) once a new partition is filled must still attach it. Its rows
// have left the default partition by then, and until the ATTACH no reader
// of the history sees them: TestSeveralQueues found every history row
// missing after a worker stopped right after its upkeep's fill.
func TestPartitionStopAfterFillStillAttaches(t *testing.T) {
	t.Parallel()
	for _, h := range historyCases {
		t.Run(h.name, func(t *testing.T) {
			t.Parallel()
			st := setup(t)
			now := time.Date(2028, 7, 1, 12, 0, 0, 0, time.UTC)
			p := store.Partitioning{Size: store.Daily, Ahead: 1}
			_, err := st.MaintainPartitions(context.Background(), p, now)
			require.NoError(t, err)
			day := now.AddDate(0, 0, 3).Truncate(24 * time.Hour)
			const loaded = 500
			h.insert(t, st, `'stop-' || g`, `$1::timestamptz + g * interval '1 s'`, `FROM generate_series(1, $2::int) g`, day, loaded)

			p.Ahead = 5
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			// One batch moves every row (far more pages than the rows
			// fill); the stop comes as it commits.
			stopping := store.WithMoveBatches(ctx, 1<<20, func(int) error { stop(); return nil })
			_, _ = st.MaintainPartitions(stopping, p, now)
			require.Equal(t, loaded, countIn(t, st, h.table), "every row is still in the history, for its readers")
			require.Contains(t, h.partitionsOf(t, st), h.partition(day))
		})
	}
}
