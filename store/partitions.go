package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cmdtrack/cmdtrack/internal/backoff"
	"github.com/cmdtrack/cmdtrack/notification"
)

// PartitionSize is how much time one partition of the history covers.
type PartitionSize string

// The partition sizes; boundaries are at UTC midnight, Monday and the first
// of the month.
const (
	Daily   PartitionSize = "day"
	Weekly  PartitionSize = "week"
	Monthly PartitionSize = "month"
)

// ParsePartitionSize reads day, week or month.
func ParsePartitionSize(s string) (PartitionSize, error) {
	switch p := PartitionSize(s); p {
	case Daily, Weekly, Monthly:
		return p, nil
	}
	return "", fmt.Errorf("partition size %q: want day, week or month", s)
}

// start is the beginning of the partition that holds t.
func (p PartitionSize) start(t time.Time) time.Time {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	switch p {
	case Weekly:
		return day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
	case Monthly:
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return day
}

// next is the beginning of the partition after the one starting at t.
func (p PartitionSize) next(t time.Time) time.Time {
	switch p {
	case Weekly:
		return t.AddDate(0, 0, 7)
	case Monthly:
		return t.AddDate(0, 1, 0)
	}
	return t.AddDate(0, 0, 1)
}

// Partitioning says how the histories are partitioned and kept: every one
// alike.
type Partitioning struct {
	Size PartitionSize
	// Ahead is how many partitions beyond the current one exist ahead of
	// time, so that inserts never wait for one.
	Ahead int
	// Retention drops partitions wholly older than this; zero keeps all.
	Retention time.Duration
	// Back is how far back partitions are made ahead of need when nothing
	// is dropped (Retention zero): a bulk import of older rows lands in the
	// default partition, which upkeep then empties into partitions of their
	// own.
	Back time.Duration
}

// PartitionResult says what an upkeep run did.
type PartitionResult struct {
	Created, Dropped int
	// Moved and Deleted count the rows taken out of the default partition:
	// into a partition made for them, or deleted as older than retention.
	Moved, Deleted int64
	// Later names the partitions left for a later run, to make or to drop,
	// because a lock on them could not be had in time: a long reader holds
	// an expired partition, or writers kept the history busy. Nothing
	// failed; run again soon.
	Later []string
	// LockTimeouts counts the waits for a history's own lock that ran out
	// (lockTimeout each): every one held that history's writers off that long.
	LockTimeouts int
	// Histories is the same, per history (by its name: command, message),
	// for each history the run did or left something of; the fields above
	// are their sums. Its own Histories is nil.
	Histories map[string]PartitionResult
}

// add counts r, the result of the history named name, in res.
func (res *PartitionResult) add(name string, r PartitionResult) {
	res.Created += r.Created
	res.Dropped += r.Dropped
	res.Moved += r.Moved
	res.Deleted += r.Deleted
	res.Later = append(res.Later, r.Later...)
	res.LockTimeouts += r.LockTimeouts
	if r.Created+r.Dropped+r.LockTimeouts+len(r.Later) > 0 || r.Moved+r.Deleted > 0 {
		if res.Histories == nil {
			res.Histories = map[string]PartitionResult{}
		}
		res.Histories[name] = r
	}
}

// history is one table partitioned by event time that upkeep keeps: a kind's
// history, with the same settings for all (Partitioning).
type history struct {
	// name is the kind's, as metrics and logs name the history.
	name string
	// table is the partitioned table: its partitions are table_YYYYMMDD,
	// its default partition table_default.
	table string
	// companions are tables whose rows go with the history's by their
	// event_time when retention drops it (they are no partitions).
	companions []string
}

// histories are every partitioned history, each kept the same way by
// MaintainPartitions, in this order. A kind with a history adds a line.
var histories = []history{
	// The first receipts of legacy callbacks go with their history.
	{name: notification.KindCommand, table: "device_command_events", companions: []string{"device_command_receipts"}},
	{name: notification.KindMessage, table: "device_message_events"},
}

// HistoryNames are the names of the histories MaintainPartitions keeps, as
// PartitionResult.Histories keys them.
func HistoryNames() []string {
	names := make([]string, len(histories))
	for i, h := range histories {
		names[i] = h.name
	}
	return names
}

// defaultPartition is the partition that takes the rows no other takes.
func (h history) defaultPartition() string { return h.table + "_default" }

// partitionName is the name of the history's partition that begins at from.
func (h history) partitionName(from time.Time) string { return h.table + "_" + from.Format("20060102") }

// partition is one partition of a history and the times it holds.
type partition struct {
	name     string
	from, to time.Time
}

// lockTimeout bounds how long upkeep's DDL waits for a lock on the history
// itself: while it waits, every writer queues behind it, so it must give up
// quickly (a long reader of the history, a dashboard or pg_dump, holds what
// it needs) and try again a little later (lockRetries times), then at a
// later run.
const (
	lockTimeout = "200ms"
	lockRetries = 5
)

// attachGrace bounds the attaches a stopped run still makes (see
// maintainPartitions, step 5).
const attachGrace = 30 * time.Second

// busyWait sets, for the transaction, how long a drop waits for the lock on
// the expired partition itself. Writers do not queue behind that wait (they
// write today's partitions), and it must outlast deadlock_timeout: only then
// does autovacuum, busy on a freshly loaded partition, cancel itself for a
// waiter. Anything shorter waits for autovacuum to finish on its own.
const busyWait = `SELECT set_config('lock_timeout',
	greatest(2000, extract(epoch FROM current_setting('deadlock_timeout')::interval) * 1000 + 1000)::bigint || 'ms', true)`

// errBusy marks a partition being dropped that another session holds:
// retrying at once would wait as long again.
var errBusy = errors.New("partition busy")

// errHistoryBusy marks a drop that could not have the history's own lock in
// lockTimeout: a session holds the history (a reader whose partitions were
// pruned holds it and none of them).
var errHistoryBusy = errors.New("history busy")

// heldByOthers asks whether a session other than autovacuum holds a lock on
// a table: a reader that will not yield, unlike autovacuum. A session whose
// type the role may not see (another role's, without pg_read_all_stats;
// autovacuum's among them) counts as autovacuum: it is waited for.
const heldByOthers = `SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
	WHERE l.locktype = 'relation' AND l.relation = $1::regclass AND l.granted AND l.pid <> pg_backend_pid()
	AND a.backend_type <> 'autovacuum worker')`

// retryLocked runs f again, after a pause, while it fails for want of a
// lock within lockTimeout, counting those in timeouts.
func retryLocked(ctx context.Context, timeouts *int, f func() error) error {
	for attempt := 1; ; attempt++ {
		err := f()
		if lockNotAvailable(err) && !errors.Is(err, errBusy) {
			*timeouts++
		}
		if attempt == lockRetries || !lockNotAvailable(err) || errors.Is(err, errBusy) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff.Delay(attempt, 100*time.Millisecond, time.Second)):
		}
	}
}

