package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cmdtrack/cmdtrack/notification"
)

// Stuck counts, by status, the commands stuck_commands(quiet) holds: not
// final, quiet for longer than quiet, moved within the stuck horizon (the
// console's and reconcile's definition too). It reads the open commands'
// index within the horizon.
func (s *Store) Stuck(ctx context.Context, quiet time.Duration) (map[notification.Status]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT status, count(*) FROM stuck_commands($1) GROUP BY status`, pgInterval(quiet))
	if err != nil {
		return nil, interpretError(fmt.Errorf("count stuck commands: %w", err))
	}
	out := map[notification.Status]int64{}
	var status string
	var n int64
	for rows.Next() {
		if err := rows.Scan(&status, &n); err != nil {
			return nil, interpretError(fmt.Errorf("count stuck commands: %w", err))
		}
		out[notification.Status(status)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, interpretError(fmt.Errorf("count stuck commands: %w", err))
	}
	return out, nil
}

// MessagesStuck counts the device messages stuck_messages(quiet) holds:
// PENDING (held by the platform for an offline device) for longer than
// quiet, moved within the stuck horizon. It reads the waiting messages'
// index within the horizon.
func (s *Store) MessagesStuck(ctx context.Context, quiet time.Duration) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM stuck_messages($1)`, pgInterval(quiet)).Scan(&n); err != nil {
		return 0, interpretError(fmt.Errorf("count stuck messages: %w", err))
	}
	return n, nil
}

// pgInterval is d as a PostgreSQL interval, to the microsecond, for the
// quiet time stuck_commands(quiet) takes.
func pgInterval(d time.Duration) pgtype.Interval {
	return pgtype.Interval{Microseconds: d.Microseconds(), Valid: true}
}

// NewestEventSQL is the event time of the newest notification that moved a
// command (NULL: none), the gauge's and the console overview's: the greater
// of the open commands' newest, the end of device_commands_open_idx, and the
// final ones', the end of device_commands_final_idx (migration 024). Two
// index probes whatever the table holds; the two predicates are the
// indexes' own, which between them hold every command.
const NewestEventSQL = `SELECT greatest(
	(SELECT max(last_event_time) FROM device_commands WHERE status IN ('PENDING', 'SENT', 'DELIVERED')),
	(SELECT max(last_event_time) FROM device_commands WHERE status NOT IN ('PENDING', 'SENT', 'DELIVERED')))`

// NewestEvent is the event time of the newest notification stored (zero:
// none): NewestEventSQL.
func (s *Store) NewestEvent(ctx context.Context) (time.Time, error) {
	var t pgtype.Timestamptz
	if err := s.pool.QueryRow(ctx, NewestEventSQL).Scan(&t); err != nil {
		return time.Time{}, interpretError(fmt.Errorf("read the newest notification's time: %w", err))
	}
	return t.Time, nil
}

func allStatuses() []string {
	return []string{string(notification.Pending), string(notification.Sent), string(notification.Delivered),
		string(notification.Successful), string(notification.Failed), string(notification.Timeout),
		string(notification.Expired), string(notification.Canceled)}
}
