package console

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cmdtrack/cmdtrack/store"
)

// ProductRates are one product's rates.
type ProductRates struct {
	ProductID string `json:"product_id"`
	Rates
}

// Window is the overview of the commands created in a sliding window, to
// the hour: From is the start of the hour it begins with (UTC).
type Window struct {
	Name     string         `json:"name"`
	From     time.Time      `json:"from"`
	Statuses []StatusCount  `json:"statuses"`
	Total    Rates          `json:"total"`
	Products []ProductRates `json:"products"`
	// Messages are the window's device messages, by their day
	// (pending_time, or first_seen_at), to the hour.
	Messages MessageWindow `json:"messages"`
}

// QueueMark is when a queue's messages were last settled by a worker.
type QueueMark struct {
	Queue      string    `json:"queue"`
	ConsumedAt time.Time `json:"consumed_at"`
}

// Overview is /.
type Overview struct {
	Now time.Time `json:"now"`
	// Windows: "24 hours" and "7 days", sliding, to the hour (the current
	// hour and the 23 or 167 before it), from the hourly outcome rollup.
	Windows []Window `json:"windows"`
	// StuckNow counts the commands in stuck_commands(StuckQuietS), up to
	// stuckCountCap (StuckCapped: at least that many).
	StuckNow    int64   `json:"stuck_now"`
	StuckCapped bool    `json:"stuck_capped"`
	StuckQuietS float64 `json:"stuck_quiet_s"`
	// StuckMessagesNow counts the messages in
	// stuck_messages(StuckQuietS), likewise capped.
	StuckMessagesNow    int64 `json:"stuck_messages_now"`
	StuckMessagesCapped bool  `json:"stuck_messages_capped"`
	// DeadLetters counts the last 7 days' dead letters by class.
	DeadLetters []ClassCount `json:"dead_letters"`
	// NewestEventTime is the latest last_event_time of any command: when the
	// newest notification that moved a command happened.
	NewestEventTime *time.Time  `json:"newest_event_time"`
	NewestEventAgeS *float64    `json:"newest_event_age_s"`
	Queues          []QueueMark `json:"queues"`
}

func loadOverview(ctx context.Context, db *pgxpool.Pool, now time.Time) (*Overview, error) {
	o := &Overview{Now: now, DeadLetters: []ClassCount{}, Queues: []QueueMark{}}
	hour := now.UTC().Truncate(time.Hour)
	day, week := hour.Add(-23*time.Hour), hour.Add(-167*time.Hour)
	cells, err := windowCells(ctx, db, commandCellsSQL, week, day)
	if err != nil {
		return nil, fmt.Errorf("read outcomes: %w", err)
	}
	msgCells, err := windowCells(ctx, db, messageCellsSQL, week, day)
	if err != nil {
		return nil, fmt.Errorf("read message outcomes: %w", err)
	}
	for i, w := range []struct {
		name string
		from time.Time
	}{{"24 hours", day}, {"7 days", week}} {
		win := Window{Name: w.name, From: w.from, Products: []ProductRates{}}
		byStatus := map[string]int64{}
		var products []ProductRates
		for _, c := range cells {
			n := c.n[i]
			if n == nil {
				continue
			}
			byStatus[c.status] += *n
			win.Total.add(c.status, *n)
			if len(products) == 0 || products[len(products)-1].ProductID != c.product {
				products = append(products, ProductRates{ProductID: c.product})
			}
			products[len(products)-1].add(c.status, *n)
		}
		for _, s := range statuses {
			win.Statuses = append(win.Statuses, StatusCount{Status: s, Commands: byStatus[s]})
		}
		if products != nil {
			win.Products = products
		}
		win.Messages = messageWindow(msgCells, i)
		o.Windows = append(o.Windows, win)
	}

	o.StuckQuietS = stuckQuiet(ctx).Seconds()
	if o.StuckNow, o.StuckCapped, err = countStuck(ctx, db, stuckCommands, stuckQuiet(ctx)); err != nil {
		return nil, err
	}
	if o.StuckMessagesNow, o.StuckMessagesCapped, err = countStuck(ctx, db, stuckMessages, stuckQuiet(ctx)); err != nil {
		return nil, err
	}
	if o.DeadLetters, err = countClasses(ctx, db, "$1", now.Add(-7*24*time.Hour)); err != nil {
		return nil, err
	}
	// The gauge's statement (cmdtrack_newest_notification_age_seconds).
	if err := db.QueryRow(ctx, store.NewestEventSQL).Scan(&o.NewestEventTime); err != nil {
		return nil, fmt.Errorf("read the newest event: %w", err)
	}
	if o.NewestEventTime != nil {
		age := now.Sub(*o.NewestEventTime).Seconds()
		o.NewestEventAgeS = &age
	}
	rows, err := db.Query(ctx, `SELECT queue, consumed_at FROM queue_watermarks ORDER BY queue`)
	if err != nil {
		return nil, fmt.Errorf("read queue watermarks: %w", err)
	}
	o.Queues, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (QueueMark, error) {
		var q QueueMark
		return q, r.Scan(&q.Queue, &q.ConsumedAt)
	})
	if err != nil {
		return nil, fmt.Errorf("read queue watermarks: %w", err)
	}
	return o, nil
}

// windowCell is one product's and status' count in each of the overview's
// windows, the 24 hours and the 7 days (nil: none in it).
type windowCell struct {
	product, status string
	n               [2]*int64
}

// The overview's windows, summed in SQL from a kind's hourly rollup
// (migrations 011 and 020, refreshed by upkeep every minute): the rows
// read follow the products and statuses, not the week's hours. Reading the
// week's hours and summing them here was most of the overview's time at
// 10 M messages (12,000 cells: docs/benchmarks.md, "Device messages at
// 10 M"). $1 is the week's first hour, $2 the 24 hours'.
const (
	commandCellsSQL = `SELECT product_id, status, (sum(commands) FILTER (WHERE hour >= $2))::int8, sum(commands)::int8
	FROM command_outcomes_hourly WHERE hour >= $1 GROUP BY product_id, status ORDER BY product_id, status`
	messageCellsSQL = `SELECT product_id, status, (sum(messages) FILTER (WHERE hour >= $2))::int8, sum(messages)::int8
	FROM message_outcomes_hourly WHERE hour >= $1 GROUP BY product_id, status ORDER BY product_id, status`
)

// windowCells reads a kind's windows (commandCellsSQL, messageCellsSQL),
// in product order.
func windowCells(ctx context.Context, db *pgxpool.Pool, sql string, week, day time.Time) ([]windowCell, error) {
	rows, err := db.Query(ctx, sql, week, day)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (windowCell, error) {
		var c windowCell
		return c, r.Scan(&c.product, &c.status, &c.n[0], &c.n[1])
	})
}

var overviewPage = endpoint[*Overview]{template: "overview", title: "Overview", nav: "overview",
	load: func(ctx context.Context, db *pgxpool.Pool, _ *http.Request, now time.Time) (*Overview, error) {
		return loadOverview(ctx, db, now)
	}}
