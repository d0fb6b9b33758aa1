package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/pipeline"
)

// amqpReceiver is what a Link needs of *amqp.Receiver; tests fake it.
type amqpReceiver interface {
	IssueCredit(credit uint32) error
	Receive(ctx context.Context, opts *amqp.ReceiveOptions) (*amqp.Message, error)
	Prefetched() *amqp.Message
	AcceptMessage(ctx context.Context, msg *amqp.Message) error
}

// Link is one attached receiver link, as the pipeline's Receiver. Each
// delivery it returns holds a token of the link's credit and its size in the
// queue's byte budget until it is settled or abandoned, so that unsettled
// messages never exceed the credit, nor (but for one window's surprise) their
// bytes the budget.
//
// Credit is issued by hand, one window at a time, and only once the previous
// window has fully arrived and enough earlier messages are settled: RabbitMQ's
// AMQP 1.0 plugin over-delivers when a flow frame crosses transfers in
// flight, and go-amqp's receiver then stalls for good (README, "Brokers").
//
// Credit is a promise to take whatever the broker sends, so a window is
// counted in the budget at the size its messages are expected to have: the
// largest of the last thousand or so messages (the body limit until any has
// arrived, and never more: a larger message is a dead letter), and at their
// real size once they are in. A window is a quarter of the credit, fewer if
// half the budget cannot hold that many messages of the expected size. A
// queue of small messages gets full windows, which is what a remote broker's
// round trips need; a queue of large ones gets small windows. Only a sudden
// run of messages larger than the recent ones overshoots the budget, by at
// most one window.
//
// A Link is used by one goroutine; its deliveries may be settled from another.
type Link struct {
	rcv      amqpReceiver
	sess     session // nil in tests
	cfg      linkConfig
	source   string // the items' Source: "amqp:" + queue
	maxBody  int64
	tokens   chan struct{}
	received prometheus.Counter
	unsettle prometheus.Gauge
	held     prometheus.Gauge
	presets  prometheus.Counter

	outstanding int   // credit issued and not yet used
	window      int   // the credit of the window being reserved or in flight
	expect      int64 // the size each credit of that window is counted at
	reserved    int   // tokens taken for the next window
	reservedB   int64 // budget bytes taken for the next window
	sizes       sizeWindow
	warned      bool // a pre-settled message was reported

	abortOnce sync.Once
	aborted   atomic.Bool
}

// linkConfig is what a Link needs from its broker.
type linkConfig struct {
	queue  string
	credit int
	limits ingest.Limits
	// budget is the queue's share of CMDTRACK_AMQP_MAX_BYTES; nil: no limit.
	budget *bytesBudget
	// abort ends the link so that the broker redelivers what it holds.
	abort func()
	log   *slog.Logger
	// backlog, if set, is told of each message taken and settled.
	backlog *backlog
}

func newLink(r amqpReceiver, cfg linkConfig, m *Metrics) *Link {
	cfg.credit = max(cfg.credit, 2)
	if cfg.log == nil {
		cfg.log = slog.New(slog.DiscardHandler)
	}
	return &Link{
		rcv:      r,
		cfg:      cfg,
		source:   "amqp:" + cfg.queue,
		maxBody:  int64(max(cfg.limits.MaxBodyBytes, 1)),
		tokens:   make(chan struct{}, cfg.credit),
		received: m.received.WithLabelValues(cfg.queue),
		unsettle: m.unsettled,
		held:     m.heldBytes,
		presets:  m.presettled.WithLabelValues(cfg.queue),
	}
}

// errAborted is why a link whose accept failed stops receiving.
var errAborted = errors.New("an accept could not be sent; re-attaching so that the broker delivers the message again")

// Next returns the next message, waiting for it as long as ctx allows.
func (l *Link) Next(ctx context.Context) (pipeline.Delivery, error) {
	if l.aborted.Load() {
		return nil, fmt.Errorf("queue %q: %w", l.cfg.queue, errAborted)
	}
	if l.outstanding == 0 {
		if msg := l.rcv.Prefetched(); msg != nil {
			// More than the credit issued arrived: take it (it needs a
			// token like any other) rather than issue credit while it sits
			// in go-amqp's buffer.
			return l.extra(ctx, msg)
		}
		if err := l.reserve(ctx); err != nil {
			return nil, err
		}
		if err := l.rcv.IssueCredit(uint32(l.window)); err != nil {
			return nil, fmt.Errorf("issue credit on %q: %w", l.cfg.queue, err)
		}
		l.outstanding, l.reserved, l.reservedB = l.window, 0, 0
	}
	msg, err := l.rcv.Receive(ctx, nil)
	if err != nil {
		if ctx.Err() == nil {
			err = fmt.Errorf("receive from %q: %w", l.cfg.queue, err)
		}
		return nil, err
	}
	return l.took(msg), nil
}