// MaintainPartitions keeps every history (histories: the commands', the
// messages') alike, one after the other: it makes its partitions cover what
// p asks (the retention window back from now, or Back, and Ahead partitions
// ahead), moves rows out of its default partition into partitions made for
// them (or deletes those older than retention), and drops partitions wholly
// older than retention, oldest first: no DELETE, no dead tuples. Rows older
// than the window go into one partition per year (clipped to the window),
// not one per period: a device whose clock restarted at 1970 costs one
// partition.
//
// A partition is made as a table of its own first, filled from the default
// partition in short batches while writers go on, and only then attached
// (see attachPartition). A run that stops between batches leaves such a
// table behind, marked; the next run finishes it.
//
// One partition that cannot be made or dropped does not stop the others:
// those a lock could not be had for are named in the result's Later (no
// error); other failures are joined in the error. Nor does one history that
// fails stop the next. Call it under an advisory lock (one replica at a
// time). ctx bounds the run; what was done stays done.
func (s *Store) MaintainPartitions(ctx context.Context, p Partitioning, now time.Time) (PartitionResult, error) {
	var res PartitionResult
	var errs []error
	for _, h := range histories {
		if err := ctx.Err(); err != nil {
			if !errors.Is(errors.Join(errs...), err) {
				errs = append(errs, err)
			}
			break
		}
		r, err := s.maintainPartitions(ctx, h, p, now)
		res.add(h.name, r)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return res, interpretError(errors.Join(errs...))
}

// maintainPartitions keeps one history.
func (s *Store) maintainPartitions(ctx context.Context, h history, p Partitioning, now time.Time) (PartitionResult, error) {
	var res PartitionResult
	var errs []error
	// settle files the outcome of one partition's work.
	settle := func(name string, err error) bool {
		switch {
		case err == nil:
			return true
		case (lockNotAvailable(err) || errors.Is(err, errBusy)) && ctx.Err() == nil:
			res.Later = append(res.Later, name)
		default:
			errs = append(errs, err)
		}
		return false
	}
	if p.Size == "" {
		p.Size = Daily
	}
	p.Ahead = max(p.Ahead, 1)
	parts, err := s.partitions(ctx, h)
	if err != nil {
		return res, err
	}
	// Tables an earlier run made and began to fill, but did not attach.
	unattached, err := s.unattached(ctx, h)
	if err != nil {
		return res, err
	}
	var cutoff time.Time // rows before it are older than retention
	back := p.Back
	if p.Retention > 0 {
		cutoff, back = now.Add(-p.Retention), p.Retention
	}

	// 1. Drop what retention no longer keeps, and the default partition's
	// rows that old.
	if !cutoff.IsZero() {
		slices.SortFunc(parts, func(a, b partition) int { return a.from.Compare(b.from) })
		historyBusy := false
		for _, pt := range parts {
			if ctx.Err() != nil {
				return res, errors.Join(append(errs, ctx.Err())...)
			}
			if pt.to.After(cutoff) {
				continue
			}
			if historyBusy {
				// Each try would hold the writers off for lockTimeout again,
				// for the same reader: the next run tries.
				res.Later = append(res.Later, pt.name)
				continue
			}
			err := s.dropPartition(ctx, h, pt.name, &res.LockTimeouts)
			historyBusy = errors.Is(err, errHistoryBusy)
			if settle(pt.name, err) {
				res.Dropped++
			}
		}
		kept := unattached[:0]
		for _, pt := range unattached {
			if pt.to.After(cutoff) {
				kept = append(kept, pt)
				continue
			}
			n, err := s.dropUnattached(ctx, pt.name)
			if settle(pt.name, err) {
				res.Deleted += n
			}
		}
		unattached = kept
		tag, err := s.exec(ctx, `DELETE FROM `+h.defaultPartition()+` WHERE event_time < $1`, cutoff)
		if settle(h.defaultPartition(), err) {
			res.Deleted += tag
		}
		for _, c := range h.companions {
			if _, err := s.exec(ctx, `DELETE FROM `+c+` WHERE event_time < $1`, cutoff); err != nil {
				errs = append(errs, fmt.Errorf("delete old rows of %s: %w", c, err))
			}
		}
		if parts, err = s.partitions(ctx, h); err != nil {
			return res, errors.Join(append(errs, err)...)
		}
	}

	// 2. The ranges to cover: the window from now, and wherever rows of the
	// default partition fall (before the window: by the year).
	windowStart := p.Size.start(now.Add(-back))
	ranges := map[time.Time]time.Time{}
	end := now
	for range p.Ahead + 1 {
		end = p.Size.next(p.Size.start(end))
	}
	for t := windowStart; t.Before(end); t = p.Size.next(t) {
		ranges[t] = p.Size.next(t)
	}
	stray, err := s.strayStarts(ctx, h, p.Size, windowStart)
	if err != nil {
		return res, errors.Join(append(errs, err)...)
	}
	for _, t := range stray {
		if t.Before(windowStart) {
			ranges[t] = t.AddDate(1, 0, 0)
			if ranges[t].After(windowStart) {
				ranges[t] = windowStart
			}
		} else {
			ranges[t] = p.Size.next(t)
		}
	}
	starts := slices.SortedFunc(maps.Keys(ranges), time.Time.Compare)

	// 3. Make what is missing, around partitions that exist (perhaps of
	// another size, made before the size was changed) and the tables an
	// earlier run left, as tables of their own for now.
	pending := unattached
	covered := slices.Concat(parts, unattached)
	for _, t := range starts {
		for _, gap := range gaps(covered, t, ranges[t]) {
			if ctx.Err() != nil {
				return res, errors.Join(append(errs, ctx.Err())...)
			}
			gap.name = h.partitionName(gap.from)
			if settle(gap.name, s.createUnattached(ctx, h, gap)) {
				pending = append(pending, gap)
				covered = append(covered, gap)
			}
		}
	}
	if len(pending) == 0 {
		return res, errors.Join(errs...)
	}

	// 4. Fill them from the default partition, a batch at a time, all of
	// them before any is attached: each ATTACH reads what is left in the
	// default partition while writers wait, so that had better be little.
	moved, err := s.fill(ctx, h, pending)
	res.Moved += moved
	// A stop (ctx ended) goes on to attach what was filled so far: the
	// moved rows are out of every reader's sight until then.
	if err != nil && ctx.Err() == nil {
		if (lockNotAvailable(err) || errors.Is(err, errBusy)) && ctx.Err() == nil {
			for _, pt := range pending {
				res.Later = append(res.Later, pt.name)
			}
		} else {
			errs = append(errs, err)
		}
		// Left as they are, marked: the next run goes on filling them.
		return res, errors.Join(errs...)
	}

	// 5. Attach them, each with the few rows that came meanwhile. After one
	// that could not have the locks it needs, the rest are left for the
	// next run, as drops are: each try holds the writers off.
	//
	// They are attached even when ctx has ended meanwhile (a stop): their
	// rows have left the default partition, and until the ATTACH no reader
	// of the history sees them. An attach is short by design (lockTimeout,
	// lockRetries), so a stop waits at most attachGrace for them.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), attachGrace)
	defer cancel()
	historyBusy := false
	for _, pt := range pending {
		if historyBusy {
			res.Later = append(res.Later, pt.name)
			continue
		}
		moved, err := s.attachPartition(actx, h, pt, &res.LockTimeouts)
		historyBusy = lockNotAvailable(err) && !errors.Is(err, errBusy)
		if settle(pt.name, err) {
			res.Created++
			res.Moved += moved
		}
	}
	return res, errors.Join(errs...)
}

// gaps are the parts of [from, to) that no partition covers.
func gaps(parts []partition, from, to time.Time) []partition {
	var out []partition
	for cur := from; cur.Before(to); {
		end := to
		covered := false
		for _, pt := range parts {
			if !pt.from.After(cur) && pt.to.After(cur) {
				cur, covered = pt.to, true
				break
			}
			if pt.from.After(cur) && pt.from.Before(end) {
				end = pt.from
			}
		}
		if covered {
			continue
		}
		out = append(out, partition{from: cur, to: end})
		cur = end
	}
	return out
}

// exec runs one statement under the upkeep's lock timeout.
func (s *Store) exec(ctx context.Context, sql string, args ...any) (int64, error) {
	var n int64
	err := retryLocked(ctx, new(int), func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '`+lockTimeout+`'`); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, sql, args...)
			n = tag.RowsAffected()
			return err
		})
	})
	return n, err
}

var boundRE = regexp.MustCompile(`^FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)$`)

// partitions lists the history's partitions but the default one.
func (s *Store) partitions(ctx context.Context, h history) ([]partition, error) {
	var out []partition
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Bounds are printed in the session's time zone.
		if _, err := tx.Exec(ctx, `SET LOCAL TimeZone = 'UTC'`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
			FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
			WHERE i.inhparent = $1::regclass`, h.table)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var name, bound string
			if err := rows.Scan(&name, &bound); err != nil {
				return err
			}
			if bound == "DEFAULT" {
				continue
			}
			m := boundRE.FindStringSubmatch(bound)
			if m == nil {
				return fmt.Errorf("partition %s has bounds cmdtrack does not read: %s", name, bound)
			}
			from, err1 := time.Parse("2006-01-02 15:04:05-07", m[1])
			to, err2 := time.Parse("2006-01-02 15:04:05-07", m[2])
			if err := errors.Join(err1, err2); err != nil {
				return fmt.Errorf("partition %s: %w", name, err)
			}
			out = append(out, partition{name: name, from: from.UTC(), to: to.UTC()})
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list the partitions of %s: %w", h.table, err)
	}
	return out, nil
}

