package consumer_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/consumer"
	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/pipeline"
	"github.com/cmdtrack/cmdtrack/store"
)

type fixture struct {
	st    *store.Store
	queue string
	pub   *testenv.Publisher
}

func setup(t *testing.T) *fixture {
	t.Helper()
	st, _, _ := testenv.Schema(t)
	q := testenv.Queue(t)
	return &fixture{st: st, queue: q, pub: testenv.NewPublisher(t, q)}
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("CMDTRACK_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// run is what start started: the broker, and the registry holding both
// the broker's and the pipeline's metrics.
type run struct {
	broker *consumer.Broker
	reg    *prometheus.Registry
	stop   func() error
}

// options change what start runs.
type options struct {
	pipeline pipeline.Config
	broker   func(*consumer.BrokerConfig)
	// applier replaces the fixture's store (to take the database away).
	applier pipeline.Applier
	// hook is called with the broker before it runs.
	hook func(*consumer.Broker)
	// log replaces the test's logger.
	log *slog.Logger
}

// start runs the AMQP source and the pipeline on the fixture's queue until
// the test ends, and returns a function that stops them and returns the
// pipeline's error.
func (f *fixture) start(t *testing.T, cfg pipeline.Config, credit, maxBody int) (stop func() error) {
	t.Helper()
	return f.startWith(t, options{pipeline: cfg, broker: func(c *consumer.BrokerConfig) {
		c.Credit = credit
		if maxBody != 0 {
			c.Limits.MaxBodyBytes = maxBody
		}
	}}).stop
}

func (f *fixture) startWith(t *testing.T, o options) *run {
	t.Helper()
	log := testLogger(t)
	if o.log != nil {
		log = o.log
	}
	bc := consumer.BrokerConfig{
		URL: testenv.AMQPURL(t), Queues: []string{f.queue}, Credit: 256,
		Limits:      ingest.Limits{MaxBodyBytes: 1 << 20},
		MaxBytes:    32 << 20,
		IdleTimeout: 8 * time.Second, DialTimeout: 10 * time.Second,
		ReconnectMin: 100 * time.Millisecond, ReconnectMax: time.Second,
	}
	if o.broker != nil {
		o.broker(&bc)
	}
	reg := prometheus.NewRegistry()
	b, err := consumer.NewBroker(bc, log, consumer.NewMetrics(reg))
	require.NoError(t, err)
	if o.hook != nil {
		o.hook(b)
	}
	cfg := o.pipeline
	if cfg.BatchSize == 0 {
		cfg = pipeline.Config{BatchSize: 256, BatchWait: 20 * time.Millisecond}
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, time.Second
	}
	var st pipeline.Applier = f.st
	if o.applier != nil {
		st = o.applier
	}
	p := pipeline.New(st, cfg, log, pipeline.NewMetrics(reg))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		err := p.Run(ctx, 10*time.Second, b)
		closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancelClose()
		_ = b.Close(closeCtx)
		errc <- err
	}()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("consumer did not stop within 30s of cancellation")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return &run{broker: b, reg: reg, stop: stop}
}

// metric sums the samples of a series whose labels include those given
// (name=value pairs).
func (r *run) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	fams, err := r.reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, fam := range fams {
		if fam.GetName() != name {
			continue
		}
	samples:
		for _, m := range fam.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue samples
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func (f *fixture) count(t *testing.T, query string) int {
	t.Helper()
	return testenv.Count(t, f.st.Pool(), query)
}

func bodies(s *simulate.Stream) [][]byte { return simulate.Bodies(s.Messages) }

// TestEndToEnd publishes a few thousand shuffled, duplicated notifications
// with poison and foreign messages mixed in, runs the consumer, and checks
// every command's final row, the history and the dead letters.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s := simulate.Generate(simulate.Config{
		Commands: 1000, Seed: 7, OutOfOrder: 1, Duplicate: 0.15, Poison: 0.02, Foreign: 0.03,
	})
	require.Greater(t, len(s.Messages), 4000)
	f.pub.SendAll(t, bodies(s))

	start := time.Now()
	stop := f.start(t, pipeline.Config{}, 256, 0)
	testenv.WaitStored(t, f.st.Pool(), s, 2*time.Minute)
	elapsed := time.Since(start)
	require.NoError(t, stop())
	testenv.VerifyStream(t, f.st.Pool(), s, f.queue)
	t.Logf("%d messages (%d commands, %d distinct notifications, %d poison) stored in %s: %.0f msg/s",
		len(s.Messages), len(s.Commands), s.Events, s.Poison, elapsed.Round(time.Millisecond),
		float64(len(s.Messages))/elapsed.Seconds())
}