// reserve takes the tokens and budget bytes of the next window, waiting as
// long as ctx allows. What it took before ctx ended stays reserved for the
// next call, for the same window.
func (l *Link) reserve(ctx context.Context) error {
	if l.reserved == 0 && l.reservedB == 0 {
		l.expect = max(l.sizes.expect(l.maxBody), minExpect)
		l.window = max(1, l.cfg.credit/4)
		if l.cfg.budget != nil {
			// Half the budget at most: the other half holds what arrived
			// while it is written, so that the next window can be issued
			// meanwhile.
			l.window = max(1, min(l.window, int(l.cfg.budget.limit/2/l.expect)))
		}
	}
	for l.reserved < l.window {
		select {
		case l.tokens <- struct{}{}:
			l.reserved++
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil {
		return err // the select may pick a token over a done ctx
	}
	if need := int64(l.window) * l.expect; l.cfg.budget != nil && l.reservedB < need {
		if err := l.cfg.budget.reserve(ctx, need-l.reservedB); err != nil {
			return err
		}
		l.reservedB = need
	}
	return nil
}

// minExpect is the least a credit is counted at: the size of a command
// status notification, give or take.
const minExpect = 4 << 10

// Prefetched returns a message that has already arrived, or nil at once.
func (l *Link) Prefetched() pipeline.Delivery {
	if l.outstanding == 0 || l.aborted.Load() {
		return nil
	}
	msg := l.rcv.Prefetched()
	if msg == nil {
		return nil
	}
	return l.took(msg)
}

// took makes a delivery of a message the credit issued covered.
func (l *Link) took(msg *amqp.Message) *delivery {
	l.outstanding--
	d := l.delivery(msg)
	// Its credit was counted at the expected size; from now on it holds
	// its own.
	if l.cfg.budget != nil {
		l.cfg.budget.adjust(d.bytes - l.expect)
	}
	return d
}

// extra makes a delivery of a message beyond the credit issued.
func (l *Link) extra(ctx context.Context, msg *amqp.Message) (pipeline.Delivery, error) {
	select {
	case l.tokens <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err() // it stays in go-amqp's buffer for the next call
	}
	d := l.delivery(msg)
	if l.cfg.budget != nil {
		l.cfg.budget.adjust(d.bytes)
	}
	return d, nil
}

// delivery wraps msg, decoded, counted and with its token taken.
func (l *Link) delivery(msg *amqp.Message) *delivery {
	l.received.Inc()
	l.unsettle.Inc()
	if bl := l.cfg.backlog; bl != nil {
		bl.took()
	}
	d := &delivery{link: l, msg: msg, item: l.classify(msg), bytes: messageSize(msg)}
	// A message over the body limit is a dead letter, not what the queue
	// carries: counted as itself it would shrink the windows to one credit
	// for the next thousand or two messages.
	l.sizes.add(min(d.bytes, l.maxBody))
	l.held.Add(float64(d.bytes))
	if presettled(msg) {
		l.presets.Inc()
		if !l.warned {
			l.warned = true
			l.cfg.log.Error(LogPresettled, "queue", l.cfg.queue)
		}
	}
	return d
}

// release gives a delivery's credit token and bytes back.
func (l *Link) release(d *delivery) {
	<-l.tokens
	l.unsettle.Dec()
	l.held.Sub(float64(d.bytes))
	if bl := l.cfg.backlog; bl != nil {
		bl.released()
	}
	if l.cfg.budget != nil {
		l.cfg.budget.adjust(-d.bytes)
	}
}

// finish gives back the budget the link holds for messages that will never
// come (credit issued or reserved when the link ended). Messages in hand
// keep theirs until they are settled or abandoned. Call it once the link's
// goroutine is done with it.
func (l *Link) finish() {
	if l.cfg.budget != nil {
		l.cfg.budget.adjust(-(int64(l.outstanding)*l.expect + l.reservedB))
	}
	l.outstanding, l.reservedB = 0, 0
}

// sizeWindow remembers the largest message of the last one to two thousand.
type sizeWindow struct {
	cur, prev int64
	n         int
}

func (w *sizeWindow) add(size int64) {
	w.cur = max(w.cur, size)
	if w.n++; w.n == 1024 {
		w.prev, w.cur, w.n = w.cur, 0, 0
	}
}

// expect is the size to count the next credit at: the largest recent
// message, or unknown when none has arrived.
func (w *sizeWindow) expect(unknown int64) int64 {
	if w.cur == 0 && w.prev == 0 {
		return unknown
	}
	return max(w.cur, w.prev)
}

// abort stops the link (once): Next fails from now on, and the broker is
// made to deliver the link's unsettled messages again.
func (l *Link) abort() {
	l.abortOnce.Do(func() {
		l.aborted.Store(true)
		if l.cfg.abort != nil {
			l.cfg.abort()
		}
	})
}

// classify decides what the message means, on the link's own goroutine, so
// that the next batch is decoded while the previous one is written.
func (l *Link) classify(msg *amqp.Message) ingest.Item {
	body, err := MessageBody(msg)
	var it ingest.Item
	if err != nil {
		it = ingest.Unusable(l.source, body, err.Class, err.Reason)
	} else {
		it = ingest.Classify(body, l.source, time.Now(), l.cfg.limits)
	}
	if it.DeadLetter != nil {
		it.DeadLetter.Properties = messageProperties(msg, l.cfg.queue)
	}
	return it
}

// messageSize is what a message's body occupies.
func messageSize(m *amqp.Message) int64 {
	var n int
	for _, d := range m.Data {
		n += len(d)
	}
	switch v := m.Value.(type) {
	case string:
		n += len(v)
	case []byte:
		n += len(v)
	}
	return int64(n)
}

// presettled reports whether the sender settled msg before sending it
// (at-most-once). go-amqp (v1.7) keeps this only in an unexported field, with
// no accessor and no delivery state for a received message (Azure/go-amqp#215
// asked for one), so it is read by reflection;
// TestPresettledDeliveriesAreCounted pins the field against a real broker.
func presettled(msg *amqp.Message) bool {
	if settledField == nil {
		return false
	}
	return reflect.ValueOf(msg).Elem().FieldByIndex(settledField).Bool()
}

// settledField is where go-amqp keeps a message's settled flag (nil if it
// has none), looked up once rather than per message.
var settledField = func() []int {
	f, ok := reflect.TypeFor[amqp.Message]().FieldByName("settled")
	if !ok || f.Type.Kind() != reflect.Bool {
		return nil
	}
	return f.Index
}()

// delivery is one received message, not yet settled.
type delivery struct {
	link  *Link
	msg   *amqp.Message
	item  ingest.Item
	bytes int64
}

func (d *delivery) Item() ingest.Item { return d.item }

// Settle accepts the message. In settle mode "first" the accept waits only
// for its frame to be written to the connection. If it cannot be, the link
// is aborted, so that the broker delivers the message again now rather than
// when the connection next drops.
func (d *delivery) Settle(ctx context.Context, _ ingest.Result) error {
	err := d.link.rcv.AcceptMessage(ctx, d.msg)
	d.link.release(d)
	if err != nil {
		d.link.abort()
	} else if bl := d.link.cfg.backlog; bl != nil {
		bl.settled()
	}
	return err
}

// Abandon leaves the message unsettled: the broker delivers it again once
// the link is gone.
func (d *delivery) Abandon() { d.link.release(d) }

// MessageBody returns the payload of an AMQP message: its Data sections
// (concatenated, if there are several), or an AmqpValue holding a string or
// binary: IoTDA's demos send both. A message without a usable body comes with
// the reason, and whatever body it had, for its dead letter.
func MessageBody(m *amqp.Message) ([]byte, *notification.Error) {
	switch {
	case len(m.Data) == 1:
		return m.Data[0], nil
	case len(m.Data) > 1:
		var all []byte
		for _, d := range m.Data {
			all = append(all, d...)
		}
		return all, nil
	}
	switch v := m.Value.(type) {
	case nil:
		return nil, &notification.Error{Class: notification.ClassEmpty, Reason: "message has no Data section and no AmqpValue"}
	case string:
		return []byte(v), nil
	case []byte:
		return v, nil
	default:
		return []byte(fmt.Sprint(v)), &notification.Error{Class: notification.ClassInvalidJSON,
			Reason: fmt.Sprintf("AmqpValue holds a %T, want a string or binary", v)}
	}
}

// messageProperties keeps what helps trace a dead letter to its sender.
func messageProperties(msg *amqp.Message, queue string) map[string]string {
	p := map[string]string{"queue": queue}
	if props := msg.Properties; props != nil {
		if props.MessageID != nil {
			p["message_id"] = fmt.Sprint(props.MessageID)
		}
		if props.ContentType != nil {
			p["content_type"] = *props.ContentType
		}
		if props.Subject != nil {
			p["subject"] = *props.Subject
		}
		if props.CorrelationID != nil {
			p["correlation_id"] = fmt.Sprint(props.CorrelationID)
		}
	}
	for k, v := range msg.ApplicationProperties {
		if len(p) >= 32 {
			break
		}
		p["app."+k] = fmt.Sprint(v)
	}
	return p
}
