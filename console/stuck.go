package console

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
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
	// MessageCount is every message PENDING that long
	// (stuck_messages(quiet), the same quiet); Messages the 200 waiting
	// longest. MessagesCapped: at least MessageCount.
	MessageCount   int64          `json:"message_count"`
	MessagesCapped bool           `json:"messages_capped"`
	Messages       []StuckMessage `json:"messages"`
}

// StuckMessage is a message in stuck_messages: PENDING, held by the
// platform for its device.
type StuckMessage struct {
	DeviceID      string     `json:"device_id"`
	MessageID     string     `json:"message_id"`
	ProductID     string     `json:"product_id"`
	Name          string     `json:"name"`
	PendingTime   *time.Time `json:"pending_time"`
	LastEventTime time.Time  `json:"last_event_time"`
	StuckForS     float64    `json:"stuck_for_s"`
	// DeviceStatus is the device's presence, empty when cmdtrack has heard
	// of no status change of it: an offline device explains a message
	// PENDING.
	DeviceStatus      string     `json:"device_status,omitempty"`
	DeviceStatusSince *time.Time `json:"device_status_since,omitempty"`
	URL               string     `json:"url"`
}

func loadStuck(ctx context.Context, db *pgxpool.Pool, quiet time.Duration) (*StuckPage, error) {
	p := &StuckPage{QuietS: quiet.Seconds()}
	iv := interval(quiet)
	var err error
	if p.Count, p.Capped, err = countStuck(ctx, db, stuckCommands, quiet); err != nil {
		return nil, err
	}
	if p.MessageCount, p.MessagesCapped, err = countStuck(ctx, db, stuckMessages, quiet); err != nil {
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
	// The open messages' index (migration 015), in the order of their last
	// move, waiting longest first.
	rows, err = db.Query(ctx, `SELECT device_id, message_id, coalesce(product_id, ''), coalesce(name, ''), pending_time,
		last_event_time, extract(epoch FROM stuck_for)::float8, coalesce(device_status, ''), device_status_since
		FROM stuck_messages($1::interval) ORDER BY last_event_time, device_id, message_id LIMIT 200`, iv)
	if err != nil {
		return nil, fmt.Errorf("list stuck messages: %w", err)
	}
	p.Messages, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (StuckMessage, error) {
		var s StuckMessage
		err := r.Scan(&s.DeviceID, &s.MessageID, &s.ProductID, &s.Name, &s.PendingTime, &s.LastEventTime, &s.StuckForS,
			&s.DeviceStatus, &s.DeviceStatusSince)
		s.URL = messagePath(s.DeviceID, s.MessageID)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("list stuck messages: %w", err)
	}
	return p, nil
}

// stuckCommands and stuckMessages are the one definition of stuck of each
// kind (migrations 014 and 015), with the same quiet.
const (
	stuckCommands = "stuck_commands"
	stuckMessages = "stuck_messages"
)

// stuckCountCap bounds how many stuck commands a page counts: past it, the
// page says "at least" (the metric cmdtrack_commands_stuck has the exact
// figure). Counting every open command within the stuck horizon took 237 ms
// at 10 M commands.
const stuckCountCap = 10_000

// countStuck counts the rows of stuck(quiet) (stuckCommands or
// stuckMessages), up to stuckCountCap.
func countStuck(ctx context.Context, db *pgxpool.Pool, stuck string, quiet time.Duration) (n int64, capped bool, err error) {
	err = db.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM `+stuck+`($1::interval) LIMIT $2) s`,
		interval(quiet), stuckCountCap+1).Scan(&n)
	if err != nil {
		return 0, false, fmt.Errorf("count %s: %w", strings.ReplaceAll(stuck, "_", " "), err)
	}
	if n > stuckCountCap {
		return stuckCountCap, true, nil
	}
	return n, false, nil
}

var stuckPage = endpoint[*StuckPage]{template: "stuck", title: "Stuck commands and messages", nav: "stuck",
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
