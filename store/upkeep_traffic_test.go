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
	insert := `INSERT INTO device_command_events (command_id, event_key, status, event_time, source, payload)
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
	res, err := st.Apply(ctx, []ingest.Item{{Source: "http", Notification: &n}})
	require.Error(t, err, "not a dead letter: %+v", res)
	require.Equal(t, store.PartitionError, store.ClassifyError(err), "%v", err)
	require.False(t, store.IsDataError(err))
	require.Zero(t, count(t, st, `SELECT count(*) FROM dead_letters`))
}

// Upkeep makes partitions for periods whose notifications keep arriving:
// neither the writers nor upkeep fail, nothing is dead-lettered, and every
// row ends in its period's partition.
func TestPartitionsMadeUnderTraffic(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2027, 10, 1, 12, 0, 0, 0, time.UTC)
	const days = 12

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var written atomic.Int64
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
				// writes, spread over the days upkeep makes.
				n := notification.Notification{CommandID: fmt.Sprintf("w%d-%d", w, i), Status: notification.Sent,
					EventTime: now.Add(time.Duration(i%(days*24)) * time.Hour), Payload: []byte(`{}`)}
				res, err := st.Apply(ctx, []ingest.Item{{Source: "http", Notification: &n}})
				if err == nil && res[0].Outcome == ingest.DeadLettered {
					err = fmt.Errorf("dead-lettered: %s", res[0].DeadLetter.Reason)
				}
				if err != nil {
					writeErrs <- err
					return
				}
				written.Add(1)
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

	// Whatever landed in the default partition meanwhile is moved by the next run.
	_, err := st.MaintainPartitions(ctx, store.Partitioning{Size: store.Daily, Ahead: days}, now)
	require.NoError(t, err)
	require.Zero(t, countIn(t, st, "device_command_events_default"))
	require.Equal(t, int(written.Load()), count(t, st, `SELECT count(*) FROM device_command_events`))
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
		return []ingest.Item{{Source: "http", Notification: &n}}
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
	expired := 0
	for _, name := range partitionsOf(t, st) {
		from, err := time.Parse("20060102", stdstrings.TrimPrefix(name, "device_command_events_"))
		if err == nil && !from.AddDate(0, 0, 1).After(now.Add(-p.Retention)) {
			expired++
		}
	}
	res, err := st.MaintainPartitions(ctx, p, now)
	require.NoError(t, err, "a busy partition is left for later, not a failure")
	require.Equal(t, []string{oldest, middle}, res.Later)
	require.Equal(t, expired-2, res.Dropped, "the other expired partitions are dropped")
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
	require.Equal(t, 2, res.Created)
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
	require.Equal(t, 3, res.Created, "the partitions after the failed one are made")
	require.Contains(t, partitionsOf(t, st), "device_command_events_"+now.AddDate(0, 0, 5).Format("20060102"))
}