// strayStarts are the starts of the partitions that the default
// partition's rows belong in: their period's, or for rows before
// windowStart, their year's.
func (s *Store) strayStarts(ctx context.Context, h history, size PartitionSize, windowStart time.Time) ([]time.Time, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT date_trunc(CASE WHEN event_time < $2 THEN 'year' ELSE $1 END, event_time AT TIME ZONE 'UTC')
		FROM `+h.defaultPartition(), string(size), windowStart)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", h.defaultPartition(), err)
	}
	starts, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", h.defaultPartition(), err)
	}
	for i, t := range starts {
		// date_trunc of a timestamp without time zone comes back as UTC wall time.
		starts[i] = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
	return starts, nil
}

// The marks of a table made to become a partition but not attached yet: a
// comment that gives its bounds (and tells an operator what it is), and a
// CHECK constraint that says the same to PostgreSQL.
const (
	boundsCheck = "cmdtrack_partition_bounds"
	// Of the table, its default partition, from and to.
	pendingRemark = "cmdtrack: a partition of %s from %s to %s, being filled from %s; upkeep attaches it. Do not drop it: it holds history rows."
)

var pendingRE = regexp.MustCompile(`^cmdtrack: a partition of \S+ from (\S+) to (\S+), being filled`)

// moveBatchPages is how much of the default partition one batch of a move
// reads: 1 MiB of its heap, some thousands of rows, a transaction short
// enough that a writer that meets one of its rows (a redelivered copy)
// hardly waits.
const moveBatchPages = 128

// moveGroup bounds how many tables one pass over the default partition fills:
// a statement per batch with a part for each.
const moveGroup = 16

// moveTuning lets a test shrink the batches and stop after one (a crash).
type moveTuning struct {
	pages      int
	afterBatch func(batch int) error
}

type moveTuningKey struct{}

func tuningOf(ctx context.Context) moveTuning {
	t, _ := ctx.Value(moveTuningKey{}).(moveTuning)
	if t.pages <= 0 {
		t.pages = moveBatchPages
	}
	return t
}

// unattached lists the tables an earlier run made to become partitions, and
// did not attach: it stopped while filling them, or could not attach them.
func (s *Store) unattached(ctx context.Context, h history) ([]partition, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c
		WHERE c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = $1::regclass)
		  AND c.relkind = 'r' AND NOT c.relispartition AND starts_with(c.relname, $1 || '_')
		  AND starts_with(obj_description(c.oid, 'pg_class'), 'cmdtrack: ')`, h.table)
	if err != nil {
		return nil, fmt.Errorf("list the unattached partitions of %s: %w", h.table, err)
	}
	type marked struct{ Name, Remark string }
	found, err := pgx.CollectRows(rows, pgx.RowToStructByPos[marked])
	if err != nil {
		return nil, fmt.Errorf("list the unattached partitions of %s: %w", h.table, err)
	}
	var out []partition
	for _, m := range found {
		b := pendingRE.FindStringSubmatch(m.Remark)
		if b == nil {
			return nil, fmt.Errorf("table %s has a comment cmdtrack does not read: %q", m.Name, m.Remark)
		}
		from, err1 := time.Parse(time.RFC3339, b[1])
		to, err2 := time.Parse(time.RFC3339, b[2])
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("table %s: %w", m.Name, err)
		}
		out = append(out, partition{name: m.Name, from: from.UTC(), to: to.UTC()})
	}
	slices.SortFunc(out, func(a, b partition) int { return a.from.Compare(b.from) })
	return out, nil
}

