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
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cmdtrack/cmdtrack/internal/backoff"
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

// Partitioning says how the history is partitioned and kept.
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
}

// history's tables.
const (
	historyTable   = "device_command_events"
	defaultHistory = "device_command_events_default"
)

// partition is one partition of the history and the times it holds.
type partition struct {
	name     string
	from, to time.Time
}

// partitionName is the name of the partition that begins at from.
func partitionName(from time.Time) string { return historyTable + "_" + from.Format("20060102") }

// lockTimeout bounds how long upkeep's DDL waits for a lock on the history
// itself: while it waits, every writer queues behind it, so it must give up
// quickly (a long reader of the history, a dashboard or pg_dump, holds what
// it needs) and try again a little later (lockRetries times), then at a
// later run.
const (
	lockTimeout = "200ms"
	lockRetries = 5
)

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

// heldByOthers asks whether a session other than autovacuum holds a lock on
// a table: a reader that will not yield, unlike autovacuum. A session whose
// type the role may not see (another role's, without pg_read_all_stats;
// autovacuum's among them) counts as autovacuum: it is waited for.
const heldByOthers = `SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
	WHERE l.locktype = 'relation' AND l.relation = $1::regclass AND l.granted AND l.pid <> pg_backend_pid()
	AND a.backend_type <> 'autovacuum worker')`

// lockNotAvailable reports whether err is PostgreSQL's lock_timeout.
func lockNotAvailable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}

