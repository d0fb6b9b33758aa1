package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/Azure/go-amqp"

	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// delivery is one received message, not yet settled.
type delivery struct {
	msg      *amqp.Message
	rcv      *amqp.Receiver
	queue    string
	release  func() // gives the link's credit token back
	doneOnce sync.Once
}

// done marks the delivery finished with, settled or not.
func (d *delivery) done() { d.doneOnce.Do(d.release) }

// batch is a run of deliveries and, index for index, what they mean.
type batch struct {
	deliveries []*delivery
	items      []store.Item
	started    time.Time
}

// BatchConfig shapes batches.
type BatchConfig struct {
	Size int
	// Wait is the longest a message waits for its batch to fill.
	Wait time.Duration
	// MaxBodyBytes dead-letters larger bodies unread.
	MaxBodyBytes int
	// Backoff between attempts to write a batch while the database fails.
	RetryMin, RetryMax time.Duration
}

// collect groups deliveries into batches and decodes them, so that the next
// batch is decoded while the previous one is being written. A batch is
// handed on when it is full or its first message has waited cfg.Wait.
func (c *Consumer) collect(ctx context.Context, in <-chan *delivery, out chan<- *batch) error {
	defer close(out)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var cur *batch
	flush := func() error {
		timer.Stop()
		if cur == nil {
			return nil
		}
		b := cur
		cur = nil
		select {
		case out <- b:
			return nil
		case <-ctx.Done():
			abandon(b)
			return fmt.Errorf("batch of %d not written: %w", len(b.deliveries), context.Cause(ctx))
		}
	}
	for {
		select {
		case d, ok := <-in:
			if !ok {
				return flush()
			}
			if cur == nil {
				cur = &batch{
					deliveries: make([]*delivery, 0, c.batch.Size),
					items:      make([]store.Item, 0, c.batch.Size),
					started:    time.Now(),
				}
				timer.Reset(c.batch.Wait)
			}
			cur.deliveries = append(cur.deliveries, d)
			cur.items = append(cur.items, c.decode(d))
			if len(cur.deliveries) >= c.batch.Size {
				if err := flush(); err != nil {
					return err
				}
			}
		case <-timer.C:
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// decode turns a delivery into what must be stored for it.
func (c *Consumer) decode(d *delivery) store.Item {
	body, err := messageBody(d.msg)
	if err != nil {
		var bad *notification.Error
		errors.As(err, &bad)
		if body == nil {
			body = []byte{}
		}
		return store.Item{Source: "amqp:" + d.queue, DeadLetter: &store.DeadLetter{
			Class: bad.Class, Reason: bad.Reason, Body: body, Properties: messageProperties(d)}}
	}
	it := DecodeItem(body, "amqp:"+d.queue, c.batch.MaxBodyBytes)
	if it.DeadLetter != nil {
		it.DeadLetter.Properties = messageProperties(d)
	}
	return it
}

// DecodeItem turns a message body into what must be stored for it: a
// notification, a dead letter, or nothing at all (a notification of another
// resource). Every channel and `cmdtrack replay` decide this the same way.
func DecodeItem(body []byte, source string, maxBodyBytes int) store.Item {
	it := store.Item{Source: source}
	var err error
	if len(body) > maxBodyBytes {
		err = &notification.Error{Class: notification.ClassTooLarge,
			Reason: fmt.Sprintf("body is %d bytes, limit is %d (CMDTRACK_MAX_BODY_BYTES)", len(body), maxBodyBytes)}
	} else {
		var n notification.Notification
		if n, err = notification.Decode(body); err == nil {
			it.Notification = &n
			return it
		}
	}
	var skip *notification.SkipError
	if errors.As(err, &skip) {
		return it
	}
	var bad *notification.Error
	if !errors.As(err, &bad) {
		bad = &notification.Error{Class: notification.ClassInvalidJSON, Reason: err.Error()}
	}
	it.DeadLetter = &store.DeadLetter{Class: bad.Class, Reason: bad.Reason, Body: body}
	return it
}

// messageBody returns the payload of an AMQP Data section, or of an
// AmqpValue holding a string or binary: IoTDA's demos read both.
func messageBody(m *amqp.Message) ([]byte, error) {
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
func messageProperties(d *delivery) map[string]string {
	p := map[string]string{"queue": d.queue}
	if props := d.msg.Properties; props != nil {
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
	for k, v := range d.msg.ApplicationProperties {
		if len(p) >= 32 {
			break
		}
		p["app."+k] = fmt.Sprint(v)
	}
	return p
}

// write stores each batch, retrying with backoff for as long as the database
// fails, and only then passes the batch on to be settled. While it waits,
// credit runs out and the broker stops sending: nothing piles up here.
// ctx is the drain context: it ends only when the shutdown grace runs out.
func (c *Consumer) write(ctx context.Context, in <-chan *batch, out chan<- *batch) error {
	defer close(out)
	for b := range in {
		if err := c.apply(ctx, b); err != nil {
			abandon(b)
			for b := range in {
				abandon(b)
			}
			return err
		}
		select {
		case out <- b:
		case <-ctx.Done():
			abandon(b)
			return fmt.Errorf("batch written but not settled (it will be redelivered and applied again, harmlessly): %w", context.Cause(ctx))
		}
	}
	return nil
}

// applyTimeout bounds one attempt to write a batch, so that a connection
// that hangs without failing (a half-open TCP connection) becomes an error to
// retry rather than a stuck worker.
const applyTimeout = 30 * time.Second

func (c *Consumer) apply(ctx context.Context, b *batch) error {
	var failingSince time.Time
	for attempt := 1; ; attempt++ {
		start := time.Now()
		c.attemptSince.Store(start.UnixNano())
		actx, cancel := context.WithTimeout(ctx, applyTimeout)
		err := c.store.Apply(actx, b.items)
		cancel()
		c.attemptSince.Store(0)
		if err == nil {
			c.m.applySeconds.Observe(time.Since(start).Seconds())
			if !failingSince.IsZero() {
				c.log.Info("database writes recovered", "failing_for", time.Since(failingSince).Round(time.Millisecond), "attempts", attempt)
				c.dbHealthy.Store(true)
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("batch of %d not stored before shutdown: %w", len(b.items), context.Cause(ctx))
		}
		class := store.ErrorClass(err)
		c.m.dbErrors.WithLabelValues(class).Inc()
		if class == "data" {
			// Apply already isolated and dead-lettered bad values; a data
			// error here means a dead letter itself could not be stored.
			return fmt.Errorf("unstorable batch: %w", err)
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
			c.dbHealthy.Store(false)
			c.log.Warn("database write failed; retrying with backoff", "err", err, "class", class, "batch", len(b.items))
		} else if attempt%20 == 0 {
			c.log.Warn("database still failing", "failing_for", time.Since(failingSince).Round(time.Second), "attempts", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("batch of %d not stored before shutdown: %w", len(b.items), context.Cause(ctx))
		case <-time.After(backoff(attempt, c.batch.RetryMin, c.batch.RetryMax)):
		}
	}
}

// settle accepts every message of a stored batch. A failure only means the
// link died since the message arrived: the broker will redeliver it and
// applying it again changes nothing.
func (c *Consumer) settle(in <-chan *batch) error {
	for b := range in {
		var failed int
		for i, d := range b.deliveries {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := d.rcv.AcceptMessage(ctx, d.msg)
			cancel()
			d.done()
			if err != nil {
				failed++
				continue
			}
			c.count(&b.items[i])
		}
		c.m.batches.Inc()
		c.m.batchSize.Observe(float64(len(b.deliveries)))
		if failed > 0 {
			c.m.settleFailures.Add(float64(failed))
			c.log.Debug("could not settle messages; the broker will redeliver them", "count", failed)
		}
	}
	return nil
}

func (c *Consumer) count(it *store.Item) {
	switch {
	case it.Notification != nil:
		c.m.applied.Inc()
		c.m.lag.Observe(time.Since(it.Notification.EventTime).Seconds())
	case it.DeadLetter != nil:
		c.m.deadLettered.WithLabelValues(string(it.DeadLetter.Class)).Inc()
	default:
		c.m.skipped.Inc()
	}
}

// abandon gives up on a batch without settling it; the broker keeps the
// messages and delivers them again.
func abandon(b *batch) {
	for _, d := range b.deliveries {
		d.done()
	}
}
