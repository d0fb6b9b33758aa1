package consumer_test

import (
	"context"
	"log/slog"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/consumer"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/pipeline"
)

// go-amqp tells some failures only in words (conn.go says which); these
// tests pin those words against a real broker, so that a go-amqp upgrade
// that changes them fails here rather than in production.

// A refused password is told to the operator as refused credentials, not as
// a network failure.
func TestRefusedCredentialsAreRecognised(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(testenv.AMQPURL(t))
	require.NoError(t, err)
	u.User = url.UserPassword(u.User.Username(), "not-the-password")
	logs := &records{}
	b, err := consumer.NewBroker(consumer.BrokerConfig{
		URL: u.String(), Queues: []string{testenv.Queue(t)},
		DialTimeout: 10 * time.Second, ReconnectMin: time.Second, ReconnectMax: time.Second,
	}, slog.New(logs), consumer.NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- b.Run(ctx, func(context.Context, pipeline.Receiver) error { return nil })
	}()
	require.Eventually(t, func() bool {
		logs.mu.Lock()
		defer logs.mu.Unlock()
		return len(logs.msgs) > 0
	}, 20*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	logs.mu.Lock()
	defer logs.mu.Unlock()
	require.Equal(t, consumer.LogAuthRefused, logs.msgs[0])
}

// A broker that answers another sender settle mode than the one asked for
// (RabbitMQ answers "unsettled" to "mixed") gets the attach again without
// asking, with a warning, and the queue is consumed.
func TestMixedSettleModeFallsBack(t *testing.T) {
	t.Parallel()
	f := setup(t)
	logs := &records{}
	s := simulate.Generate(simulate.Config{Commands: 20, Seed: 61})
	f.pub.SendAll(t, bodies(s))
	r := f.startWith(t, options{log: slog.New(logs), hook: func(b *consumer.Broker) {
		consumer.AskSenderSettleMode(b, amqp.SenderSettleModeMixed)
	}})
	testenv.WaitStored(t, f.st.Pool(), s, time.Minute)
	require.NoError(t, r.stop())
	logs.mu.Lock()
	defer logs.mu.Unlock()
	require.True(t, slices.Contains(logs.msgs, consumer.LogMixedSettle), "got %q", logs.msgs)
	require.Zero(t, r.metric(t, "cmdtrack_queue_failures_total"), "the fallback is no failure")
}
