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
		if it.Notification() == nil {
			b.Fatalf("not decoded: %+v", it.DeadLetter)
		}
		i++
		if i == len(bodies) {
			i = 0
		}
	}
}

// BenchmarkClassifyKinds classifies each kind of message the queue carries
// on its own: the v5 notification, another resource's push (skipped), the
// simulator's poison messages (dead letters) and a legacy callback.
func BenchmarkClassifyKinds(b *testing.B) {
	s := simulate.Generate(simulate.Config{Commands: 200, Seed: 5, Poison: 0.5, Foreign: 0.5})
	kinds := map[simulate.Kind][][]byte{}
	for _, m := range s.Messages {
		kinds[m.Kind] = append(kinds[m.Kind], m.Body)
	}
	legacy := [][]byte{[]byte(`{"deviceId":"92d3f8da-200a-4143-8d0d-591a7e11de6c","commandId":"108a9c71462a48e09426e06e844d47ba","result":{"resultCode":"SENT","resultDetail":null}}`)}
	now := time.Now()
	lim := ingest.Limits{MaxBodyBytes: 1 << 20}
	for _, c := range []struct {
		name   string
		bodies [][]byte
	}{
		{"valid", kinds[simulate.Valid]}, {"foreign", kinds[simulate.Foreign]},
		{"poison", kinds[simulate.Poison]}, {"legacy", legacy},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				ingest.Classify(c.bodies[i], "amqp:DefaultQueue", now, lim)
				i = (i + 1) % len(c.bodies)
			}
		})
	}
}

// BenchmarkClassifyStreams classifies the simulator's command stream and
// its device message stream (MessageShare 1, both body shapes), valid
// notifications only, as the worker does for every message: a message
// must cost no more than a command (issue 28).
func BenchmarkClassifyStreams(b *testing.B) {
	for _, c := range []struct {
		name  string
		share float64
	}{{"commands", 0}, {"messages", 1}} {
		s := simulate.Generate(simulate.Config{Commands: 500, Seed: 3, MessageShare: c.share})
		var bodies [][]byte
		var size int
		for _, m := range s.Messages {
			if m.Kind == simulate.Valid || m.Kind == simulate.MessageChange {
				bodies = append(bodies, m.Body)
				size += len(m.Body)
			}
		}
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(size / len(bodies)))
			b.ReportAllocs()
			now := time.Now()
			lim := ingest.Limits{MaxBodyBytes: 1 << 20}
			i := 0
			for b.Loop() {
				it := ingest.Classify(bodies[i], "amqp:DefaultQueue", now, lim)
				if it.Record == nil {
					b.Fatalf("not decoded: %+v", it.DeadLetter)
				}
				i = (i + 1) % len(bodies)
			}
		})
	}
}