// retryLocked runs f again, after a pause, while it fails for want of a
// lock within lockTimeout.
func retryLocked(ctx context.Context, f func() error) error {
	for attempt := 1; ; attempt++ {
		err := f()
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

// MaintainPartitions makes the history's partitions cover what p asks (the
// retention window back from now, or Back, and Ahead partitions ahead), moves
// rows out of the default partition into partitions made for them (or deletes
// those older than retention), and drops partitions wholly older than
// retention, oldest first: no DELETE, no dead tuples. Rows older than the
// window go into one partition per year (clipped to the window), not one
// per period: a device whose clock restarted at 1970 costs one partition.
//
// One partition that cannot be made or dropped does not stop the others:
// those a lock could not be had for are named in the result's Later (no
// error); other failures are joined in the error. Call it under an advisory
// lock (one replica at a time). ctx bounds the run; what was done stays done.
func (s *Store) MaintainPartitions(ctx context.Context, p Partitioning, now time.Time) (PartitionResult, error) {
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
	parts, err := s.partitions(ctx)
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
		for _, pt := range parts {
			if ctx.Err() != nil {
				return res, errors.Join(append(errs, ctx.Err())...)
			}
			if !pt.to.After(cutoff) && settle(pt.name, s.dropPartition(ctx, pt.name)) {
				res.Dropped++
			}
		}
		tag, err := s.exec(ctx, `DELETE FROM `+defaultHistory+` WHERE event_time < $1`, cutoff)
		if settle(defaultHistory, err) {
			res.Deleted = tag
		}
		// The first receipts of legacy callbacks go with their history.
		if _, err := s.exec(ctx, `DELETE FROM device_command_receipts WHERE event_time < $1`, cutoff); err != nil {
			errs = append(errs, fmt.Errorf("delete old receipts: %w", err))
		}
		if parts, err = s.partitions(ctx); err != nil {
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
	stray, err := s.strayStarts(ctx, p.Size, windowStart)
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
	// another size, made before the size was changed).
	for _, t := range starts {
		for _, gap := range gaps(parts, t, ranges[t]) {
			if ctx.Err() != nil {
				return res, errors.Join(append(errs, ctx.Err())...)
			}
			moved, err := s.createPartition(ctx, gap.from, gap.to)
			if settle(partitionName(gap.from), err) {
				res.Created++
				res.Moved += moved
				gap.name = partitionName(gap.from)
				parts = append(parts, gap)
			}
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
	err := retryLocked(ctx, func() error {
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
func (s *Store) partitions(ctx context.Context) ([]partition, error) {
	var out []partition
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Bounds are printed in the session's time zone.
		if _, err := tx.Exec(ctx, `SET LOCAL TimeZone = 'UTC'`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
			FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
			WHERE i.inhparent = $1::regclass`, historyTable)
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
		return nil, fmt.Errorf("list history partitions: %w", err)
	}
	return out, nil
}

// strayStarts are the starts of the partitions that the default
// partition's rows belong in: their period's, or for rows before
// windowStart, their year's.
func (s *Store) strayStarts(ctx context.Context, size PartitionSize, windowStart time.Time) ([]time.Time, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT date_trunc(CASE WHEN event_time < $2 THEN 'year' ELSE $1 END, event_time AT TIME ZONE 'UTC')
		FROM `+defaultHistory, string(size), windowStart)
	if err != nil {
		return nil, fmt.Errorf("read the default history partition: %w", err)
	}
	starts, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return nil, fmt.Errorf("read the default history partition: %w", err)
	}
	for i, t := range starts {
		// date_trunc of a timestamp without time zone comes back as UTC wall time.
		starts[i] = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
	return starts, nil
}

// createPartition makes the partition [from, to), moving into it the rows of
// the default partition that belong there, in one transaction: a range may
// not be attached while the default partition holds rows in it. It first
// locks the history against writes (SHARE ROW EXCLUSIVE, waiting at most
// lockTimeout): a row committed into the default partition between the move
// and the attach would fail the attach, and a writer whose statement began
// before the attach would have its row routed by the old layout and refused
// by the default partition's new bounds. Writers wait for the move and the
// attach instead (a few milliseconds when the default partition is empty);
// readers go on.
func (s *Store) createPartition(ctx context.Context, from, to time.Time) (int64, error) {
	name := partitionName(from)
	var moved int64
	err := retryLocked(ctx, func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '`+lockTimeout+`'`); err != nil {
				return err
			}
			// ONLY: the partitions need no lock (writers are held off by
			// the parent's), and autovacuum on one of them must not make
			// this wait.
			if _, err := tx.Exec(ctx, `LOCK TABLE ONLY `+historyTable+` IN SHARE ROW EXCLUSIVE MODE`); err != nil {
				return err
			}
			table := pgx.Identifier{name}.Sanitize()
			if _, err := tx.Exec(ctx, `CREATE TABLE `+table+` (LIKE `+historyTable+` INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, `WITH moved AS (DELETE FROM `+defaultHistory+` WHERE event_time >= $1 AND event_time < $2 RETURNING *)
			INSERT INTO `+table+` SELECT * FROM moved`, from, to)
			if err != nil {
				return err
			}
			moved = tag.RowsAffected()
			_, err = tx.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM ('%s') TO ('%s')`,
				historyTable, table, from.Format(time.RFC3339), to.Format(time.RFC3339)))
			return err
		})
	})
	if err != nil {
		return 0, fmt.Errorf("create history partition %s: %w", name, err)
	}
	return moved, nil
}

// dropPartition drops one partition of the history. A partition that a
// session holds (a long reader) is left at once for a later run; else it
// waits for the partition itself (busyWait: long enough for autovacuum to
// yield, and writers do not queue behind it), then takes the history's lock
// briefly (DETACH ... CONCURRENTLY is refused while a default partition
// exists): the short lock timeout keeps writers from queueing behind it for
// more than a moment.
func (s *Store) dropPartition(ctx context.Context, name string) error {
	if !strings.HasPrefix(name, historyTable+"_") || name == defaultHistory {
		return fmt.Errorf("refusing to drop %s: not a history partition", name)
	}
	table := pgx.Identifier{name}.Sanitize()
	err := retryLocked(ctx, func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
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
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("drop history partition %s: %w", name, err)
	}
	return nil
}
