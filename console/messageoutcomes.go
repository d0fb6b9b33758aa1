package console

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// MessageOutcomeDay is one product's messages of one day.
type MessageOutcomeDay struct {
	Day         string  `json:"day"`
	Messages    int64   `json:"messages"`
	Delivered   int64   `json:"delivered"`
	Failed      int64   `json:"failed"`
	TimedOut    int64   `json:"timed_out"`
	Pending     int64   `json:"pending"`
	FailureRate float64 `json:"failure_rate"`
	TimeoutRate float64 `json:"timeout_rate"`
}

// ProductMessageOutcomes are a product's days of messages.
type ProductMessageOutcomes struct {
	ProductID string              `json:"product_id"`
	Days      []MessageOutcomeDay `json:"days"`
	Chart     *Chart              `json:"-"`
}

// messageOutcomesQuery is loadMessageOutcomes' statement: rows of product,
// day, status and count, by product and day.
func messageOutcomesQuery(product string, from time.Time) (string, []any) {
	const q = `SELECT product_id, day, status, messages FROM message_outcomes_daily WHERE day >= $1::date`
	if product == "" {
		return q + ` ORDER BY 1, 2`, []any{from}
	}
	return q + ` AND product_id = $2 ORDER BY 2`, []any{from, product}
}

// loadMessageOutcomes counts the messages of the days from from on by
// product, day (UTC, by the message's day) and status, from the daily
// rollup that upkeep refreshes every minute (migration 020,
// store/rollup.go), as the commands' outcomes do.
func loadMessageOutcomes(ctx context.Context, db *pgxpool.Pool, product string, from time.Time, days int) ([]ProductMessageOutcomes, error) {
	q, args := messageOutcomesQuery(product, from)
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read message outcomes: %w", err)
	}
	out := []ProductMessageOutcomes{}
	var pid, status string
	var d time.Time
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&pid, &d, &status, &n}, func() error {
		if k := len(out); k == 0 || out[k-1].ProductID != pid {
			out = append(out, ProductMessageOutcomes{ProductID: pid})
		}
		p := &out[len(out)-1]
		ds := d.Format(time.DateOnly)
		if k := len(p.Days); k == 0 || p.Days[k-1].Day != ds {
			p.Days = append(p.Days, MessageOutcomeDay{Day: ds})
		}
		day := &p.Days[len(p.Days)-1]
		var r MessageRates
		r.Messages, r.Delivered, r.Failed, r.TimedOut, r.Pending = day.Messages, day.Delivered, day.Failed, day.TimedOut, day.Pending
		r.add(status, n)
		day.Messages, day.Delivered, day.Failed, day.TimedOut, day.Pending = r.Messages, r.Delivered, r.Failed, r.TimedOut, r.Pending
		day.FailureRate, day.TimeoutRate = r.FailureRate, r.TimeoutRate
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read message outcomes: %w", err)
	}
	for i := range out {
		// The commands' chart, of the messages' rates.
		po := ProductOutcomes{ProductID: out[i].ProductID}
		for _, d := range out[i].Days {
			po.Days = append(po.Days, OutcomeDay{Day: d.Day, Commands: d.Messages, Failed: d.Failed, TimedOut: d.TimedOut,
				FailureRate: d.FailureRate, TimeoutRate: d.TimeoutRate})
		}
		out[i].Chart = outcomeChart(po, from, days)
	}
	return out, nil
}
