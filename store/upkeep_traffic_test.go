package store_test

import (
	"context"
	"fmt"
	stdstrings "strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// A row PostgreSQL cannot route is refused with 23514, like a bad value, but
// it is the schema's doing: a writer whose statement was routed by the
// partition layout from before a concurrent ATTACH ("violates partition
// constraint"), or a row no partition takes. Such a write is retried, never
// dead-lettered.
func TestPartitionRoutingErrorIsNotTheMessagesFault(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2027, 9, 1, 12, 0, 0, 0, time.UTC)
	_, err := st.MaintainPartitions(ctx, store.Partitioning{Size: store.Daily, Ahead: 1}, now)
	require.NoError(t, err)
	later := now.AddDate(0, 0, 10) // no partition yet

	// The race, as upkeep's ATTACH used to run it: the writer holds the
	// history open while a partition is attached without waiting for it.
	writer, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = writer.Rollback(ctx) }()
	insert := `INSERT INTO device_command_events (command_id, event_key, status, event_time, source, stored_payload)
		VALUES ($1, '\x00', 'SENT', $2, 'q', '{}')`
	_, err = writer.Exec(ctx, insert, "first", now)
	require.NoError(t, err)
	_, err = st.Pool().Exec(ctx, `CREATE TABLE device_command_events_x (LIKE device_command_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`)
	require.NoError(t, err)
	_, err = st.Pool().Exec(ctx, fmt.Sprintf(`ALTER TABLE device_command_events ATTACH PARTITION device_command_events_x
		FOR VALUES FROM ('%s') TO ('%s')`, later.Format(time.RFC3339), later.AddDate(0, 0, 1).Format(time.RFC3339)))
	require.NoError(t, err)
	_, err = writer.Exec(ctx, insert, "second", later)
	if err != nil { // unless the writer's session caught up with the new layout first
		require.Contains(t, err.Error(), "violates partition constraint")
		require.Equal(t, store.PartitionError, store.ClassifyError(err), "%v", err)
	}
	require.NoError(t, writer.Rollback(ctx))

	// A row no partition takes, through the path every HTTP push and
	// reconcile answer takes: a one-item batch.
	_, err = st.Pool().Exec(ctx, `ALTER TABLE device_command_events DETACH PARTITION device_command_events_default`)
	require.NoError(t, err)
	n := notification.Notification{CommandID: "stray", Status: notification.Sent, EventTime: now.AddDate(0, 0, 40), Payload: []byte(`{}`)}
	res, err := st.Apply(ctx, []ingest.Item{{Source: "http", Record: &n}})
	require.Error(t, err, "not a dead letter: %+v", res)
	require.Equal(t, store.PartitionError, store.ClassifyError(err), "%v", err)
	require.False(t, store.IsDataError(err))
	require.Zero(t, count(t, st, `SELECT count(*) FROM dead_letters`))
}

