package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/Azure/go-amqp"

	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// delivery is one received message, not yet settled. It came either from an
// AMQP link (msg, rcv, release) or from Submit (reply).
type delivery struct {
	msg     *amqp.Message
	rcv     *amqp.Receiver
	release func() // gives the link's credit token back
	reply   chan<- Outcome
	settled bool
}

// Outcome is what became of a submitted item.
type Outcome struct {
	// Stored is true once the item's effect is committed (as a notification
	// or as a dead letter); false means nothing was stored, try again later.
	Stored bool
	Item   store.Item
}

// batch is a run of deliveries and, index for index, what they mean.
type batch struct {
	deliveries []*delivery
	items      []store.Item
}

func (c *Consumer) newBatch() *batch {
	return &batch{
		deliveries: make([]*delivery, 0, c.batch.Size),
		items:      make([]store.Item, 0, c.batch.Size),
	}
}

// BatchConfig shapes batches.
type BatchConfig struct {
	Size int
	// Wait is the longest a message waits for its batch to fill.
	Wait time.Duration
	// MaxBodyBytes dead-letters larger bodies unread.
	MaxBodyBytes int
	// Writers is how many batches are written at once.
	Writers int
	// Backoff between attempts to write a batch while the database fails.
	RetryMin, RetryMax time.Duration
}

// receive turns one link's messages into batches: it waits for a first
// message, then takes what has already arrived without waiting, and waits
// for more only until the batch is full or its first message has waited
// cfg.Wait. Decoding happens here, so the next batch is decoded while the
// previous one is being written.
//
// intake ends receiving; drain bounds handing the last batch on.
func (c *Consumer) receive(intake, drain context.Context, l *Link, out chan<- *batch) error {
	for {
		msg, err := l.Next(intake)
		if err != nil {
			if intake.Err() != nil {
				return nil
			}
			return fmt.Errorf("receive from %q: %w", l.queue, err)
		}
		b := c.newBatch()
		c.add(b, l, msg)
		var waitCtx context.Context
		cancel := func() {}
		for len(b.items) < c.batch.Size {
			if msg := l.Prefetched(); msg != nil {
				c.add(b, l, msg)
				continue
			}
			if waitCtx == nil {
				waitCtx, cancel = context.WithTimeout(intake, c.batch.Wait)
			}
			msg, err := l.Next(waitCtx)
			if err != nil {
				if waitCtx.Err() == nil {
					// The link failed: what was received will be redelivered.
					cancel()
					abandon(b)
					return fmt.Errorf("receive from %q: %w", l.queue, err)
				}
				break // the wait is over (or intake ended): hand on what we have
			}
			c.add(b, l, msg)
		}
		cancel()
		select {
		case out <- b:
		case <-drain.Done():
			abandon(b)
			return fmt.Errorf("batch of %d not written: %w", len(b.items), context.Cause(drain))
		}
	}
}

func (c *Consumer) add(b *batch, l *Link, msg *amqp.Message) {
	d := &delivery{msg: msg, rcv: l.rcv, release: l.release}
	b.deliveries = append(b.deliveries, d)
	b.items = append(b.items, c.decode(d, l.queue))
}

