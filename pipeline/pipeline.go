// Package pipeline carries deliveries from their sources into the store and
// answers their senders:
//
//	sources (consumer/amqp.go, Inbox) -> batch (receive) -> write (Applier.Apply, retried) -> settle
//
// A delivery is settled only after the transaction holding its effect has
// committed. Everything in between is bounded by what the sources hand out
// (link credit, the HTTP in-flight limit): nothing piles up here.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/backoff"
)

// Applier stores the effect of a batch and says what became of each item;
// *store.Store is one. Applying the same items again must change nothing.
// Its errors say what they mean as WriteError does.
type Applier interface {
	Apply(ctx context.Context, items []ingest.Item) ([]ingest.Result, error)
}

// WriteError is what the pipeline needs to know of a failed write, so that
// it depends on no database driver: the store translates its driver's
// errors into one (*store.Error). An error that is not a WriteError is
// retried, and counted as "other".
type WriteError interface {
	error
	// Retry reports whether writing the same items again may succeed.
	// Only a fault in what was written (a value the database refuses)
	// says no; a database away, a missing table or a refused password is
	// the operator's to fix, and must not turn good messages into dead
	// letters.
	Retry() bool
	// Class names the kind of failure, whose fault it is ("data",
	// "connection", "privilege", ...), as cmdtrack_database_errors_total
	// and the log label it.
	Class() string
}

// interpret reads err as a WriteError.
func interpret(err error) (retry bool, class string) {
	var werr WriteError
	if errors.As(err, &werr) {
		return werr.Retry(), werr.Class()
	}
	return true, "other"
}

// Config shapes batches and retries.
type Config struct {
	// BatchSize is the most deliveries written in one transaction.
	BatchSize int
	// BatchWait is the longest a delivery waits for its batch to fill.
	BatchWait time.Duration
	// Writers is how many batches are written at once.
	Writers int
	// RetryMin and RetryMax bound the backoff between attempts to write a
	// batch while the database fails.
	RetryMin, RetryMax time.Duration
	// ApplyTimeout bounds one attempt to write a batch, so that a connection
	// that hangs without failing becomes an error to retry. Zero means 30 s.
	ApplyTimeout time.Duration
	// DatabaseHosts are the database's host:port pairs (no credentials),
	// which the outage's log lines name as those tried.
	DatabaseHosts []string
	// StallTimeout is how long deliveries may be in hand with nothing
	// stored or settled before Stalled says the pipeline is wedged. Zero
	// means 5 minutes.
	StallTimeout time.Duration
}

// Pipeline batches deliveries, writes them and settles them.
type Pipeline struct {
	store Applier
	cfg   Config
	log   *slog.Logger
	m     *Metrics

	dbHealthy atomic.Bool
	// inHand counts deliveries taken and not yet settled or abandoned;
	// progress is when a batch was last stored or settled (UnixNano).
	inHand   atomic.Int64
	progress atomic.Int64
	// failingSince is when database writes began to fail (UnixNano), 0
	// while they succeed.
	failingSince atomic.Int64
	// outageLogged is when the outage was last logged (UnixNano);
	// outageFailures counts its failed writes.
	outageLogged   atomic.Int64
	outageFailures atomic.Int64
	// lastFull is when a full batch was last handed on (UnixNano; 0:
	// never): Busy.
	lastFull atomic.Int64
	// hosts names the database's hosts in the outage's log lines.
	hosts string
	// now is the clock that progress, stalls and outages are measured by,
	// and after waits out a retry's backoff, so that tests move time
	// instead of waiting on the wall clock.
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
}

// New assembles a pipeline; nothing runs until Run.
func New(st Applier, cfg Config, log *slog.Logger, m *Metrics) *Pipeline {
	cfg.BatchSize = max(cfg.BatchSize, 1)
	cfg.Writers = max(cfg.Writers, 1)
	if cfg.ApplyTimeout <= 0 {
		cfg.ApplyTimeout = 30 * time.Second
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = 5 * time.Minute
	}
	if cfg.BatchWait <= 0 {
		cfg.BatchWait = 10 * time.Millisecond
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 200 * time.Millisecond
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryMin)
	p := &Pipeline{store: st, cfg: cfg, log: log, m: m, now: time.Now, after: time.After,
		hosts: strings.Join(cfg.DatabaseHosts, ",")}
	p.dbHealthy.Store(true)
	p.progress.Store(p.now().UnixNano())
	return p
}

// Ready reports an error while database writes are failing.
func (p *Pipeline) Ready() error {
	if !p.dbHealthy.Load() {
		return errors.New("database writes are failing")
	}
	return nil
}

