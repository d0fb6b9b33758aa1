package ingest_test

import (
	"testing"
	"time"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
)

// BenchmarkClassify decodes realistic notification bodies (the simulator's
// seed-000 shape, a tenth with the API reference's misspelt resource) into
// store items, as the worker does for every message.
func BenchmarkClassify(b *testing.B) {
	s := simulate.Generate(simulate.Config{Commands: 500, Seed: 3})
	bodies := make([][]byte, len(s.Messages))
	var size int
	for i, m := range s.Messages {
		bodies[i] = m.Body
		size += len(m.Body)
	}
	b.SetBytes(int64(size / len(bodies)))
	b.ReportAllocs()
	now := time.Now()
	lim := ingest.Limits{MaxBodyBytes: 1 << 20}
	i := 0
	for b.Loop() {
		it := ingest.Classify(bodies[i], "amqp:DefaultQueue", now, lim)
		if it.Notification == nil {
			b.Fatalf("not decoded: %+v", it.DeadLetter)
		}
		i++
		if i == len(bodies) {
			i = 0
		}
	}
}
