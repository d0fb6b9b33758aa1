package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// RefreshRollup recomputes command_outcomes_daily (what the view
// product_daily_outcomes reads) for the days from days-1 days before now's
// day to now's: the days whose commands can still change. A day's commands
// are found through the index on their creation day, so the cost is that of
// the days refreshed, not of the table. Call it under an advisory lock.
// ctx bounds the run.
func (s *Store) RefreshRollup(ctx context.Context, days int, now time.Time) error {
	now = now.UTC()
	since := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, -max(days, 1)+1)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM command_outcomes_daily WHERE day >= $1::date`, since); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO command_outcomes_daily (day, product_id, status, commands)
			SELECT (coalesce(created_time, first_seen_at) AT TIME ZONE 'UTC')::date, coalesce(product_id, ''), status, count(*)
			FROM device_commands
			WHERE coalesce(created_time, first_seen_at) >= $1
			GROUP BY 1, 2, 3`, since)
		return err
	})
	if err != nil {
		return fmt.Errorf("refresh command_outcomes_daily: %w", err)
	}
	return nil
}
