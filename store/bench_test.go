package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// benchItems decodes a realistic stream (out of order, duplicates, a little
// poison) of n messages into what the consumer hands to Apply.
func benchItems(tb testing.TB, n int) []ingest.Item {
	tb.Helper()
	s := simulate.GenerateN(simulate.Config{Seed: 99, OutOfOrder: 0.1, Duplicate: 0.02, Poison: 0.001}, n)
	items := make([]ingest.Item, len(s.Messages))
	for i, m := range s.Messages {
		items[i].Source = "amqp:bench"
		note, err := notification.Decode(m.Body)
		if err != nil {
			items[i].DeadLetter = &ingest.DeadLetter{Class: notification.ClassInvalidJSON, Reason: err.Error(), Body: m.Body}
			continue
		}
		items[i].Record = &note
	}
	return items
}

// BenchmarkApply writes batches of decoded notifications (256, as the
// worker's default CMDTRACK_BATCH_SIZE, and neighbours) into a fresh schema,
// one Apply per batch, every batch new data. ns/op is per batch; msgs/s is
// the write throughput of one writer.
func BenchmarkApply(b *testing.B) {
	benchmarkApply(b, false)
}

// BenchmarkApplyTracking is BenchmarkApply with the outcome metrics' change
// tracking on, as the worker runs it (store.OnChange).
func BenchmarkApplyTracking(b *testing.B) {
	benchmarkApply(b, true)
}

func benchmarkApply(b *testing.B, tracking bool) {
	for _, size := range []int{64, 256, 1024} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			st, _, _ := testenv.Schema(b)
			if tracking {
				st.OnChange(func([]store.Change) {})
			}
			items := benchItems(b, b.N*size)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := st.Apply(ctx, items[i*size:(i+1)*size]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
