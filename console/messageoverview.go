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

const messageCellsSQL = `SELECT hour, product_id, status, messages FROM message_outcomes_hourly
	WHERE hour >= $1 ORDER BY product_id`

// messageCells counts the messages since from (the start of an hour) by
// hour, product and status, from the hourly rollup that upkeep refreshes
// every minute (migration 020, store/rollup.go), as the commands' windows
// do: its size follows the products and the hours, not the messages.
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
