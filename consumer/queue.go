package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cmdtrack/cmdtrack/internal/backoff"
	"github.com/cmdtrack/cmdtrack/pipeline"
)

// queue is one configured queue and how its link fares.
type queue struct {
	name     string
	attached atomic.Bool
	// budget is the queue's share of CMDTRACK_AMQP_MAX_BYTES, held by its
	// links one after another.
	budget *bytesBudget

	mu      sync.Mutex
	lastErr error // why the last attach or link failed; nil while attached

	gauge    prometheus.Gauge
	failures prometheus.Counter
	// mixedWarned is set once cmdtrack has said that the broker would not
	// promise unsettled deliveries on this queue.
	mixedWarned atomic.Bool
	// backlog is when the queue was last consumed, against what the
	// platform keeps of it.
	backlog *backlog
}

func newQueue(name string, budget int64, m *Metrics, bl *backlog) *queue {
	return &queue{name: name, gauge: m.queueAttached.WithLabelValues(name), failures: m.attachFailures.WithLabelValues(name),
		budget: newBytesBudget(budget), backlog: bl}
}

func (q *queue) status() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.lastErr == nil {
		return fmt.Sprintf("queue %q is not attached yet", q.name)
	}
	return fmt.Sprintf("queue %q is not attached: %v", q.name, q.lastErr)
}

func (q *queue) set(attached bool, err error) {
	q.mu.Lock()
	q.lastErr = err
	q.mu.Unlock()
	q.attached.Store(attached)
	if attached {
		q.gauge.Set(1)
	} else {
		q.gauge.Set(0)
	}
}

// LogPresettled is the line the README tells an operator to look for when
// a broker breaks its promise to send unsettled.
const LogPresettled = "the broker sent a message already settled (at-most-once): it is not redelivered if cmdtrack stops before storing it"

// Log lines about one queue; cmdtrack_queue_attached and
// cmdtrack_queue_failures_total say the same for tests and alerts.
const (
	logQueueFailing  = "cannot consume a queue; retrying it on its own while the others flow (check the name in CMDTRACK_AMQP_QUEUE, the queue and its permissions)"
	logQueueRestored = "queue consumed again"
	logLinkLost      = "a queue's link ended; re-attaching it (the broker delivers its unsettled messages again)"
	logMixedSettle   = "the broker would not promise to send this queue's messages unsettled; should it send one settled, it is delivered at most once"
)

// runQueue keeps q's link attached on its own session of conn until ctx
// ends (nil) or the connection dies (its error). A failure of the queue
// alone (not found, no permission, a detach) is retried with the queue's
// own backoff; the backoff starts afresh only once a link has lived a while.
func (b *Broker) runQueue(ctx context.Context, conn conn, q *queue, consume func(context.Context, pipeline.Receiver) error) error {
	var (
		attempt     int
		failing     bool
		failedSince time.Time
	)
	for {
		link, err := b.attach(ctx, conn, q)
		if err == nil {
			if gapFrom, gapTo, lost := q.backlog.consumed(); lost {
				from, to := gapFrom.UTC().Format(time.RFC3339), gapTo.UTC().Format(time.RFC3339)
				b.m.backlogGaps.WithLabelValues(q.name, "lost").Inc()
				b.log.Warn(LogBacklogLost, "queue", q.name, "from", from, "to", to, "gap", gapTo.Sub(gapFrom).Round(time.Second),
					"repair", fmt.Sprintf("cmdtrack reconcile -since %s -until %s", from, to))
			}
			if failing {
				b.log.Info(logQueueRestored, "queue", q.name, "failing_for", b.now().Sub(failedSince).Round(time.Millisecond))
				failing = false
			}
			q.set(true, nil)
			up := b.now()
			err = consume(ctx, link)
			link.finish()
			q.set(false, err)
			q.backlog.unconsumedFromNow()
			if ctx.Err() != nil {
				// The session stays open: the messages in hand are still
				// to be settled, and Close ends it with the connection.
				return nil
			}
			closeSession(ctx, link.sess)
			if connDead(conn, err) {
				return err
			}
			if b.now().Sub(up) > b.healthyAfter() {
				attempt = 0
			}
			// The link was up: whatever ended it (a detach, an accept that
			// could not be sent), it is re-attached; one line each time.
			attempt++
			q.failures.Inc()
			b.log.Warn(logLinkLost, "queue", q.name, "err", err)
		} else {
			if ctx.Err() != nil {
				return nil
			}
			if connDead(conn, err) {
				return err
			}
			q.set(false, err)
			attempt++
			q.failures.Inc()
			if !failing {
				failing, failedSince = true, b.now()
				b.log.Warn(logQueueFailing, "queue", q.name, "err", err)
			} else {
				b.log.Debug("queue still failing", "queue", q.name, "attempt", attempt, "err", err)
			}
		}
		if !b.pause(ctx, backoff.Delay(attempt, b.cfg.ReconnectMin, b.cfg.ReconnectMax)) {
			return nil
		}
	}
}

