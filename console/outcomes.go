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

// OutcomeDay is one product's outcomes on one day.
type OutcomeDay struct {
	Day         string  `json:"day"`
	Commands    int64   `json:"commands"`
	Successful  int64   `json:"successful"`
	Failed      int64   `json:"failed"`
	TimedOut    int64   `json:"timed_out"`
	Expired     int64   `json:"expired"`
	Canceled    int64   `json:"canceled"`
	FailureRate float64 `json:"failure_rate"`
	TimeoutRate float64 `json:"timeout_rate"`
}

// ProductOutcomes are a product's days.
type ProductOutcomes struct {
	ProductID string       `json:"product_id"`
	Days      []OutcomeDay `json:"days"`
	Chart     *Chart       `json:"-"`
}

// OutcomesPage is /outcomes.
type OutcomesPage struct {
	Product  string            `json:"product,omitempty"`
	Days     int               `json:"days"`
	FromDay  string            `json:"from_day"`
	Products []ProductOutcomes `json:"products"`
	// MessageProducts are the device messages' outcomes, per product and
	// day likewise.
	MessageProducts []ProductMessageOutcomes `json:"message_products"`
}

func loadOutcomes(ctx context.Context, db *pgxpool.Pool, product string, days int, now time.Time) (*OutcomesPage, error) {
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	from := today.AddDate(0, 0, -days+1)
	p := &OutcomesPage{Product: product, Days: days, FromDay: from.Format(time.DateOnly), Products: []ProductOutcomes{}}
	q := `SELECT coalesce(product_id, ''), day, commands, successful, failed, timed_out, expired, canceled,
		failure_rate::float8, timeout_rate::float8 FROM product_daily_outcomes WHERE day >= $1::date`
	args := []any{from}
	if product != "" {
		q += ` AND coalesce(product_id, '') = $2`
		args = append(args, product)
	}
	rows, err := db.Query(ctx, q+` ORDER BY 1, day`, args...)
	if err != nil {
		return nil, fmt.Errorf("read outcomes: %w", err)
	}
	var d OutcomeDay
	var pid string
	var day time.Time
	_, err = pgx.ForEachRow(rows, []any{&pid, &day, &d.Commands, &d.Successful, &d.Failed, &d.TimedOut, &d.Expired,
		&d.Canceled, &d.FailureRate, &d.TimeoutRate}, func() error {
		d.Day = day.Format(time.DateOnly)
		if n := len(p.Products); n == 0 || p.Products[n-1].ProductID != pid {
			p.Products = append(p.Products, ProductOutcomes{ProductID: pid})
		}
		last := &p.Products[len(p.Products)-1]
		last.Days = append(last.Days, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read outcomes: %w", err)
	}
	for i := range p.Products {
		p.Products[i].Chart = outcomeChart(p.Products[i], from, days)
	}
	if p.MessageProducts, err = loadMessageOutcomes(ctx, db, product, from, days); err != nil {
		return nil, err
	}
	return p, nil
}

var outcomesPage = endpoint[*OutcomesPage]{template: "outcomes", title: "Outcomes", nav: "outcomes",
	load: func(ctx context.Context, db *pgxpool.Pool, r *http.Request, now time.Time) (*OutcomesPage, error) {
		q := r.URL.Query()
		days := 30
		if s := q.Get("days"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 366 {
				return nil, badRequest("days must be a number from 1 to 366")
			}
			days = n
		}
		return loadOutcomes(ctx, db, strings.TrimSpace(q.Get("product")), days, now)
	}}
