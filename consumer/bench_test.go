package consumer_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cmdtrack/cmdtrack/consumer"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// BenchmarkDecodeItem decodes realistic notification bodies (the simulator's
// seed-000 shape, a tenth with the API reference's misspelt resource) into
// store items, as the worker does for every message.
func BenchmarkDecodeItem(b *testing.B) {
	s := simulate.Generate(simulate.Config{Commands: 500, Seed: 3})
	bodies := make([][]byte, len(s.Messages))
	var size int
	for i, m := range s.Messages {
		bodies[i] = m.Body
		size += len(m.Body)
	}
	b.SetBytes(int64(size / len(bodies)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		it := consumer.DecodeItem(bodies[i], "amqp:DefaultQueue", 1<<20)
		if it.Notification == nil {
			b.Fatalf("not decoded: %+v", it.DeadLetter)
		}
		i++
		if i == len(bodies) {
			i = 0
		}
	}
}

// BenchmarkConsumerDrain runs the whole pipeline in process (broker ->
// decode and batch -> store.Apply -> accept) against the test broker and
// database, draining a preloaded backlog of 20,000 messages per iteration;
// publishing is not timed. Use it to profile the worker:
//
//	go test -run '^$' -bench ConsumerDrain -benchtime 1x -cpuprofile cpu.out ./consumer
func BenchmarkConsumerDrain(b *testing.B) {
	const backlog = 20000
	s := simulate.GenerateN(simulate.Config{Seed: 5, OutOfOrder: 0.1, Duplicate: 0.02, Poison: 0.001}, backlog)
	msgs := bodies(s)
	for range b.N {
		b.StopTimer()
		st, _, _ := testenv.Schema(b)
		q := testenv.Queue(b)
		testenv.NewPublisher(b, q).SendAll(b, msgs)
		reg := prometheus.NewRegistry()
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		m := consumer.NewMetrics(reg)
		br, err := consumer.NewBroker(consumer.BrokerConfig{
			URL: testenv.AMQPURL(b), Queues: []string{q}, Credit: 256,
			IdleTimeout: 8 * time.Second, DialTimeout: 10 * time.Second,
			ReconnectMin: 100 * time.Millisecond, ReconnectMax: time.Second,
		}, log, m)
		if err != nil {
			b.Fatal(err)
		}
		c := consumer.New(br, st, consumer.BatchConfig{Size: 256, Wait: 20 * time.Millisecond, MaxBodyBytes: 1 << 20,
			RetryMin: 50 * time.Millisecond, RetryMax: time.Second}, log, m)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { errc <- c.Run(ctx, 10*time.Second) }()
		deadline := time.Now().Add(5 * time.Minute)
		for settled(b, reg) < len(msgs) {
			if time.Now().After(deadline) {
				b.Fatalf("backlog not drained within 5 minutes (%d of %d settled)", settled(b, reg), len(msgs))
			}
			time.Sleep(5 * time.Millisecond)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		cancel()
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(msgs))/elapsed.Seconds(), "msgs/s")
	}
}

// settled sums the counters of messages stored (or skipped) and accepted.
func settled(tb testing.TB, reg *prometheus.Registry) int {
	tb.Helper()
	fams, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var n float64
	for _, f := range fams {
		switch f.GetName() {
		case "cmdtrack_messages_applied_total", "cmdtrack_messages_skipped_total", "cmdtrack_messages_dead_lettered_total":
			for _, m := range f.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return int(n)
}