// createUnattached makes the table that is to become the partition pt: the
// history's columns, defaults and unique key (so that ATTACH has an index to
// take rather than one to build), and a CHECK constraint of its bounds (so
// that ATTACH need not read it), marked as cmdtrack's. Nobody writes to it
// yet, so nobody waits.
func (s *Store) createUnattached(ctx context.Context, h history, pt partition) error {
	table := pgx.Identifier{pt.name}.Sanitize()
	from, to := pt.from.Format(time.RFC3339), pt.to.Format(time.RFC3339)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, q := range []string{
			`SET LOCAL lock_timeout = '` + lockTimeout + `'`,
			`CREATE TABLE ` + table + ` (LIKE ` + h.table + ` INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)`,
			fmt.Sprintf(`ALTER TABLE %s ADD CONSTRAINT %s CHECK (event_time >= '%s' AND event_time < '%s')`, table, boundsCheck, from, to),
			fmt.Sprintf(`COMMENT ON TABLE %s IS '%s'`, table, fmt.Sprintf(pendingRemark, h.table, from, to, h.defaultPartition())),
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create history partition %s: %w", pt.name, err)
	}
	return nil
}

// moveSQL moves the default partition's rows of the tables' ranges into
// them, those within $1 <= ctid < $2 when paged: one statement, so that a
// row is in one place or the other whatever happens. A row already in its
// table (a redelivered copy that came while its first was being moved) is
// dropped there by the unique key.
func moveSQL(h history, tables []partition, paged bool) (string, []any) {
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	var where []string
	if paged {
		where = append(where, `ctid >= `+arg("")+`::text::tid AND ctid < `+arg("")+`::text::tid`)
	}
	var ranges, inserts []string
	for i, pt := range tables {
		r := fmt.Sprintf(`event_time >= %s AND event_time < %s`, arg(pt.from), arg(pt.to))
		ranges = append(ranges, "("+r+")")
		inserts = append(inserts, fmt.Sprintf(`, i%d AS (INSERT INTO %s SELECT * FROM moved WHERE %s ON CONFLICT DO NOTHING)`,
			i, pgx.Identifier{pt.name}.Sanitize(), r))
	}
	where = append(where, "("+strings.Join(ranges, " OR ")+")")
	return `WITH moved AS (DELETE FROM ` + h.defaultPartition() + ` WHERE ` + strings.Join(where, " AND ") + ` RETURNING *)` +
		strings.Join(inserts, "") + `
		SELECT count(*) FROM moved`, args
}

