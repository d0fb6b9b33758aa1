package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cmdtrack/cmdtrack/notification"
)

// openStatuses are the statuses a command may be stuck in.
var openStatuses = []string{string(notification.Pending), string(notification.Sent), string(notification.Delivered)}

// Stuck counts, by status, the commands not final whose last notification
// is older than before. Each status is one range of the status index.
func (s *Store) Stuck(ctx context.Context, before time.Time) (map[notification.Status]int64, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT s, (SELECT count(*) FROM device_commands WHERE status = s AND last_event_time < $2)
		FROM unnest($1::text[]) AS s`, openStatuses, before)
	if err != nil {
		return nil, interpretError(fmt.Errorf("count stuck commands: %w", err))
	}
	out := make(map[notification.Status]int64, len(openStatuses))
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

// NewestEvent is the event time of the newest notification stored (zero:
// none). It takes the greatest of each status's newest, so that each is
// one step down the status index, not a scan of the table.
func (s *Store) NewestEvent(ctx context.Context) (time.Time, error) {
	var t pgtype.Timestamptz
	err := s.pool.QueryRow(ctx, `
		SELECT max((SELECT max(last_event_time) FROM device_commands WHERE status = s))
		FROM unnest($1::text[]) AS s`, allStatuses()).Scan(&t)
	if err != nil {
		return time.Time{}, interpretError(fmt.Errorf("read the newest notification's time: %w", err))
	}
	return t.Time, nil
}

func allStatuses() []string {
	return []string{string(notification.Pending), string(notification.Sent), string(notification.Delivered),
		string(notification.Successful), string(notification.Failed), string(notification.Timeout),
		string(notification.Expired), string(notification.Canceled)}
}
