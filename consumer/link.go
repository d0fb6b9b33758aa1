package consumer

import (
	"context"
	"fmt"
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
// delivery it returns holds a token of the link's credit until it is settled
// or abandoned, so that unsettled messages never exceed the credit.
//
// Credit is issued by hand, one window (a quarter of the credit) at a time,
// and only once the previous window has fully arrived and enough tokens are
// free: RabbitMQ's AMQP 1.0 plugin over-delivers when a flow frame crosses
// transfers in flight, and go-amqp's receiver then stalls for good (README,
// "Brokers"). A Link is used by one goroutine; its deliveries may be settled
// from another.
type Link struct {
	rcv         amqpReceiver
	queue       string
	source      string // the items' Source: "amqp:" + queue
	limits      ingest.Limits
	tokens      chan struct{}
	window      int
	outstanding int // credit issued and not yet used
	reserved    int // tokens taken for the next window
	received    prometheus.Counter
	unsettled   prometheus.Gauge
}

func newLink(r amqpReceiver, queue string, credit int, limits ingest.Limits, m *Metrics) *Link {
	credit = max(credit, 2)
	return &Link{
		rcv:       r,
		queue:     queue,
		source:    "amqp:" + queue,
		limits:    limits,
		tokens:    make(chan struct{}, credit),
		window:    max(1, credit/4),
		received:  m.received.WithLabelValues(queue),
		unsettled: m.unsettled,
	}
}

// Next returns the next message, waiting for it as long as ctx allows.
func (l *Link) Next(ctx context.Context) (pipeline.Delivery, error) {
	if l.outstanding == 0 {
		// Tokens taken before ctx ended stay reserved for the next call.
		for l.reserved < l.window {
			select {
			case l.tokens <- struct{}{}:
				l.reserved++
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err // the select may pick a token over a done ctx
		}
		if err := l.rcv.IssueCredit(uint32(l.window)); err != nil {
			return nil, fmt.Errorf("issue credit on %q: %w", l.queue, err)
		}
		l.outstanding, l.reserved = l.window, 0
	}
	msg, err := l.rcv.Receive(ctx, nil)
	if err != nil {
		if ctx.Err() == nil {
			err = fmt.Errorf("receive from %q: %w", l.queue, err)
		}
		return nil, err
	}
	return l.took(msg), nil
}

// Prefetched returns a message that has already arrived, or nil at once.
func (l *Link) Prefetched() pipeline.Delivery {
	if l.outstanding == 0 {
		return nil
	}
	msg := l.rcv.Prefetched()
	if msg == nil {
		return nil
	}
	return l.took(msg)
}

func (l *Link) took(msg *amqp.Message) *delivery {
	l.outstanding--
	l.received.Inc()
	l.unsettled.Inc()
	return &delivery{link: l, msg: msg, item: l.classify(msg)}
}

// release gives a delivery's credit token back.
func (l *Link) release() {
	<-l.tokens
	l.unsettled.Dec()
}

// classify decides what the message means, on the link's own goroutine, so
// that the next batch is decoded while the previous one is written.
func (l *Link) classify(msg *amqp.Message) ingest.Item {
	body, err := MessageBody(msg)
	var it ingest.Item
	if err != nil {
		it = ingest.Unusable(l.source, body, err.Class, err.Reason)
	} else {
		it = ingest.Classify(body, l.source, time.Now(), l.limits)
	}
	if it.DeadLetter != nil {
		it.DeadLetter.Properties = messageProperties(msg, l.queue)
	}
	return it
}

// delivery is one received message, not yet settled.
type delivery struct {
	link *Link
	msg  *amqp.Message
	item ingest.Item
}

func (d *delivery) Item() ingest.Item { return d.item }

// Settle accepts the message. In settle mode "first" the accept waits only
// for its frame to be handed to the connection.
func (d *delivery) Settle(ctx context.Context, _ ingest.Result) error {
	err := d.link.rcv.AcceptMessage(ctx, d.msg)
	d.link.release()
	return err
}

// Abandon leaves the message unsettled: the broker delivers it again once
// the link is gone.
func (d *delivery) Abandon() { d.link.release() }

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
