package consumer

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/pipeline"
)

// fakeReceiver plays a broker link that sends only what credit allows.
type fakeReceiver struct {
	mu        sync.Mutex
	acceptErr error
	backlog   [][]byte // waiting on the broker
	arrived   []*amqp.Message
	credit    uint32
	issued    []uint32
	accepted  int
	wake      chan struct{}
	// gone, if set, ends the link when closed: Receive returns goneErr.
	gone    <-chan struct{}
	goneErr error
}

func newFakeReceiver(n int) *fakeReceiver {
	r := &fakeReceiver{wake: make(chan struct{}, 1)}
	for range n {
		r.backlog = append(r.backlog, []byte(`{"resource":"device.status","event":"update"}`))
	}
	return r
}

// flow moves as many messages as credit allows from the backlog to the
// client, as a broker would.
func (r *fakeReceiver) flow() {
	for r.credit > 0 && len(r.backlog) > 0 {
		r.arrived = append(r.arrived, amqp.NewMessage(r.backlog[0]))
		r.backlog = r.backlog[1:]
		r.credit--
	}
}

func (r *fakeReceiver) IssueCredit(n uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.arrived) > 0 || r.credit > 0 {
		// The previous window has not fully arrived: with RabbitMQ's plugin
		// this is what makes go-amqp's credit wrap and the link stall.
		panic("credit issued before the previous window arrived")
	}
	r.issued = append(r.issued, n)
	r.credit += n
	r.flow()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

func (r *fakeReceiver) Receive(ctx context.Context, _ *amqp.ReceiveOptions) (*amqp.Message, error) {
	for {
		if m := r.Prefetched(); m != nil {
			return m, nil
		}
		select {
		case <-r.wake:
		case <-r.gone:
			return nil, r.goneErr
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (r *fakeReceiver) Prefetched() *amqp.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.arrived) == 0 {
		return nil
	}
	m := r.arrived[0]
	r.arrived = r.arrived[1:]
	return m
}

func (r *fakeReceiver) AcceptMessage(context.Context, *amqp.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.acceptErr != nil {
		return r.acceptErr
	}
	r.accepted++
	return nil
}

// The link never holds more unsettled messages than its credit, issues a
// window only once the previous one has arrived and enough earlier messages
// are settled or abandoned, and keeps the unsettled gauge exact.
func TestLinkCreditAccounting(t *testing.T) {
	t.Parallel()
	fr := newFakeReceiver(100)
	m := NewMetrics(prometheus.NewRegistry())
	l := newLink(fr, linkConfig{queue: "q", credit: 8, limits: ingest.Limits{MaxBodyBytes: 1024}}, m)
	ctx := context.Background()
	next := func() pipeline.Delivery {
		t.Helper()
		d := l.Prefetched()
		if d == nil {
			var err error
			d, err = l.Next(ctx)
			require.NoError(t, err)
		}
		return d
	}
	var held []pipeline.Delivery
	for range 8 {
		held = append(held, next())
	}
	require.Equal(t, []uint32{2, 2, 2, 2}, fr.issued, "a quarter of the credit at a time")
	require.Equal(t, float64(8), value(t, m.unsettled))

	// All credit is in hand: the link waits rather than asking for more.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err := l.Next(short)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Len(t, fr.issued, 4)

	// One settled and one abandoned free one window.
	require.NoError(t, held[0].Settle(ctx, ingest.Result{Outcome: ingest.Skipped}))
	held[1].Abandon()
	require.Equal(t, float64(6), value(t, m.unsettled))
	held = held[2:]
	held = append(held, next(), next())
	require.Equal(t, []uint32{2, 2, 2, 2, 2}, fr.issued)
	require.Equal(t, float64(8), value(t, m.unsettled))
	require.Equal(t, 1, fr.accepted)

	for _, d := range held {
		require.NoError(t, d.Settle(ctx, ingest.Result{Outcome: ingest.Skipped}))
	}
	require.Zero(t, value(t, m.unsettled))
	require.Equal(t, float64(10), value(t, m.received.WithLabelValues("q")))
}

// Deliveries are classified on the link's goroutine, with the queue as
// source and the message's properties on a dead letter.
func TestLinkClassifies(t *testing.T) {
	t.Parallel()
	fr := newFakeReceiver(0)
	fr.backlog = [][]byte{[]byte(`not json`)}
	l := newLink(fr, linkConfig{queue: "DefaultQueue", credit: 4, limits: ingest.Limits{MaxBodyBytes: 1024}}, NewMetrics(nil))
	d, err := l.Next(context.Background())
	require.NoError(t, err)
	it := d.Item()
	require.Equal(t, "amqp:DefaultQueue", it.Source)
	require.NotNil(t, it.DeadLetter)
	require.Equal(t, "DefaultQueue", it.DeadLetter.Properties["queue"])
	d.Abandon()
}

func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.GetCounter().GetValue()
}

