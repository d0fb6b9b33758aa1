package consumer

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/pipeline"
	"github.com/cmdtrack/cmdtrack/pipeline/pipelinetest"
)

// The broker keeps the Source contract, on fakes of go-amqp (one queue):
// every message it hands out is accepted or given back once, and none is
// held unsettled once the pipeline has returned.
func TestBrokerKeepsTheSourceContract(t *testing.T) {
	t.Parallel()
	pipelinetest.TestSource(t, func(t *testing.T) pipelinetest.Harness {
		fr := newFakeReceiver(0)
		m := NewMetrics(prometheus.NewRegistry())
		b, err := newBroker(BrokerConfig{
			URL: "amqp://broker.invalid", Queues: []string{"q"}, Credit: 8, Limits: ingest.Limits{MaxBodyBytes: 1024},
			ReconnectMin: time.Millisecond, ReconnectMax: time.Millisecond,
		}, slog.New(slog.DiscardHandler), m, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		b.dialer = &fakeDialer{conns: make(chan *fakeConn, 16), attach: func(string, *amqp.ReceiverOptions) (amqpReceiver, error) {
			return fr, nil
		}}
		t.Cleanup(func() { _ = b.Close(context.Background()) })
		return pipelinetest.Harness{Source: b, Sender: &linkSender{fr: fr, m: m}}
	})
}

// An AMQP link keeps it too, alone, as runQueue runs it.
func TestLinkKeepsTheSourceContract(t *testing.T) {
	t.Parallel()
	pipelinetest.TestSource(t, func(*testing.T) pipelinetest.Harness {
		fr := newFakeReceiver(0)
		m := NewMetrics(prometheus.NewRegistry())
		l := newLink(fr, linkConfig{queue: "q", credit: 8, limits: ingest.Limits{MaxBodyBytes: 1024}}, m)
		return pipelinetest.Harness{Source: linkSource{l}, Sender: &linkSender{fr: fr, m: m}}
	})
}

// linkSource runs one link as runQueue does, without the network.
type linkSource struct{ l *Link }

func (s linkSource) Run(ctx context.Context, consume func(context.Context, pipeline.Receiver) error) error {
	err := consume(ctx, s.l)
	s.l.finish()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (s linkSource) Ready() error                { return nil }
func (s linkSource) Connected() bool             { return true }
func (s linkSource) Close(context.Context) error { return nil }

// linkSender is the broker's side of the fake link.
type linkSender struct {
	fr *fakeReceiver
	m  *Metrics
}

func (s *linkSender) Send(n int) {
	s.fr.mu.Lock()
	for range n {
		s.fr.backlog = append(s.fr.backlog, []byte(`{"resource":"device.status","event":"update"}`))
	}
	s.fr.flow()
	s.fr.mu.Unlock()
	select {
	case s.fr.wake <- struct{}{}:
	default:
	}
}

func (s *linkSender) Settled() int {
	s.fr.mu.Lock()
	defer s.fr.mu.Unlock()
	return s.fr.accepted
}

func (s *linkSender) Outstanding() int {
	var m dto.Metric
	if err := s.m.unsettled.Write(&m); err != nil {
		panic(err)
	}
	return int(m.GetGauge().GetValue())
}
