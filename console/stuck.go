package console

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultStuckQuiet is how long a command has not moved before the overview
// and /stuck call it stuck, when Config.StuckQuiet is zero: the default of
// CMDTRACK_RECONCILE_THRESHOLD, which the gauge and reconcile use.
const DefaultStuckQuiet = time.Hour

// stuckQuietKey carries Config.StuckQuiet to the pages in their context.
type stuckQuietKey struct{}

// stuckQuiet is the quiet time of the one definition of stuck
// (stuck_commands(quiet)) that the overview counts and /stuck shows unless
// ?quiet= says otherwise.
func stuckQuiet(ctx context.Context) time.Duration {
	if d, ok := ctx.Value(stuckQuietKey{}).(time.Duration); ok && d > 0 {
		return d
	}
	return DefaultStuckQuiet
}

// interval is d as PostgreSQL reads an interval.
func interval(d time.Duration) string {
	return strconv.FormatInt(d.Microseconds(), 10) + " microseconds"
}

// Stuck is a command in stuck_commands.
type Stuck struct {
	CommandID     string     `json:"command_id"`
	DeviceID      string     `json:"device_id"`
	ProductID     string     `json:"product_id"`
	Status        string     `json:"status"`
	CreatedTime   *time.Time `json:"created_time"`
	LastEventTime time.Time  `json:"last_event_time"`
	StuckForS     float64    `json:"stuck_for_s"`
	// DeviceStatus is the device's presence (ONLINE, OFFLINE, ...), empty
	// when cmdtrack has heard of no status change of it.
	DeviceStatus      string     `json:"device_status,omitempty"`
	DeviceStatusSince *time.Time `json:"device_status_since,omitempty"`
}

// StuckPage is /stuck.
type StuckPage struct {
	QuietS float64 `json:"quiet_s"`
	// Count is every stuck command quiet that long; Commands the 200 stuck
	// longest.
	Count int64 `json:"count"`
	// Capped: there are at least Count (stuckCountCap) of them.
	Capped   bool    `json:"capped"`
	Commands []Stuck `json:"commands"`
}

func loadStuck(ctx context.Context, db *pgxpool.Pool, quiet time.Duration) (*StuckPage, error) {
	p := &StuckPage{QuietS: quiet.Seconds()}
	iv := interval(quiet)
	var err error
	if p.Count, p.Capped, err = countStuck(ctx, db, quiet); err != nil {
		return nil, err
	}
	// The cookbook's form: the open commands' index (migration 008) in the
	// order of their last move, quiet longest first.
	rows, err := db.Query(ctx, `SELECT command_id, coalesce(device_id, ''), coalesce(product_id, ''), status, created_time,
		last_event_time, extract(epoch FROM stuck_for)::float8, coalesce(device_status, ''), device_status_since
		FROM stuck_commands($1::interval) ORDER BY last_event_time, command_id LIMIT 200`, iv)
	if err != nil {
		return nil, fmt.Errorf("list stuck commands: %w", err)
	}
	p.Commands, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Stuck, error) {
		var s Stuck
		return s, r.Scan(&s.CommandID, &s.DeviceID, &s.ProductID, &s.Status, &s.CreatedTime, &s.LastEventTime, &s.StuckForS,
			&s.DeviceStatus, &s.DeviceStatusSince)
	})
	if err != nil {
		return nil, fmt.Errorf("list stuck commands: %w", err)
	}
	return p, nil
}

// stuckCountCap bounds how many stuck commands a page counts: past it, the
// page says "at least" (the metric cmdtrack_commands_stuck has the exact
// figure). Counting every open command within the stuck horizon took 237 ms
// at 10 M commands.
const stuckCountCap = 10_000

// countStuck counts the commands of stuck_commands(quiet), up to
// stuckCountCap.
func countStuck(ctx context.Context, db *pgxpool.Pool, quiet time.Duration) (n int64, capped bool, err error) {
	err = db.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM stuck_commands($1::interval) LIMIT $2) s`,
		interval(quiet), stuckCountCap+1).Scan(&n)
	if err != nil {
		return 0, false, fmt.Errorf("count stuck commands: %w", err)
	}
	if n > stuckCountCap {
		return stuckCountCap, true, nil
	}
	return n, false, nil
}

var stuckPage = endpoint[*StuckPage]{template: "stuck", title: "Stuck commands", nav: "stuck",
	load: func(ctx context.Context, db *pgxpool.Pool, r *http.Request, _ time.Time) (*StuckPage, error) {
		quiet := stuckQuiet(ctx)
		if s := r.URL.Query().Get("quiet"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 {
				return nil, badRequest("quiet must be a duration such as 10m or 2h")
			}
			quiet = d
		}
		return loadStuck(ctx, db, quiet)
	}}
