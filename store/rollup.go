package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// hourlyKept is how far back the hourly rollups reach: the console's week,
// and a day to spare.
const hourlyKept = 8 * 24 * time.Hour

// outcomeRollup is one kind's outcome rollups: rows per hour and per day,
// product and status, counted from the kind's table by the kind's day (the
// expression of its day index, so that a refresh reads the days refreshed,
// not the table). The rollup tables have the columns (hour or day,
// product_id, status, count), product_id ” for rows without one.
type outcomeRollup struct {
	table  string
	day    string
	hourly string
	daily  string
	count  string // the rollup tables' count column
}

// outcomeRollups are the kinds with a rollup: the console's overview and
// /outcomes read them, never the kinds' tables. A kind with outcomes adds a
// line here and its two tables in a migration.
var outcomeRollups = []outcomeRollup{
	{table: "device_commands", day: `coalesce(created_time, first_seen_at)`,
		hourly: "command_outcomes_hourly", daily: "command_outcomes_daily", count: "commands"},
	{table: "device_messages", day: `coalesce(pending_time, first_seen_at)`,
		hourly: "message_outcomes_hourly", daily: "message_outcomes_daily", count: "messages"},
}

// queue adds the statements that recompute r's hourly rollup, and the
// daily one from it, from since on, and drop the hours older than old.
func (r outcomeRollup) queue(b *pgx.Batch, since, old time.Time) {
	b.Queue(`DELETE FROM `+r.hourly+` WHERE hour >= $1 OR hour < $2`, since, old)
	b.Queue(`DELETE FROM `+r.daily+` WHERE day >= $1::date`, since)
	b.Queue(`
		INSERT INTO `+r.hourly+` (hour, product_id, status, `+r.count+`)
		SELECT date_trunc('hour', `+r.day+`, 'UTC'), coalesce(product_id, ''), status, count(*)
		FROM `+r.table+`
		WHERE `+r.day+` >= $1
		GROUP BY 1, 2, 3`, since)
	b.Queue(`
		INSERT INTO `+r.daily+` (day, product_id, status, `+r.count+`)
		SELECT (hour AT TIME ZONE 'UTC')::date, product_id, status, sum(`+r.count+`)
		FROM `+r.hourly+`
		WHERE hour >= $1
		GROUP BY 1, 2, 3`, since)
}

// RefreshRollup recomputes every kind's daily rollup (command_outcomes_daily
// is what the view product_daily_outcomes reads) for the days from days-1
// days before now's day to now's: the days whose commands and messages can
// still change, and its hourly rollup (the console's sliding windows) for
// the same span, from one scan of those rows. A day's rows are found
// through the kind's day index, so the cost is that of the days refreshed,
// not of the table. One transaction: the console never sees one kind
// refreshed and the other not. Call it under an advisory lock. ctx bounds
// the run.
func (s *Store) RefreshRollup(ctx context.Context, days int, now time.Time) error {
	now = now.UTC()
	since := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, -max(days, 1)+1)
	old := now.Add(-hourlyKept).Truncate(time.Hour)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, r := range outcomeRollups {
			r.queue(b, since, old)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return interpretError(fmt.Errorf("refresh the outcome rollups: %w", err))
	}
	return nil
}