// Stalled reports an error when deliveries have been in hand for longer
// than StallTimeout with nothing stored or settled, and no write failing:
// a write that hangs without failing, or a bug. Restarting the worker is then
// the way forward, and harmless: what it holds is delivered again. Writes
// that fail (the database is away) are readiness' business: the worker
// retries them, and a restart would not bring the database back. Liveness
// probes and the systemd watchdog ask this.
func (p *Pipeline) Stalled() error {
	n := p.inHand.Load()
	if n == 0 || p.failingSince.Load() != 0 {
		return nil
	}
	if d := p.now().Sub(time.Unix(0, p.progress.Load())); d > p.cfg.StallTimeout {
		return fmt.Errorf("%d messages in hand and nothing stored or settled for %s (CMDTRACK_STALL_TIMEOUT)", n, d.Round(time.Second))
	}
	return nil
}

// busyFor is how long after its last full batch the pipeline is Busy.
const busyFor = time.Second

// Busy reports whether the sources deliver at least as fast as the
// pipeline writes: a full batch (BatchSize) was handed on within the last
// second, which only a backlog waiting in the queues gives (at a steady
// rate, a batch goes when BatchWait ends, long before it fills). Work
// that can wait a little waits while it is (the webhooks:
// CMDTRACK_WEBHOOK_BACKLOG_LAG), so that the backlog drains first.
func (p *Pipeline) Busy() bool {
	t := p.lastFull.Load()
	return t != 0 && p.now().Sub(time.Unix(0, t)) < busyFor
}

// logDraining is logged once when intake ends and the drain begins.
const logDraining = "shutdown requested; draining messages in hand"

// ErrGraceRanOut is why Run gave up messages still in hand: the drain took
// longer than the shutdown grace. Their senders deliver them again.
var ErrGraceRanOut = errors.New("shutdown grace period ran out")

// Run takes deliveries from sources until ctx ends, then drains: it stops
// taking deliveries, writes and settles those in hand, and returns.
//
// The drain may take up to grace after ctx ends (say, while the database is
// down); past that, what is not stored is abandoned for its sender to
// deliver again, and Run returns an error saying so. Run also returns, after
// the same drain, when a source or a stage fails for good.
func (p *Pipeline) Run(ctx context.Context, grace time.Duration, sources ...Source) error {
	drainCtx, cancelDrain := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelDrain(nil)

	var (
		batches = make(chan *batch, 1)
		stored  = make(chan *batch, 1)
	)
	g, gctx := errgroup.WithContext(ctx)
	// The grace period starts when intake ends: at shutdown, or when a stage
	// fails for good.
	stopGrace := context.AfterFunc(gctx, func() {
		if ctx.Err() != nil {
			p.log.Info(logDraining, "grace", grace)
		}
		t := time.AfterFunc(grace, func() {
			cancelDrain(fmt.Errorf("%w (%s)", ErrGraceRanOut, grace))
		})
		context.AfterFunc(drainCtx, func() { t.Stop() })
	})
	defer stopGrace()

	// Intake ends with ctx or a fatal error; the stages after it end when
	// their input is closed, which drains them.
	var producers sync.WaitGroup
	for _, src := range sources {
		producers.Add(1)
		g.Go(func() error {
			defer producers.Done()
			return src.Run(gctx, func(rctx context.Context, r Receiver) error {
				return p.receive(rctx, drainCtx, r, batches)
			})
		})
	}
	go func() {
		producers.Wait()
		close(batches)
	}()
	// Several writers keep PostgreSQL busy while the previous batch commits;
	// the merge rule makes their order irrelevant, and the store's fixed row
	// order keeps them from deadlocking.
	var writers sync.WaitGroup
	for range p.cfg.Writers {
		writers.Add(1)
		g.Go(func() error {
			defer writers.Done()
			return p.write(drainCtx, batches, stored)
		})
	}
	go func() {
		writers.Wait()
		close(stored)
	}()
	// Settling goes on after ctx ends: it answers what the drain stored.
	g.Go(func() error { p.settle(context.WithoutCancel(ctx), stored); return nil })
	return g.Wait()
}

// batch is a run of deliveries and, index for index, what they mean and,
// once written, what became of them.
type batch struct {
	deliveries []Delivery
	items      []ingest.Item
	results    []ingest.Result
}

func (p *Pipeline) newBatch() *batch {
	return &batch{
		deliveries: make([]Delivery, 0, p.cfg.BatchSize),
		items:      make([]ingest.Item, 0, p.cfg.BatchSize),
	}
}

func (b *batch) add(d Delivery) {
	b.deliveries = append(b.deliveries, d)
	b.items = append(b.items, d.Item())
}

