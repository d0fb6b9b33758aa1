package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// hourlyKept is how far back command_outcomes_hourly reaches: the console's
// week, and a day to spare.
const hourlyKept = 8 * 24 * time.Hour

// RefreshRollup recomputes command_outcomes_daily (what the view
// product_daily_outcomes reads) for the days from days-1 days before now's
// day to now's: the days whose commands can still change, and
// command_outcomes_hourly (the console's sliding windows) for the same span,
// from one scan of those commands. A day's commands are found through the
// index on their creation day, so the cost is that of the days refreshed,
// not of the table. Call it under an advisory lock. ctx bounds the run.
func (s *Store) RefreshRollup(ctx context.Context, days int, now time.Time) error {
	now = now.UTC()
	since := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, -max(days, 1)+1)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`DELETE FROM command_outcomes_hourly WHERE hour >= $1 OR hour < $2`, since, now.Add(-hourlyKept).Truncate(time.Hour))
		b.Queue(`DELETE FROM command_outcomes_daily WHERE day >= $1::date`, since)
		b.Queue(`
			INSERT INTO command_outcomes_hourly (hour, product_id, status, commands)
			SELECT date_trunc('hour', coalesce(created_time, first_seen_at), 'UTC'), coalesce(product_id, ''), status, count(*)
			FROM device_commands
			WHERE coalesce(created_time, first_seen_at) >= $1
			GROUP BY 1, 2, 3`, since)
		b.Queue(`
			INSERT INTO command_outcomes_daily (day, product_id, status, commands)
			SELECT (hour AT TIME ZONE 'UTC')::date, product_id, status, sum(commands)
			FROM command_outcomes_hourly
			WHERE hour >= $1
			GROUP BY 1, 2, 3`, since)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return interpretError(fmt.Errorf("refresh the outcome rollups: %w", err))
	}
	return nil
}
