package consumer_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cmdtrack/cmdtrack/consumer"
	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/pipeline"
)

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
		log := slog.New(slog.DiscardHandler)
		br, err := consumer.NewBroker(consumer.BrokerConfig{
			URL: testenv.AMQPURL(b), Queues: []string{q}, Credit: 256, MaxBytes: 32 << 20, Limits: ingest.Limits{MaxBodyBytes: 1 << 20},
			IdleTimeout: 8 * time.Second, DialTimeout: 10 * time.Second,
			ReconnectMin: 100 * time.Millisecond, ReconnectMax: time.Second,
		}, log, consumer.NewMetrics(reg))
		if err != nil {
			b.Fatal(err)
		}
		p := pipeline.New(st, pipeline.Config{BatchSize: 256, BatchWait: 20 * time.Millisecond,
			RetryMin: 50 * time.Millisecond, RetryMax: time.Second}, log, pipeline.NewMetrics(reg))
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { errc <- p.Run(ctx, 10*time.Second, br) }()
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
		closeCtx, cancelClose := context.WithTimeout(context.Background(), 5*time.Second)
		_ = br.Close(closeCtx)
		cancelClose()
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