// take adds d to b, counting it in hand.
func (p *Pipeline) take(b *batch, d Delivery) {
	if p.inHand.Add(1) == 1 {
		// Nothing was in hand: the wait for progress starts now.
		p.progress.Store(p.now().UnixNano())
	}
	b.add(d)
}

// abandon gives up on a batch without storing it: senders keep their
// messages and deliver them again.
func (p *Pipeline) abandon(b *batch) {
	for _, d := range b.deliveries {
		d.Abandon()
	}
	p.inHand.Add(-int64(len(b.deliveries)))
}

// receive turns one receiver's deliveries into batches: it waits for a
// first delivery, then takes what has already arrived without waiting, and
// waits for more only until the batch is full or its first delivery has
// waited BatchWait. Each receiver batches on its own goroutine, so decoding
// (done by the receiver) overlaps with writing the previous batch.
//
// intake ends receiving; drain bounds handing the last batch on.
func (p *Pipeline) receive(intake, drain context.Context, r Receiver, out chan<- *batch) error {
	for {
		d, err := r.Next(intake)
		if err != nil {
			if intake.Err() != nil {
				return p.handOnArrived(drain, r, out)
			}
			return err
		}
		b := p.newBatch()
		p.take(b, d)
		// The wait for company starts with the first Next that would block.
		waitCtx, cancel, waiting := intake, context.CancelFunc(func() {}), false
		for len(b.deliveries) < p.cfg.BatchSize {
			if d := r.Prefetched(); d != nil {
				p.take(b, d)
				continue
			}
			if !waiting {
				waitCtx, cancel = context.WithTimeout(intake, p.cfg.BatchWait)
				waiting = true
			}
			d, err := r.Next(waitCtx)
			if err != nil {
				if waitCtx.Err() == nil {
					// The stream broke: what it delivered comes again.
					cancel()
					p.abandon(b)
					return err
				}
				break // the wait is over (or intake ended): hand on what we have
			}
			p.take(b, d)
		}
		cancel()
		if len(b.deliveries) == p.cfg.BatchSize {
			p.lastFull.Store(p.now().UnixNano())
		}
		select {
		case out <- b:
		case <-drain.Done():
			p.abandon(b)
			return fmt.Errorf("batch of %d not written: %w", len(b.items), context.Cause(drain))
		}
	}
}

// handOnArrived hands on, in full batches, the deliveries that had already
// arrived when intake ended: they are in hand (the sender counts them as
// delivered), so the drain writes them like the batch that was filling,
// rather than leaving them to be delivered again. It never waits for more.
func (p *Pipeline) handOnArrived(drain context.Context, r Receiver, out chan<- *batch) error {
	for {
		b := p.newBatch()
		for len(b.deliveries) < p.cfg.BatchSize {
			d := r.Prefetched()
			if d == nil {
				break
			}
			p.take(b, d)
		}
		if len(b.deliveries) == 0 {
			return nil
		}
		select {
		case out <- b:
		case <-drain.Done():
			p.abandon(b)
			return fmt.Errorf("batch of %d not written: %w", len(b.items), context.Cause(drain))
		}
	}
}

// write stores each batch, retrying with backoff for as long as the database
// fails, and only then passes the batch on to be settled. While it waits,
// the sources run out of credit and stop: nothing piles up here.
// ctx is the drain context: it ends only when the shutdown grace runs out.
func (p *Pipeline) write(ctx context.Context, in <-chan *batch, out chan<- *batch) error {
	for b := range in {
		if err := p.apply(ctx, b); err != nil {
			p.abandon(b)
			for b := range in {
				p.abandon(b)
			}
			return err
		}
		if len(b.deliveries) == 0 {
			continue // every one was dropped (see dropForsaken)
		}
		select {
		case out <- b:
		case <-ctx.Done():
			p.abandon(b)
			return fmt.Errorf("batch written but not settled (it will be redelivered and applied again, harmlessly): %w", context.Cause(ctx))
		}
	}
	return nil
}

// The outage's log lines: one when it starts, one every outageLogEvery
// while it lasts (how long, and which hosts were tried), one when it ends;
// cmdtrack_database_errors_total and readiness say the same for tests and
// alerts.
const (
	logWriteFailed     = "database write failed; retrying with backoff"
	logWriteRecovered  = "database writes recovered"
	logWriteStillFails = "database writes still failing"
)

// outageLogEvery spaces the "still failing" lines of an outage: often
// enough that an operator watching the log of a 50 s failover sees it go
// on, seldom enough that an outage of hours is not a flood.
const outageLogEvery = 10 * time.Second

