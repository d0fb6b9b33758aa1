package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cmdtrack/cmdtrack/notification"
)

// CommandRef is what it takes to ask IoTDA's API about a stored command.
type CommandRef struct {
	CommandID string
	// DeviceID is empty when no notification said it.
	DeviceID      string
	Status        notification.Status
	LastEventTime time.Time
}

// OpenQuery chooses commands that are not final (PENDING, SENT, DELIVERED),
// by when they last moved.
type OpenQuery struct {
	// Before: their last event is before this time.
	Before time.Time
	// Since, unless zero: their last event is at or after this time.
	Since time.Time
	// After, unless nil, is the last command of the previous page: commands
	// come oldest first, by last event time then command id.
	After *CommandRef
	// Limit is the page size.
	Limit int
	// Stuck, unless zero, replaces Before and Since: the commands
	// stuck_commands(Stuck) holds, quiet for longer than Stuck within the
	// stuck horizon, as the console and cmdtrack_commands_stuck count them.
	Stuck time.Duration
}

// openCommands is OpenCommands' statement without Stuck. The statuses are
// those of device_commands_open_idx's predicate, and the order its key, so
// that the page is the head of that index's range (migration 024 dropped
// the (status, last_event_time) index).
const openCommands = `
		SELECT command_id, coalesce(device_id, ''), status, last_event_time FROM device_commands
		WHERE status IN ('PENDING', 'SENT', 'DELIVERED')
		  AND last_event_time < $1
		  AND ($2::timestamptz IS NULL OR last_event_time >= $2)
		  AND ($3::timestamptz IS NULL OR (last_event_time, command_id) > ($3, $4))
		ORDER BY last_event_time, command_id
		LIMIT $5`

// OpenCommands returns a page of commands that are not final, as q says.
// ctx bounds the query.
func (s *Store) OpenCommands(ctx context.Context, q OpenQuery) ([]CommandRef, error) {
	afterTime, afterID := pgtype.Timestamptz{}, ""
	if q.After != nil {
		afterTime, afterID = pgtype.Timestamptz{Time: q.After.LastEventTime, Valid: true}, q.After.CommandID
	}
	if q.Stuck > 0 {
		rows, err := s.pool.Query(ctx, `
			SELECT command_id, coalesce(device_id, ''), status, last_event_time FROM stuck_commands($1)
			WHERE ($2::timestamptz IS NULL OR (last_event_time, command_id) > ($2, $3))
			ORDER BY last_event_time, command_id
			LIMIT $4`,
			pgInterval(q.Stuck), afterTime, afterID, q.Limit)
		if err != nil {
			return nil, interpretError(fmt.Errorf("select stuck commands: %w", err))
		}
		return scanRefs(rows)
	}
	rows, err := s.pool.Query(ctx, openCommands,
		q.Before, pgtype.Timestamptz{Time: q.Since, Valid: !q.Since.IsZero()}, afterTime, afterID, q.Limit)
	if err != nil {
		return nil, interpretError(fmt.Errorf("select open commands: %w", err))
	}
	return scanRefs(rows)
}

// CommandsByID returns the stored commands among ids, whatever their status,
// in command id order. Ids not stored are left out. ctx bounds the query.
func (s *Store) CommandsByID(ctx context.Context, ids []string) ([]CommandRef, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT command_id, coalesce(device_id, ''), status, last_event_time FROM device_commands
		WHERE command_id = ANY($1) ORDER BY command_id`, ids)
	if err != nil {
		return nil, interpretError(fmt.Errorf("select commands by id: %w", err))
	}
	return scanRefs(rows)
}

// StuckHorizon is cmdtrack_settings.stuck_horizon: how long after its last
// move a command not final still counts as stuck (the stuck_commands view)
// and is reconciled without being asked for (a threshold run). A month
// counts as 30 days. ctx bounds the query.
func (s *Store) StuckHorizon(ctx context.Context) (time.Duration, error) {
	var seconds float64
	var text string
	err := s.pool.QueryRow(ctx, `SELECT extract(epoch FROM stuck_horizon)::float8, stuck_horizon::text FROM cmdtrack_settings`).Scan(&seconds, &text)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, interpretError(errors.New("cmdtrack_settings has no row; restore the defaults with INSERT INTO cmdtrack_settings DEFAULT VALUES"))
	}
	if err != nil {
		return 0, interpretError(fmt.Errorf("read cmdtrack_settings.stuck_horizon: %w", err))
	}
	// Past a time.Duration's range the conversion wraps, and a horizon of
	// centuries would select every open command.
	if !(math.Abs(seconds) < math.MaxInt64/float64(time.Second)) {
		return 0, interpretError(fmt.Errorf("cmdtrack_settings.stuck_horizon (%s) is longer than the 292 years cmdtrack can count; "+
			"set one of days, e.g. UPDATE cmdtrack_settings SET stuck_horizon = '30 days'", text))
	}
	return time.Duration(seconds * float64(time.Second)), nil
}

func scanRefs(rows pgx.Rows) ([]CommandRef, error) {
	refs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (CommandRef, error) {
		var r CommandRef
		var status string
		err := row.Scan(&r.CommandID, &r.DeviceID, &status, &r.LastEventTime)
		r.Status = notification.Status(status)
		return r, err
	})
	if err != nil {
		return nil, interpretError(fmt.Errorf("read commands: %w", err))
	}
	return refs, nil
}

// TryLock takes the session advisory lock called name (scoped to the
// current schema, so that deployments or tests sharing a database do not
// share it) on a connection of its own, outside the pool: holding it for a
// long job costs the pool nothing. ok is false, with a nil unlock, when
// another session holds it. unlock releases the lock and closes the
// connection; losing the connection releases it too. ctx bounds taking the lock, not
// holding it.
func (s *Store) TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, false, interpretError(fmt.Errorf("lock %s: %w", name, err))
	}
	const key = `hashtextextended($1 || ':' || coalesce(current_schema(), ''), 0)`
	closeConn := func(unlock bool) {
		// Unlocking must happen whether ctx has ended or not.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		// The server releases a closed session's locks only once its backend
		// has exited; unlocking first frees the lock for the next taker now.
		if unlock {
			_, _ = conn.Exec(cctx, `SELECT pg_advisory_unlock(`+key+`)`, name)
		}
		_ = conn.Close(cctx)
	}
	err = conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+key+`)`, name).Scan(&ok)
	if err != nil || !ok {
		closeConn(false)
		if err != nil {
			return nil, false, interpretError(fmt.Errorf("lock %s: %w", name, err))
		}
		return nil, false, nil
	}
	return func() { closeConn(true) }, true, nil
}
