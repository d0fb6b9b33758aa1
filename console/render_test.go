package console

import (
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"
)

// The outcome page's charts are drawn on the server: 20 products of 30 days
// each must not make the page slow.
func BenchmarkOutcomesRender(b *testing.B) {
	h, err := NewHandler(nil, Config{Addr: DefaultAddr}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	from := now.AddDate(0, 0, -29)
	p := &OutcomesPage{Days: 30, FromDay: from.Format(time.DateOnly)}
	for i := range 20 {
		po := ProductOutcomes{ProductID: fmt.Sprintf("prod-%d", i)}
		for d := range 30 {
			po.Days = append(po.Days, OutcomeDay{Day: from.AddDate(0, 0, d).Format(time.DateOnly), Commands: 1000, Successful: 900,
				Failed: 60, TimedOut: 30, FailureRate: 0.06, TimeoutRate: 0.03})
		}
		po.Chart = outcomeChart(po, from, 30)
		p.Products = append(p.Products, po)
	}
	r := httptest.NewRequest("GET", "/outcomes", nil)
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.render(w, r, 200, "outcomes", "Outcomes", "outcomes", p)
		_, _ = io.Copy(io.Discard, w.Body)
	}
}
