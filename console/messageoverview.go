package console

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// messageCell is the messages of one hour (by their day), product and
// status.
type messageCell struct {
	hour            time.Time
	product, status string
	n               int64
}

const messageCellsSQL = `SELECT date_trunc('hour', coalesce(pending_time, first_seen_at), 'UTC'),
	coalesce(product_id, ''), status, count(*)
	FROM device_messages WHERE coalesce(pending_time, first_seen_at) >= $1
	GROUP BY 1, 2, 3 ORDER BY 2`

// messageCells counts the messages since from by hour, product and status,
// straight from device_messages: an index-only scan of the window's entries
// of the day index, which holds the product and the status (migration
// 018). No rollup: `make bench/scale` times it.
func messageCells(ctx context.Context, db *pgxpool.Pool, from time.Time) ([]messageCell, error) {
	rows, err := db.Query(ctx, messageCellsSQL, from)
	if err != nil {
		return nil, fmt.Errorf("read message outcomes: %w", err)
	}
	cells, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (messageCell, error) {
		var c messageCell
		return c, r.Scan(&c.hour, &c.product, &c.status, &c.n)
	})
	if err != nil {
		return nil, fmt.Errorf("read message outcomes: %w", err)
	}
	return cells, nil
}

// messageWindow sums the cells (in product order) from the hour from on.
func messageWindow(cells []messageCell, from time.Time) MessageWindow {
	w := MessageWindow{Products: []ProductMessageRates{}}
	by := map[string]int64{}
	for _, c := range cells {
		if c.hour.Before(from) {
			continue
		}
		by[c.status] += c.n
		w.Total.add(c.status, c.n)
		if len(w.Products) == 0 || w.Products[len(w.Products)-1].ProductID != c.product {
			w.Products = append(w.Products, ProductMessageRates{ProductID: c.product})
		}
		w.Products[len(w.Products)-1].add(c.status, c.n)
	}
	for _, s := range messageStatuses {
		w.Statuses = append(w.Statuses, MessageCount{Status: s, Messages: by[s]})
	}
	return w
}