// The byte budget bounds what a link holds and has asked for. Credit is
// counted at the size its messages are expected to have: the body limit
// before any has arrived, then the largest recent one (at least 4 KiB), so
// that small messages get full windows and large ones small windows.
func TestLinkByteBudget(t *testing.T) {
	t.Parallel()
	fr := newFakeReceiver(1000) // bodies of 45 bytes
	budget := newBytesBudget(64 << 10)
	l := newLink(fr, linkConfig{queue: "q", credit: 64, limits: ingest.Limits{MaxBodyBytes: 8 << 10},
		budget: budget}, NewMetrics(nil))
	ctx := context.Background()
	d, err := l.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, []uint32{4}, fr.issued, "nothing seen yet: half of 64 KiB holds four messages of the 8 KiB limit")
	// One message arrived (45 bytes held), three credits outstanding at 8 KiB.
	require.Equal(t, int64(45+3*8<<10), budget.inUse())
	held := []pipeline.Delivery{d}
	for range 3 {
		held = append(held, l.Prefetched())
	}
	d, err = l.Next(ctx)
	require.NoError(t, err)
	held = append(held, d)
	require.Equal(t, []uint32{4, 8}, fr.issued, "small messages seen: half of 64 KiB holds eight of 4 KiB (a quarter of the credit would be 16)")
	for range 7 {
		held = append(held, l.Prefetched())
	}
	require.Equal(t, int64(12*45), budget.inUse())

	// A budget taken by the others keeps the next window waiting...
	budget.adjust(64<<10 - 12*45 - 8*4<<10 + 1)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err = l.Next(short)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	budget.adjust(-(64<<10 - 12*45 - 8*4<<10 + 1))
	// ...until what they hold is settled.
	for _, d := range held {
		d.Abandon()
	}
	_, err = l.Next(ctx)
	require.NoError(t, err)
	l.finish()
	require.Equal(t, int64(45), budget.inUse(), "finish gives back what was promised for messages that never came")
}

// A run of large messages shrinks the next windows to what the budget holds
// of them; the surprise of one window is all it may overshoot by.
func TestLinkWindowFollowsMessageSize(t *testing.T) {
	t.Parallel()
	fr := newFakeReceiver(0)
	for i := range 300 {
		size := 100
		if i >= 20 {
			size = 20 << 10 // from the 21st on, 20 KiB each
		}
		fr.backlog = append(fr.backlog, []byte(`{"resource":"device.message","pad":"`+strings.Repeat("x", size)+`"}`))
	}
	budget := newBytesBudget(256 << 10)
	l := newLink(fr, linkConfig{queue: "q", credit: 256, limits: ingest.Limits{MaxBodyBytes: 64 << 10},
		budget: budget}, NewMetrics(nil))
	ctx := context.Background()
	var peak int64
	for range 300 {
		d, err := l.Next(ctx)
		require.NoError(t, err)
		peak = max(peak, budget.inUse())
		d.Abandon()
	}
	require.Equal(t, uint32(2), fr.issued[0], "half of 256 KiB holds two of the 64 KiB limit")
	require.Equal(t, uint32(32), fr.issued[1], "then 32 of the 4 KiB floor")
	require.Equal(t, uint32(6), fr.issued[len(fr.issued)-1], "then six of 20 KiB")
	require.LessOrEqual(t, peak, int64(256<<10+32*(20<<10)), "at most one window over the budget")
}