// collectSubmissions batches items handed to Submit, by size or wait like
// receive, until in is closed.
func (c *Consumer) collectSubmissions(drain context.Context, in <-chan *submission, out chan<- *batch) error {
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
		case <-drain.Done():
			abandon(b)
			return fmt.Errorf("batch of %d not written: %w", len(b.items), context.Cause(drain))
		}
	}
	for {
		select {
		case s, ok := <-in:
			if !ok {
				return flush()
			}
			if cur == nil {
				cur = c.newBatch()
				timer.Reset(c.batch.Wait)
			}
			cur.deliveries = append(cur.deliveries, &delivery{reply: s.reply})
			cur.items = append(cur.items, s.item)
			if len(cur.items) >= c.batch.Size {
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

// decode turns a message into what must be stored for it.
func (c *Consumer) decode(d *delivery, queue string) store.Item {
	body, err := messageBody(d.msg)
	if err != nil {
		var bad *notification.Error
		errors.As(err, &bad)
		if body == nil {
			body = []byte{}
		}
		return store.Item{Source: "amqp:" + queue, DeadLetter: &store.DeadLetter{
			Class: bad.Class, Reason: bad.Reason, Body: body, Properties: messageProperties(d.msg, queue)}}
	}
	it := DecodeItem(body, "amqp:"+queue, c.batch.MaxBodyBytes)
	if it.DeadLetter != nil {
		it.DeadLetter.Properties = messageProperties(d.msg, queue)
	}
	return it
}

// DecodeItem is DecodeItemAt with the current time as the receive time.
func DecodeItem(body []byte, source string, maxBodyBytes int) store.Item {
	return DecodeItemAt(body, source, maxBodyBytes, time.Now())
}

// DecodeItemAt turns a message body into what must be stored for it: a
// notification, a dead letter, or nothing at all (a notification of another
// resource). Every channel and `cmdtrack replay` decide this the same way.
// receivedAt stands in for the event time of formats that carry none.
func DecodeItemAt(body []byte, source string, maxBodyBytes int, receivedAt time.Time) store.Item {
	if body == nil {
		body = []byte{} // a dead letter's body is NOT NULL
	}
	it := store.Item{Source: source}
	var err error
	if len(body) > maxBodyBytes {
		err = &notification.Error{Class: notification.ClassTooLarge,
			Reason: fmt.Sprintf("body is %d bytes, limit is %d (CMDTRACK_MAX_BODY_BYTES)", len(body), maxBodyBytes)}
	} else {
		var n notification.Notification
		if n, err = notification.DecodeAt(body, receivedAt); err == nil {
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

// write stores each batch, retrying with backoff for as long as the database
// fails, and only then passes the batch on to be settled. While it waits,
// credit runs out and the broker stops sending: nothing piles up here.
// ctx is the drain context: it ends only when the shutdown grace runs out.
func (c *Consumer) write(ctx context.Context, w int, in <-chan *batch, out chan<- *batch) error {
	for b := range in {
		if err := c.apply(ctx, w, b); err != nil {
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

// apply writes one batch (writer w), retrying with backoff while the
// database fails. The writers share one "failed"/"recovered" pair of log
// lines per outage.
func (c *Consumer) apply(ctx context.Context, w int, b *batch) error {
	for attempt := 1; ; attempt++ {
		start := time.Now()
		c.attemptSince[w].Store(start.UnixNano())
		actx, cancel := context.WithTimeout(ctx, applyTimeout)
		err := c.store.Apply(actx, b.items)
		cancel()
		c.attemptSince[w].Store(0)
		if err == nil {
			c.m.applySeconds.Observe(time.Since(start).Seconds())
			if since := c.failingSince.Swap(0); since != 0 {
				c.log.Info("database writes recovered", "failing_for", time.Since(time.Unix(0, since)).Round(time.Millisecond))
			}
			c.dbHealthy.Store(true)
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
		c.dbHealthy.Store(false)
		if c.failingSince.CompareAndSwap(0, time.Now().UnixNano()) {
			c.log.Warn("database write failed; retrying with backoff", "err", err, "class", class, "batch", len(b.items))
		} else if attempt%20 == 0 {
			c.log.Warn("database still failing", "attempts", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("batch of %d not stored before shutdown: %w", len(b.items), context.Cause(ctx))
		case <-time.After(backoff(attempt, c.batch.RetryMin, c.batch.RetryMax)):
		}
	}
}

// settle accepts every message of a stored batch on the broker, or answers
// its submitter. An accept that fails only means the link died since the
// message arrived: the broker will redeliver it, and applying it again
// changes nothing.
func (c *Consumer) settle(in <-chan *batch) error {
	for b := range in {
		// One deadline for the whole batch: in settle mode "first" an accept
		// waits only for its frame to be handed to the connection.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var failed int
		for i, d := range b.deliveries {
			if d.reply != nil {
				d.reply <- Outcome{Stored: true, Item: b.items[i]}
				d.settled = true
			} else {
				err := d.rcv.AcceptMessage(ctx, d.msg)
				d.done()
				if err != nil {
					failed++
					continue
				}
			}
			c.count(&b.items[i])
		}
		cancel()
		c.m.batches.Inc()
		c.m.batchSize.Observe(float64(len(b.deliveries)))
		if failed > 0 {
			c.m.settleFailures.Add(float64(failed))
			c.log.Debug("could not settle messages; the broker will redeliver them", "count", failed)
		}
	}
	return nil
}

// done gives back what the delivery holds, once, settled or not.
func (d *delivery) done() {
	if d.settled {
		return
	}
	d.settled = true
	switch {
	case d.release != nil:
		d.release()
	case d.reply != nil:
		d.reply <- Outcome{Stored: false}
	}
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

// abandon gives up on a batch without storing it: the broker keeps its
// messages and delivers them again; submitters are told to retry.
func abandon(b *batch) {
	for _, d := range b.deliveries {
		d.done()
	}
}