// Upkeep makes partitions for periods whose notifications keep arriving:
// neither the writers nor upkeep fail, nothing is dead-lettered, and every
// row ends in its period's partition, in every history.
func TestPartitionsMadeUnderTraffic(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2027, 10, 1, 12, 0, 0, 0, time.UTC)
	const days = 12

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var written atomic.Int64
	// Of each history, by its index in historyCases.
	var writtenTo [2]atomic.Int64
	writeErrs := make(chan error, 8)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// One-item batches, as an HTTP push or a reconcile answer
				// writes, spread over the days upkeep makes: commands and
				// messages by turns.
				id, at := fmt.Sprintf("w%d-%d", w, i), now.Add(time.Duration(i%(days*24))*time.Hour)
				var record ingest.Record = &notification.Notification{CommandID: id, Status: notification.Sent, EventTime: at, Payload: []byte(`{}`)}
				if i%2 == 1 {
					record = &notification.Message{DeviceID: "d", MessageID: id, Status: notification.MessagePending,
						EventTime: at, At: at, Payload: []byte(`{}`)}
				}
				res, err := st.Apply(ctx, []ingest.Item{{Source: "http", Record: record}})
				if err == nil && res[0].Outcome == ingest.DeadLettered {
					err = fmt.Errorf("dead-lettered: %s", res[0].DeadLetter.Reason)
				}
				if err != nil {
					writeErrs <- err
					return
				}
				written.Add(1)
				writtenTo[i%2].Add(1)
			}
		}()
	}
	// Writers are busy before upkeep starts, and keep on while it runs.
	require.Eventually(t, func() bool { return written.Load() > 50 }, 30*time.Second, 5*time.Millisecond)
	var upkeepErr error
	var res store.PartitionResult
	for ahead := 1; ahead <= days; ahead++ {
		res, upkeepErr = st.MaintainPartitions(ctx, store.Partitioning{Size: store.Daily, Ahead: ahead}, now)
		if upkeepErr != nil {
			break
		}
	}
	close(stop)
	wg.Wait()
	close(writeErrs)
	for err := range writeErrs {
		require.NoError(t, err, "a writer failed while upkeep made partitions")
	}
	require.NoError(t, upkeepErr)
	require.Empty(t, res.Later)

	// Whatever landed in the default partitions meanwhile is moved by the next run.
	_, err := st.MaintainPartitions(ctx, store.Partitioning{Size: store.Daily, Ahead: days}, now)
	require.NoError(t, err)
	for i, h := range historyCases {
		require.Zero(t, countIn(t, st, h.defaultPartition()), h.name)
		require.Equal(t, int(writtenTo[i].Load()), countIn(t, st, h.table), h.name)
		for d := range days {
			require.Contains(t, h.partitionsOf(t, st), h.partition(now.AddDate(0, 0, d)))
		}
	}
	require.Zero(t, count(t, st, `SELECT count(*) FROM dead_letters`))
}

// Partition upkeep waits for a writer's open transaction rather than change
// the layout under it; the writer's next statement succeeds.
func TestPartitionWaitsForWriters(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2027, 11, 1, 12, 0, 0, 0, time.UTC)
	p := store.Partitioning{Size: store.Daily, Ahead: 1}
	_, err := st.MaintainPartitions(ctx, p, now)
	require.NoError(t, err)

	writer, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = writer.Rollback(ctx) }()
	later := now.AddDate(0, 0, 3) // no partition yet: the default one
	n := func(id string, at time.Time) []ingest.Item {
		n := notification.Notification{CommandID: id, Status: notification.Sent, EventTime: at, Payload: []byte(`{}`)}
		return []ingest.Item{{Source: "http", Record: &n}}
	}
	b := &pgx.Batch{}
	store.QueueWrites(b, n("first", now), nil)
	require.NoError(t, writer.SendBatch(ctx, b).Close())

	type result struct {
		res store.PartitionResult
		err error
	}
	upkeep := make(chan result, 1)
	go func() {
		res, err := st.MaintainPartitions(ctx, store.Partitioning{Size: store.Daily, Ahead: 4}, now)
		upkeep <- result{res, err}
	}()
	// Until upkeep waits for the writer (or, as it did, went ahead).
	var done *result
	require.Eventually(t, func() bool {
		select {
		case r := <-upkeep:
			done = &r
			return true
		default:
		}
		return count(t, st, `SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'device_command_events'::regclass`) > 0
	}, 30*time.Second, 2*time.Millisecond)

	b = &pgx.Batch{}
	store.QueueWrites(b, n("second", later), nil)
	require.NoError(t, writer.SendBatch(ctx, b).Close(), "the writer's statement after upkeep began")
	require.NoError(t, writer.Commit(ctx))
	if done == nil {
		r := <-upkeep
		done = &r
	}
	require.NoError(t, done.err)
	_, err = st.MaintainPartitions(ctx, store.Partitioning{Size: store.Daily, Ahead: 4}, now)
	require.NoError(t, err)
	require.Zero(t, countIn(t, st, "device_command_events_default"))
	require.Equal(t, 2, count(t, st, `SELECT count(*) FROM device_command_events`))
}