// An accept that cannot be sent aborts the link (once): it stops receiving,
// so that the broker, seeing the link end, delivers the message again now.
func TestSettleFailureAbortsTheLink(t *testing.T) {
	t.Parallel()
	fr := newFakeReceiver(10)
	aborts := 0
	l := newLink(fr, linkConfig{queue: "q", credit: 8, limits: ingest.Limits{MaxBodyBytes: 1024},
		abort: func() { aborts++ }}, NewMetrics(nil))
	ctx := context.Background()
	d1, err := l.Next(ctx)
	require.NoError(t, err)
	d2 := l.Prefetched()
	fr.acceptErr = errors.New("write tcp: i/o timeout")
	require.Error(t, d1.Settle(ctx, ingest.Result{Outcome: ingest.Skipped}))
	require.Error(t, d2.Settle(ctx, ingest.Result{Outcome: ingest.Skipped}))
	require.Equal(t, 1, aborts)
	require.Nil(t, l.Prefetched(), "an aborted link hands out nothing more")
	_, err = l.Next(ctx)
	require.ErrorIs(t, err, errAborted)
}

// A broker that sends more than the credit issued (RabbitMQ's plugin does
// when a flow frame crosses transfers in flight) gets its extra message
// taken, with a token and its bytes, before any new credit is issued.
func TestLinkOverDelivery(t *testing.T) {
	t.Parallel()
	fr := newFakeReceiver(20)
	budget := newBytesBudget(64 << 10)
	l := newLink(fr, linkConfig{queue: "q", credit: 16, limits: ingest.Limits{MaxBodyBytes: 1024},
		budget: budget}, NewMetrics(nil))
	ctx := context.Background()
	var held []pipeline.Delivery
	for range 4 { // a window of 4
		d, err := l.Next(ctx)
		require.NoError(t, err)
		held = append(held, d)
	}
	fr.mu.Lock()
	fr.arrived = append(fr.arrived, amqp.NewMessage([]byte(`{"resource":"device.status","event":"update"}`))) // one too many
	fr.mu.Unlock()
	d, err := l.Next(ctx) // the fake panics if credit is issued while it is buffered
	require.NoError(t, err)
	held = append(held, d)
	require.Len(t, fr.issued, 1)
	require.Equal(t, int64(5*45), budget.inUse())
	for _, d := range held {
		d.Abandon()
	}
	require.Zero(t, budget.inUse())
	_, err = l.Next(ctx)
	require.NoError(t, err, "then the link issues credit again")
	require.Len(t, fr.issued, 2)
}

// One message larger than the body limit (a dead letter to be) counts in the
// size window as the limit, not as itself: before, it shrank every window to
// one credit for the next thousand or two messages.
func TestLinkWindowIgnoresOneHugeMessage(t *testing.T) {
	t.Parallel()
	fr := newFakeReceiver(0)
	small := []byte(`{"resource":"device.status","event":"update"}`)
	for i := range 40 {
		if i == 10 {
			fr.backlog = append(fr.backlog, []byte(`{"pad":"`+strings.Repeat("x", 1<<20)+`"}`)) // 128 times the limit
			continue
		}
		fr.backlog = append(fr.backlog, small)
	}
	budget := newBytesBudget(64 << 10)
	l := newLink(fr, linkConfig{queue: "q", credit: 64, limits: ingest.Limits{MaxBodyBytes: 8 << 10},
		budget: budget}, NewMetrics(nil))
	ctx := context.Background()
	for range 40 {
		d, err := l.Next(ctx)
		require.NoError(t, err)
		d.Abandon()
	}
	// 4 of the 8 KiB limit before any is seen, then 8 of the 4 KiB floor;
	// after the huge one, 4 of the limit again (half of 64 KiB), not 1.
	require.Equal(t, []uint32{4, 8, 4, 4, 4, 4, 4, 4, 4}, fr.issued)
}