// connDead reports whether err, or the connection's own state, says the
// connection is gone, which takes every queue down with it.
func connDead(conn conn, err error) bool {
	var connErr *amqp.ConnError
	if errors.As(err, &connErr) {
		return true
	}
	select {
	case <-conn.Done():
		return true
	default:
		return false
	}
}

// attachTimeout bounds beginning a session and attaching a link. IoTDA
// closes a connection that has no receiver 15 s after it opens.
const attachTimeout = 10 * time.Second

// attach begins a session for q and attaches its receiver. Each queue has a
// session of its own because RabbitMQ ends the whole session when an attach
// fails (a missing queue, say), which would take the other queues with it.
//
// It asks the broker to send every message unsettled, so that none is
// delivered at most once; a broker that will not promise that is used
// anyway, with a warning, and pre-settled messages are counted (Link).
func (b *Broker) attach(ctx context.Context, conn conn, q *queue) (*Link, error) {
	actx, cancel := context.WithTimeout(ctx, attachTimeout)
	defer cancel()
	sess, err := conn.NewSession(actx)
	if err != nil {
		return nil, fmt.Errorf("begin session for queue %q: %w", q.name, err)
	}
	opts := ReceiverOptions(q.name)
	mode := amqp.SenderSettleModeUnsettled
	if b.senderMode != nil {
		mode = *b.senderMode
	}
	opts.RequestedSenderSettleMode = &mode
	rcv, err := sess.NewReceiver(actx, q.name, opts)
	if err != nil && settleModeRefused(err) {
		// go-amqp fails the attach when the broker answers another mode;
		// its session is still good, the link is not.
		if q.mixedWarned.CompareAndSwap(false, true) {
			b.log.Warn(logMixedSettle, "queue", q.name, "err", err)
		}
		opts.RequestedSenderSettleMode = nil
		rcv, err = sess.NewReceiver(actx, q.name, opts)
	}
	if err != nil {
		closeSession(ctx, sess)
		return nil, fmt.Errorf("attach to queue %q: %w", q.name, err)
	}
	if b.wrap != nil {
		rcv = b.wrap(rcv)
	}
	l := newLink(rcv, linkConfig{
		queue: q.name, credit: b.cfg.Credit, limits: b.cfg.Limits,
		budget: q.budget, backlog: q.backlog,
		abort: func() { b.abortLink(ctx, conn, sess) },
		log:   b.log,
	}, b.m)
	l.sess = sess
	return l, nil
}

// abortLink ends a link whose accept could not be sent, so that the broker
// delivers its unsettled messages again now rather than when the connection
// next drops. RabbitMQ may never answer the session's end: if it does not in
// time, the whole connection goes.
func (b *Broker) abortLink(ctx context.Context, conn conn, sess session) {
	go func() {
		if !closeSessionWithin(ctx, sess, abortCloseTimeout) {
			b.log.Warn(logSessionNotClosed)
			b.closeConn(conn)
		}
	}()
}

// logSessionNotClosed says why an abort took the connection with it.
const logSessionNotClosed = "a session did not close in time; closing the broker connection so that its messages come again"

// closeSession ends sess within five seconds and reports whether it did,
// whether ctx has ended or not: the session must end either way.
func closeSession(ctx context.Context, sess session) bool {
	return closeSessionWithin(ctx, sess, abortCloseTimeout)
}

// abortCloseTimeout is how long an aborted link's session has to end
// before the connection goes instead.
const abortCloseTimeout = 5 * time.Second

func closeSessionWithin(ctx context.Context, sess session, wait time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
	defer cancel()
	return !errors.Is(sess.Close(ctx), context.DeadlineExceeded)
}