// Rows dated long ago (a device whose clock restarted at 1970) go into one
// partition per year, not one per period, when history is kept forever.
func TestOldEventTimesCoarsePartitions(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2027, 12, 1, 12, 0, 0, 0, time.UTC)
	epoch := time.Unix(0, 0).UTC()
	for d := range 40 { // a clock counting up from 1970 for 40 days
		historyRow(t, st, fmt.Sprintf("clock-%d", d), epoch.Add(time.Duration(d)*24*time.Hour+time.Hour))
	}
	historyRow(t, st, "y2k", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	historyRow(t, st, "last-month", now.AddDate(0, -1, 0))
	before := len(partitionsOf(t, st))
	p := store.Partitioning{Size: store.Daily, Ahead: 1, Back: 7 * 24 * time.Hour}
	res, err := st.MaintainPartitions(ctx, p, now)
	require.NoError(t, err)
	require.Zero(t, countIn(t, st, "device_command_events_default"))
	require.Equal(t, int64(42), res.Moved)
	// The window (7 days back, today, one ahead) and one partition per year of old rows.
	require.LessOrEqual(t, len(partitionsOf(t, st))-before, 9+3, "created %d partitions", res.Created)
	names := partitionsOf(t, st)
	require.Contains(t, names, "device_command_events_19700101")
	require.Contains(t, names, "device_command_events_20000101")
	require.Equal(t, 40, countIn(t, st, "device_command_events_19700101"))

	// Nothing more to do next time.
	res, err = st.MaintainPartitions(ctx, p, now.Add(time.Hour))
	require.NoError(t, err)
	require.Zero(t, res.Created)
}

// expiredPartitions counts the history's daily partitions that end by cutoff.
func expiredPartitions(t *testing.T, st *store.Store, h historyCase, cutoff time.Time) int {
	t.Helper()
	expired := 0
	for _, name := range h.partitionsOf(t, st) {
		from, err := time.Parse("20060102", stdstrings.TrimPrefix(name, h.table+"_"))
		if err == nil && !from.AddDate(0, 0, 1).After(cutoff) {
			expired++
		}
	}
	return expired
}

// Retention drops every expired partition it can, oldest first, and leaves
// a busy one (an analyst's long query holds it) for later, without failing
// the run; once the reader lets go, the next run drops it.
func TestRetentionSkipsBusyPartition(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2028, 1, 31, 12, 0, 0, 0, time.UTC)
	p := store.Partitioning{Size: store.Daily, Ahead: 1, Back: 30 * 24 * time.Hour}
	_, err := st.MaintainPartitions(ctx, p, now)
	require.NoError(t, err)
	for d := range 30 {
		historyRow(t, st, fmt.Sprintf("h%d", d), now.AddDate(0, 0, -d))
	}
	oldest := "device_command_events_" + now.AddDate(0, 0, -29).Format("20060102")
	middle := "device_command_events_" + now.AddDate(0, 0, -25).Format("20060102")
	reader, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = reader.Rollback(ctx) }()
	for _, name := range []string{oldest, middle} {
		_, err = reader.Exec(ctx, `SELECT count(*) FROM `+name)
		require.NoError(t, err)
	}

	p.Retention = 20 * 24 * time.Hour
	expired := expiredPartitions(t, st, commandHistory, now.Add(-p.Retention))
	expiredMessages := expiredPartitions(t, st, historyCases[1], now.Add(-p.Retention))
	res, err := st.MaintainPartitions(ctx, p, now)
	require.NoError(t, err, "a busy partition is left for later, not a failure")
	require.Equal(t, []string{oldest, middle}, res.Later)
	require.Equal(t, expired-2, res.Histories["command"].Dropped, "the other expired partitions are dropped")
	require.Equal(t, expiredMessages, res.Histories["message"].Dropped, "the other history's, all of them")
	require.Zero(t, expiredPartitions(t, st, historyCases[1], now.Add(-p.Retention)))
	names := partitionsOf(t, st)
	require.Contains(t, names, oldest)
	require.NotContains(t, names, "device_command_events_"+now.AddDate(0, 0, -21).Format("20060102"))

	require.NoError(t, reader.Rollback(ctx))
	res, err = st.MaintainPartitions(ctx, p, now)
	require.NoError(t, err)
	require.Empty(t, res.Later)
	require.Equal(t, 2, res.Dropped)
	require.NotContains(t, partitionsOf(t, st), oldest)
}