// TestHostileInput sends what a careless or hostile sender might: other
// body encodings, oversized and deeply nested bodies, wrong types, NUL,
// SQL-looking strings. Each ends as a stored row or as a dead letter with
// the right reason; none blocks the stream. (Several Data sections are
// covered by TestMessageBody: RabbitMQ's AMQP 1.0 plugin keeps only the last.)
func TestHostileInput(t *testing.T) {
	t.Parallel()
	f := setup(t)
	valid := func(id, status string) string {
		return `{"resource":"device.command.status","event":"update","event_time":"20261101T000000Z",` +
			`"notify_data":{"header":{"device_id":"d1"},"body":{"command_id":"` + id + `","status":"` + status + `"}}}`
	}
	cases := []struct {
		msg   *amqp.Message
		class string // "" means stored
		id    string
	}{
		{amqp.NewMessage([]byte(valid("data", "SENT"))), "", "data"},
		{&amqp.Message{Value: valid("value-string", "SENT")}, "", "value-string"},
		{&amqp.Message{Value: []byte(valid("value-binary", "SENT"))}, "", "value-binary"},
		{amqp.NewMessage([]byte(valid("x'; DROP TABLE device_commands; --", "DELIVERED"))), "", "x'; DROP TABLE device_commands; --"},
		{&amqp.Message{Value: int64(42)}, "invalid_json", ""},
		{amqp.NewMessage([]byte(`{"resource":"device.command.status","event":"update","event_time":"20261101T000000Z","pad":"` + strings.Repeat("x", 8000) + `"}`)), "too_large", ""},
		{amqp.NewMessage([]byte(strings.Repeat("[", 100000) + strings.Repeat("]", 100000))), "too_large", ""},
		{amqp.NewMessage([]byte(strings.Repeat(`{"a":`, 600) + "1" + strings.Repeat("}", 600))), "not_notification", ""},
		{amqp.NewMessage([]byte(strings.Replace(valid("nul", "SENT"), `"d1"`, `"d\u0000"`, 1))), "unstorable", ""},
		{amqp.NewMessage([]byte(strings.Replace(valid("typed", "SENT"), `"SENT"`, `7`, 1))), "invalid_field", ""},
		{amqp.NewMessage([]byte(strings.Replace(valid("year", "SENT"), "20261101T000000Z", "99991231T235959Z", 1))), "invalid_time", ""},
		{amqp.NewMessage([]byte(strings.Replace(valid("forged", "FAILED"), "20261101T000000Z", "20991231T235959Z", 1))), "future_event_time", ""},
		{amqp.NewMessage([]byte{0xff, 0xfe, '{', '}'}), "not_utf8", ""},
		{amqp.NewMessage([]byte(valid("unknown", "CANCELED"))), "unknown_status", ""},
		{amqp.NewMessage([]byte(`{"resource":"device.property","event":"report"}`)), "skipped", ""},
	}
	for _, c := range cases {
		f.pub.SendMessage(t, c.msg)
	}
	stop := f.start(t, pipeline.Config{BatchSize: 4, BatchWait: 10 * time.Millisecond}, 16, 4096)
	wantDead := 0
	for _, c := range cases {
		if c.class != "" && c.class != "skipped" {
			wantDead++
		}
	}
	require.Eventually(t, func() bool {
		return f.count(t, `SELECT count(*) FROM dead_letters`) == wantDead &&
			f.count(t, `SELECT count(*) FROM device_commands`) == 4
	}, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, stop())
	for _, c := range cases {
		switch c.class {
		case "", "skipped":
			if c.id != "" {
				require.Equal(t, 1, f.countArgs(t, `SELECT count(*) FROM device_commands WHERE command_id = $1`, c.id), c.id)
			}
		default:
			require.GreaterOrEqual(t, f.countArgs(t, `SELECT count(*) FROM dead_letters WHERE reason_class = $1 AND reason <> ''`, c.class), 1, c.class)
		}
	}
	// Dead letters keep the body byte for byte.
	require.Equal(t, 1, f.countArgs(t, `SELECT count(*) FROM dead_letters WHERE body = $1`, []byte{0xff, 0xfe, '{', '}'}))
	testenv.RequireQueueEmpty(t, f.queue)
}

func (f *fixture) countArgs(t *testing.T, query string, args ...any) int {
	t.Helper()
	return testenv.Count(t, f.st.Pool(), query, args...)
}