// fill moves the default partition's rows into the tables that are to
// become partitions for them, a batch of pages at a time, each batch a
// transaction of its own: writers go on, those writing into the default
// partition too. Rows written into the default partition meanwhile,
// behind a batch, are left for attachPartition. It returns the rows moved.
func (s *Store) fill(ctx context.Context, h history, tables []partition) (int64, error) {
	tune := tuningOf(ctx)
	var moved int64
	batch := 0
	for group := range slices.Chunk(tables, moveGroup) {
		q, args := moveSQL(h, group, true)
		limit := -1
		for page := 0; ; page += tune.pages {
			var pages int
			err := s.pool.QueryRow(ctx, `SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int`,
				h.defaultPartition()).Scan(&pages)
			if err != nil {
				return moved, fmt.Errorf("read %s: %w", h.defaultPartition(), err)
			}
			if limit < 0 {
				// It may grow meanwhile (writers of the periods being
				// made write there until they are attached): read on to
				// its end, but not forever if they write faster than
				// this moves.
				limit = 2*pages + 8*tune.pages
			}
			if page >= min(pages, limit) {
				break
			}
			args[0], args[1] = fmt.Sprintf("(%d,0)", page), fmt.Sprintf("(%d,0)", page+tune.pages)
			var n int64
			err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '`+lockTimeout+`'`); err != nil {
					return err
				}
				return tx.QueryRow(ctx, q, args...).Scan(&n)
			})
			if err != nil {
				return moved, fmt.Errorf("move history rows out of %s: %w", h.defaultPartition(), err)
			}
			moved += n
			batch++
			if tune.afterBatch != nil {
				if err := tune.afterBatch(batch); err != nil {
					return moved, err
				}
			}
		}
	}
	return moved, nil
}

// attachPartition moves into pt the last rows of its range that came into
// the default partition after fill passed, and attaches it, in one
// transaction, under a lock on the history against writes (SHARE ROW
// EXCLUSIVE, waiting at most lockTimeout): a row committed into the default
// partition between the move and the attach would fail the attach, and a
// writer whose statement began before the attach would have its row routed
// by the old layout and refused by the default partition's new bounds.
// Writers wait only for those last rows and the ATTACH, which reads neither
// pt (its CHECK constraint says it holds only its range) nor more of the
// default partition than fill left there. It returns the rows moved.
//
// First, and without holding writers off, it takes pt and the default
// partition from autovacuum (waiting busyWait, long enough for autovacuum to
// yield; writers do not queue behind it), which would otherwise hold the
// ATTACH, and the writers behind it, until lockTimeout.
func (s *Store) attachPartition(ctx context.Context, h history, pt partition, timeouts *int) (int64, error) {
	table := pgx.Identifier{pt.name}.Sanitize()
	var moved int64
	err := retryLocked(ctx, timeouts, func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, busyWait); err != nil {
				return err
			}
			for _, q := range []string{
				`LOCK TABLE ` + table + ` IN ACCESS EXCLUSIVE MODE`,
				`LOCK TABLE ` + h.defaultPartition() + ` IN SHARE UPDATE EXCLUSIVE MODE`,
			} {
				if _, err := tx.Exec(ctx, q); err != nil {
					return fmt.Errorf("%w: %w", errBusy, err)
				}
			}
			if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '`+lockTimeout+`'`); err != nil {
				return err
			}
			// ONLY: the partitions need no lock (writers are held off by
			// the parent's), and autovacuum on one of them must not make
			// this wait.
			if _, err := tx.Exec(ctx, `LOCK TABLE ONLY `+h.table+` IN SHARE ROW EXCLUSIVE MODE`); err != nil {
				return err
			}
			q, args := moveSQL(h, []partition{pt}, false)
			if err := tx.QueryRow(ctx, q, args...).Scan(&moved); err != nil {
				return err
			}
			for _, q := range []string{
				fmt.Sprintf(`ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM ('%s') TO ('%s')`,
					h.table, table, pt.from.Format(time.RFC3339), pt.to.Format(time.RFC3339)),
				// The partition's bounds say as much from now on.
				`ALTER TABLE ` + table + ` DROP CONSTRAINT ` + boundsCheck,
				`COMMENT ON TABLE ` + table + ` IS NULL`,
			} {
				if _, err := tx.Exec(ctx, q); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("create history partition %s: %w", pt.name, err)
	}
	return moved, nil
}

// dropUnattached drops a table made to become a partition whose range
// retention no longer keeps, and returns how many rows it held. It is no
// partition: writers do not wait for it.
func (s *Store) dropUnattached(ctx context.Context, name string) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		table := pgx.Identifier{name}.Sanitize()
		if _, err := tx.Exec(ctx, busyWait); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE `+table+` IN ACCESS EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("%w: %w", errBusy, err)
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DROP TABLE `+table)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("drop unattached history partition %s: %w", name, err)
	}
	return n, nil
}

// dropPartition drops one partition of the history. A partition that a
// session holds (a long reader) is left at once for a later run; else it
// waits for the partition itself (busyWait: long enough for autovacuum to
// yield, and writers do not queue behind it), then takes the history's lock
// briefly (DETACH ... CONCURRENTLY is refused while a default partition
// exists): the short lock timeout keeps writers from queueing behind it for
// more than a moment. That wait is not tried again: what holds the history
// (a reader of it, its partitions pruned) holds it for every partition
// alike, and each try would hold writers off again. It returns
// errHistoryBusy then, counted in timeouts.
func (s *Store) dropPartition(ctx context.Context, h history, name string, timeouts *int) error {
	if !strings.HasPrefix(name, h.table+"_") || name == h.defaultPartition() {
		return fmt.Errorf("refusing to drop %s: not a partition of %s", name, h.table)
	}
	table := pgx.Identifier{name}.Sanitize()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var held bool
		if err := tx.QueryRow(ctx, heldByOthers, name).Scan(&held); err != nil {
			return err
		}
		if held {
			return errBusy
		}
		if _, err := tx.Exec(ctx, busyWait); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE `+table+` IN ACCESS EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("%w: %w", errBusy, err)
		}
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '`+lockTimeout+`'`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DROP TABLE `+table)
		if lockNotAvailable(err) {
			*timeouts++
			return fmt.Errorf("%w: %w", errHistoryBusy, err)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("drop history partition %s: %w", name, err)
	}
	return nil
}