// Making a partition locks the history itself, not its partitions: a
// session holding one of them the way autovacuum does (SHARE UPDATE
// EXCLUSIVE, which a lock on the whole tree would wait for) does not delay it.
func TestPartitionMadeBesideVacuum(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2028, 3, 1, 12, 0, 0, 0, time.UTC)
	_, err := st.MaintainPartitions(ctx, store.Partitioning{Size: store.Daily, Ahead: 1}, now)
	require.NoError(t, err)
	vacuum, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = vacuum.Rollback(ctx) }()
	_, err = vacuum.Exec(ctx, `LOCK TABLE device_command_events_`+now.Format("20060102")+` IN SHARE UPDATE EXCLUSIVE MODE`)
	require.NoError(t, err)
	res, err := st.MaintainPartitions(ctx, store.Partitioning{Size: store.Daily, Ahead: 3}, now)
	require.NoError(t, err)
	require.Empty(t, res.Later)
	require.Equal(t, 2, res.Histories["command"].Created)
}

// One period whose partition cannot be made does not keep upkeep from the
// periods after it; the failure is returned, naming it.
func TestPartitionFailureDoesNotStopTheRun(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2028, 4, 1, 12, 0, 0, 0, time.UTC)
	_, err := st.MaintainPartitions(ctx, store.Partitioning{Size: store.Daily, Ahead: 1}, now)
	require.NoError(t, err)
	// A table of the name upkeep would give tomorrow's partition, not attached.
	blocked := "device_command_events_" + now.AddDate(0, 0, 2).Format("20060102")
	_, err = st.Pool().Exec(ctx, `CREATE TABLE `+blocked+` (x int)`)
	require.NoError(t, err)
	res, err := st.MaintainPartitions(ctx, store.Partitioning{Size: store.Daily, Ahead: 5}, now)
	require.ErrorContains(t, err, blocked)
	require.Equal(t, 3, res.Histories["command"].Created, "the partitions after the failed one are made")
	require.Equal(t, 4, res.Histories["message"].Created, "and the next history's")
	require.Contains(t, partitionsOf(t, st), "device_command_events_"+now.AddDate(0, 0, 5).Format("20060102"))
}

// Making a partition for rows already in the default partition moves them in
// short batches before it takes the history's lock: writers wait for the
// last few rows and the ATTACH, not for the whole move. Writers go on
// through the real Apply path during the move, half of them into the very
// period being moved; nothing is lost or written twice.
func TestPartitionMoveKeepsWritersMoving(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2028, 5, 1, 12, 0, 0, 0, time.UTC)
	_, err := st.MaintainPartitions(ctx, store.Partitioning{Size: store.Daily, Ahead: 1}, now)
	require.NoError(t, err)
	moving := now.AddDate(0, 0, 4) // no partition yet: its rows are in the default partition
	const loaded = 300_000
	_, err = st.Pool().Exec(ctx, `INSERT INTO device_command_events (command_id, event_key, status, event_time, source, stored_payload)
		SELECT 'bulk-' || g, sha256(g::text::bytea), 'SENT', $1::timestamptz + g * interval '200 ms', 'import', '{"n":' || g || '}'
		FROM generate_series(1, $2::int) g`, moving.Truncate(24*time.Hour), loaded)
	require.NoError(t, err)
	require.Equal(t, loaded, countIn(t, st, "device_command_events_default"))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var written, intoMoving atomic.Int64
	var mu sync.Mutex
	var slowest time.Duration
	writeErrs := make(chan error, 8)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				at := now
				if i%2 == 1 {
					at = moving.Add(time.Duration(i) * time.Millisecond)
				}
				n := notification.Notification{CommandID: fmt.Sprintf("w%d-%d", w, i), Status: notification.Sent,
					EventTime: at, Payload: []byte(`{}`)}
				start := time.Now()
				_, err := st.Apply(ctx, []ingest.Item{{Source: "http", Record: &n}})
				took := time.Since(start)
				if err != nil {
					writeErrs <- err
					return
				}
				mu.Lock()
				slowest = max(slowest, took)
				mu.Unlock()
				written.Add(1)
				if i%2 == 1 {
					intoMoving.Add(1)
				}
			}
		}()
	}
	require.Eventually(t, func() bool { return written.Load() > 50 }, 30*time.Second, 5*time.Millisecond)
	started := time.Now()
	res, err := st.MaintainPartitions(ctx, store.Partitioning{Size: store.Daily, Ahead: 5}, now)
	took := time.Since(started)
	// Writes go on a little after the move, so that one caught behind its
	// last step is measured too.
	after := written.Load()
	require.Eventually(t, func() bool { return written.Load() > after+20 }, 30*time.Second, 5*time.Millisecond)
	close(stop)
	wg.Wait()
	close(writeErrs)
	for err := range writeErrs {
		require.NoError(t, err, "a writer failed while upkeep moved rows")
	}
	require.NoError(t, err)
	require.Empty(t, res.Later)
	require.GreaterOrEqual(t, res.Moved, int64(loaded))
	t.Logf("moved %d rows in %v; %d writes, the slowest took %v", res.Moved, took, written.Load(), slowest)

	// A write takes milliseconds; on a loaded machine with the race
	// detector, a few hundred. The old move held every writer for all of
	// it: several seconds for these rows on the machine of the issue.
	require.Less(t, slowest, 2*time.Second, "a writer waited behind the move (the move took %v)", took)

	// Whatever came into the default partition during the move is moved by
	// the next run; then every row is in its place, once.
	_, err = st.MaintainPartitions(ctx, store.Partitioning{Size: store.Daily, Ahead: 5}, now)
	require.NoError(t, err)
	require.Zero(t, countIn(t, st, "device_command_events_default"))
	day := "device_command_events_" + moving.Format("20060102")
	require.Equal(t, loaded+int(intoMoving.Load()), countIn(t, st, day))
	require.Equal(t, loaded+int(written.Load()), count(t, st, `SELECT count(*) FROM device_command_events`))
	require.Equal(t, loaded+int(written.Load()), count(t, st, `SELECT count(DISTINCT (command_id, event_key, event_time)) FROM device_command_events`))
}

