package console_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/console"
)

// The overview's and /outcomes' message counts come from the rollup
// (migration 020) and equal what counting device_messages gives, the way
// the console counted them before it: per window, product and status, and
// per product, day and status, for every product and for one.
func TestMessageCountsFromRollup(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	srv := f.server(t, console.Config{})
	type key struct{ product, day, status string }
	// count runs the reference query (product, day or '', status, count)
	// into a map, zero counts left out.
	count := func(q string, args ...any) map[key]int64 {
		t.Helper()
		rows, err := f.st.Pool().Query(ctx, q, args...)
		require.NoError(t, err)
		defer rows.Close()
		out := map[key]int64{}
		for rows.Next() {
			var k key
			var n int64
			require.NoError(t, rows.Scan(&k.product, &k.day, &k.status, &n))
			out[k] = n
		}
		require.NoError(t, rows.Err())
		return out
	}
	add := func(m map[key]int64, k key, n int64) {
		if n != 0 {
			m[k] += n
		}
	}

	var o struct {
		Windows []struct {
			Name     string    `json:"name"`
			From     time.Time `json:"from"`
			Messages struct {
				Products []struct {
					ProductID string `json:"product_id"`
					Delivered int64  `json:"delivered"`
					Failed    int64  `json:"failed"`
					TimedOut  int64  `json:"timed_out"`
					Pending   int64  `json:"pending"`
				} `json:"products"`
			} `json:"messages"`
		} `json:"windows"`
	}
	getJSON(t, srv.URL, "/", &o)
	require.Len(t, o.Windows, 2)
	for _, w := range o.Windows {
		want := count(`SELECT coalesce(product_id, ''), '', status, count(*) FROM device_messages
			WHERE coalesce(pending_time, first_seen_at) >= $1 GROUP BY 1, 3`, w.From)
		require.NotEmpty(t, want, w.Name)
		got := map[key]int64{}
		for _, p := range w.Messages.Products {
			add(got, key{p.ProductID, "", "DELIVERED"}, p.Delivered)
			add(got, key{p.ProductID, "", "FAILED"}, p.Failed)
			add(got, key{p.ProductID, "", "TIMEOUT"}, p.TimedOut)
			add(got, key{p.ProductID, "", "PENDING"}, p.Pending)
		}
		require.Equal(t, want, got, "the overview's %s", w.Name)
	}

	for _, product := range []string{"", "gas-meter", "water-meter", "no-such-product"} {
		var p struct {
			FromDay  string `json:"from_day"`
			Products []struct {
				ProductID string `json:"product_id"`
				Days      []struct {
					Day       string `json:"day"`
					Delivered int64  `json:"delivered"`
					Failed    int64  `json:"failed"`
					TimedOut  int64  `json:"timed_out"`
					Pending   int64  `json:"pending"`
				} `json:"days"`
			} `json:"message_products"`
		}
		getJSON(t, srv.URL, "/outcomes?days=30&product="+product, &p)
		want := count(`SELECT coalesce(product_id, ''),
			to_char((coalesce(pending_time, first_seen_at) AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD'), status, count(*)
			FROM device_messages WHERE coalesce(pending_time, first_seen_at) >= $1::date AND ($2 = '' OR product_id = $2)
			GROUP BY 1, 2, 3`, p.FromDay, product)
		got := map[key]int64{}
		for _, pr := range p.Products {
			for _, d := range pr.Days {
				add(got, key{pr.ProductID, d.Day, "DELIVERED"}, d.Delivered)
				add(got, key{pr.ProductID, d.Day, "FAILED"}, d.Failed)
				add(got, key{pr.ProductID, d.Day, "TIMEOUT"}, d.TimedOut)
				add(got, key{pr.ProductID, d.Day, "PENDING"}, d.Pending)
			}
		}
		if product != "no-such-product" {
			require.NotEmpty(t, want, "product %q", product)
		}
		require.Equal(t, want, got, "/outcomes, product %q", product)
	}
}