// unavailableRetryMax caps the backoff while the database is away (its
// connection refused or dropped, the server shutting down), whatever
// RetryMax says: a failover or a restart ends at an instant nobody
// announces, and writes should resume within about this of it. A failed
// connection attempt costs the database next to nothing; refusals (a missing
// table, a bad password, too many connections) keep the full backoff.
const unavailableRetryMax = time.Second

// retrySoon reports whether err says the database is away rather than
// refusing what was asked, as *store.Error's RetrySoon does.
func retrySoon(err error) bool {
	var e interface{ RetrySoon() bool }
	return errors.As(err, &e) && e.RetrySoon()
}

// apply writes one batch, retrying with backoff while the database fails.
// The writers share the outage's log lines.
func (p *Pipeline) apply(ctx context.Context, b *batch) error {
	for attempt := 1; ; attempt++ {
		if p.dropForsaken(b); len(b.items) == 0 {
			return nil
		}
		start := time.Now()
		actx, cancel := context.WithTimeout(ctx, p.cfg.ApplyTimeout)
		res, err := p.store.Apply(actx, b.items)
		cancel()
		if err == nil {
			b.results = res
			p.progress.Store(p.now().UnixNano())
			p.m.applySeconds.Observe(time.Since(start).Seconds())
			if since := p.failingSince.Swap(0); since != 0 {
				p.log.Info(logWriteRecovered, "failing_for", p.now().Sub(time.Unix(0, since)).Round(time.Millisecond),
					"failed_writes", p.outageFailures.Swap(0))
			}
			p.dbHealthy.Store(true)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("batch of %d not stored before shutdown: %w", len(b.items), context.Cause(ctx))
		}
		retry, class := interpret(err)
		p.m.dbErrors.WithLabelValues(class).Inc()
		if !retry {
			// Apply already isolated and dead-lettered bad values; a data
			// error here means a dead letter itself could not be stored.
			return fmt.Errorf("unstorable batch: %w", err)
		}
		p.dbHealthy.Store(false)
		p.logOutage(err, class, len(b.items))
		hi := p.cfg.RetryMax
		if retrySoon(err) {
			hi = min(hi, unavailableRetryMax)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("batch of %d not stored before shutdown: %w", len(b.items), context.Cause(ctx))
		case <-p.after(backoff.Delay(attempt, p.cfg.RetryMin, hi)):
		}
	}
}

// logOutage counts a failed write and says so when the outage starts and
// every outageLogEvery after.
func (p *Pipeline) logOutage(err error, class string, batch int) {
	p.outageFailures.Add(1)
	now := p.now().UnixNano()
	if p.failingSince.CompareAndSwap(0, now) {
		p.outageLogged.Store(now)
		p.log.Warn(logWriteFailed, "err", err, "class", class, "batch", batch, "hosts", p.hosts)
		return
	}
	last, since := p.outageLogged.Load(), p.failingSince.Load()
	if since == 0 || time.Duration(now-last) < outageLogEvery || !p.outageLogged.CompareAndSwap(last, now) {
		return
	}
	p.log.Warn(logWriteStillFails, "failing_for", time.Duration(now-since).Round(time.Second),
		"failed_writes", p.outageFailures.Load(), "class", class, "err", err, "hosts", p.hosts)
}

// settleTimeout bounds settling one batch. An accept waits only for its
// frame to be handed to the connection, so one deadline serves the batch.
const settleTimeout = 10 * time.Second

// settle answers the sender of every delivery of a stored batch. A settle
// that fails only means the sender will deliver again, and applying the
// message again changes nothing.
func (p *Pipeline) settle(ctx context.Context, in <-chan *batch) {
	for b := range in {
		ctx, cancel := context.WithTimeout(ctx, settleTimeout)
		var failed int
		for i, d := range b.deliveries {
			if err := d.Settle(ctx, b.results[i]); err != nil {
				failed++
				continue
			}
			p.count(&b.items[i], b.results[i])
		}
		cancel()
		p.inHand.Add(-int64(len(b.deliveries)))
		p.progress.Store(p.now().UnixNano())
		p.m.batches.Inc()
		p.m.batchSize.Observe(float64(len(b.deliveries)))
		if failed > 0 {
			p.m.settleFailures.Add(float64(failed))
			p.log.Debug("could not settle messages; their senders will deliver them again", "count", failed)
		}
	}
}

func (p *Pipeline) count(it *ingest.Item, res ingest.Result) {
	switch res.Outcome {
	case ingest.Applied:
		p.m.appliedKind[it.Record.Kind()].Inc()
		p.m.lag.Observe(time.Since(it.EventTime()).Seconds())
	case ingest.DeadLettered:
		p.m.deadLettered.WithLabelValues(string(res.DeadLetter.Class)).Inc()
	default:
		p.m.skipped.Inc()
	}
}