// A reader that holds only the history itself (a dashboard's query pruned
// at plan time to the kept partitions) makes every DROP wait for the
// history's lock, and every writer wait behind that DROP. Upkeep gives up
// after the first such wait and leaves the other expired partitions for the
// next run, rather than making writers wait again for each of them. The
// other histories, which the reader does not hold, are kept all the same.
func TestRetentionDefersAfterTheHistoryTimesOut(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2028, 6, 20, 12, 0, 0, 0, time.UTC)
	p := store.Partitioning{Size: store.Daily, Ahead: 1, Back: 10 * 24 * time.Hour}
	_, err := st.MaintainPartitions(ctx, p, now)
	require.NoError(t, err)

	reader, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = reader.Rollback(ctx) }()
	today := now.Truncate(24 * time.Hour)
	// Constants in the text, so that the partitions are pruned when the
	// query is planned and the reader locks today's partition only.
	_, err = reader.Exec(ctx, fmt.Sprintf(`SELECT count(*) FROM device_command_events WHERE event_time >= '%s' AND event_time < '%s'`,
		today.Format(time.RFC3339), today.AddDate(0, 0, 1).Format(time.RFC3339)))
	require.NoError(t, err)
	var held []string
	rows, err := reader.Query(ctx, `SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
		WHERE l.pid = pg_backend_pid() AND c.relname LIKE 'device_command_events%' AND c.relkind IN ('r', 'p') ORDER BY 1`)
	require.NoError(t, err)
	held, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"device_command_events", "device_command_events_" + today.Format("20060102")}, held)

	p.Retention = 5 * 24 * time.Hour
	expired := expiredPartitions(t, st, commandHistory, now.Add(-p.Retention))
	expiredMessages := expiredPartitions(t, st, historyCases[1], now.Add(-p.Retention))
	require.GreaterOrEqual(t, expired, 4)
	res, err := st.MaintainPartitions(ctx, p, now)
	require.NoError(t, err, "a held history is a reason to come back, not a failure")
	require.Equal(t, 1, res.LockTimeouts, "upkeep waited for the history's lock %d times in one run (%d expired partitions)", res.LockTimeouts, expired)
	require.Equal(t, 1, res.Histories["command"].LockTimeouts)
	require.Zero(t, res.Histories["command"].Dropped)
	require.Len(t, res.Later, expired, "every expired partition is left for the next run")
	require.Equal(t, expiredMessages, res.Histories["message"].Dropped, "the message history, not held, is kept as ever")
	require.Empty(t, res.Histories["message"].Later)

	// Once the reader is gone, the next run drops them all.
	require.NoError(t, reader.Rollback(ctx))
	res, err = st.MaintainPartitions(ctx, p, now)
	require.NoError(t, err)
	require.Equal(t, expired, res.Dropped)
	require.Empty(t, res.Later)
	require.Zero(t, res.LockTimeouts)
}
