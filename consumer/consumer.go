// Package consumer moves notifications from the AMQP queue into the store:
//
//	broker (amqp.go) -> decode and batch (batcher.go: collect)
//	  -> write (batcher.go: write, store.Apply) -> settle (batcher.go: settle)
//
// A message is accepted on the broker only after the transaction holding its
// effect has committed. Everything in between is bounded by link credit.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cmdtrack/cmdtrack/store"
)

// Applier stores the effect of a batch; *store.Store is one.
type Applier interface {
	Apply(ctx context.Context, items []store.Item) error
}

// Consumer runs the pipeline from broker to store.
type Consumer struct {
	broker *Broker
	store  Applier
	batch  BatchConfig
	log    *slog.Logger
	m      *Metrics

	// submissions carries items from Submit (the HTTP receiver) into the
	// same batches as the broker's messages. stopping closes when intake
	// ends; subMu guards closing submissions against a concurrent send.
	submissions chan *submission
	stopping    chan struct{}
	subMu       sync.RWMutex
	subClosed   bool

	dbHealthy atomic.Bool
	// attemptSince is, per writer, when the write in progress started
	// (UnixNano), 0 between writes; Stalled reads it.
	attemptSince []atomic.Int64
	// failingSince is when database writes began to fail (UnixNano), 0
	// while they succeed.
	failingSince atomic.Int64
}

// New assembles a consumer; nothing runs until Run.
func New(broker *Broker, st Applier, cfg BatchConfig, log *slog.Logger, m *Metrics) *Consumer {
	if cfg.Size < 1 {
		cfg.Size = 1
	}
	if cfg.Writers < 1 {
		cfg.Writers = 1
	}
	c := &Consumer{broker: broker, store: st, batch: cfg, log: log, m: m,
		submissions: make(chan *submission), stopping: make(chan struct{})}
	c.dbHealthy.Store(true)
	c.attemptSince = make([]atomic.Int64, cfg.Writers)
	return c
}

type submission struct {
	item  store.Item
	reply chan<- Outcome
}

// ErrStopping is returned by Submit once the consumer has begun to stop.
var ErrStopping = errors.New("cmdtrack is stopping")

// Submit hands an already decoded item to the pipeline, to be written in the
// same batches, under the same rules, as the broker's messages, and waits
// until its batch is committed (Outcome.Stored) or given up. ctx bounds the
// wait; an item whose caller gave up may still be stored.
func (c *Consumer) Submit(ctx context.Context, it store.Item) (Outcome, error) {
	reply := make(chan Outcome, 1)
	c.subMu.RLock()
	if c.subClosed {
		c.subMu.RUnlock()
		return Outcome{}, ErrStopping
	}
	select {
	case c.submissions <- &submission{item: it, reply: reply}:
		c.subMu.RUnlock()
	case <-c.stopping:
		c.subMu.RUnlock()
		return Outcome{}, ErrStopping
	case <-ctx.Done():
		c.subMu.RUnlock()
		return Outcome{}, ctx.Err()
	}
	select {
	case o := <-reply:
		return o, nil
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	}
}

func (c *Consumer) closeSubmissions() {
	close(c.stopping)
	c.subMu.Lock()
	c.subClosed = true
	close(c.submissions)
	c.subMu.Unlock()
}

// Ready reports whether the consumer is connected to the broker and its last
// database write did not fail.
func (c *Consumer) Ready() error {
	if !c.broker.Connected() {
		return errors.New("not connected to the broker")
	}
	if !c.dbHealthy.Load() {
		return errors.New("database writes are failing")
	}
	return nil
}

// Stalled reports an error when a single write has been in progress far
// longer than its own timeout allows, which means the pipeline is wedged and
// the process should be restarted (the systemd watchdog asks this).
func (c *Consumer) Stalled() error {
	for i := range c.attemptSince {
		since := c.attemptSince[i].Load()
		if since == 0 {
			continue
		}
		if d := time.Since(time.Unix(0, since)); d > 2*applyTimeout {
			return fmt.Errorf("a database write has been in progress for %s", d.Round(time.Second))
		}
	}
	return nil
}

// Run consumes until ctx ends, then drains: it stops taking messages,
// writes and settles those in hand, and closes the connection.
//
// The drain may take up to grace after ctx ends (say, while the database is
// down); past that, what is not stored is left unsettled for the broker to
// redeliver, and Run returns an error saying so.
func (c *Consumer) Run(ctx context.Context, grace time.Duration) error {
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
		t := time.AfterFunc(grace, func() {
			cancelDrain(fmt.Errorf("shutdown grace period of %s ran out", grace))
		})
		context.AfterFunc(drainCtx, func() { t.Stop() })
	})
	defer stopGrace()
	// Intake (links and submissions) ends with ctx or a fatal error; the
	// stages after it end when their input is closed, which drains them.
	var producers sync.WaitGroup
	producers.Add(2)
	g.Go(func() error {
		defer producers.Done()
		err := c.broker.Run(gctx, func(lctx context.Context, l *Link) error {
			return c.receive(lctx, drainCtx, l, batches)
		})
		if ctx.Err() != nil {
			c.log.Info("shutdown requested; draining messages in hand", "grace", grace)
		}
		return err
	})
	context.AfterFunc(gctx, c.closeSubmissions)
	g.Go(func() error {
		defer producers.Done()
		return c.collectSubmissions(drainCtx, c.submissions, batches)
	})
	go func() {
		producers.Wait()
		close(batches)
	}()
	// Several writers keep PostgreSQL busy while the previous batch commits;
	// the merge rule makes their order irrelevant, and the fixed row order
	// keeps them from deadlocking.
	var writers sync.WaitGroup
	for w := range c.batch.Writers {
		writers.Add(1)
		g.Go(func() error {
			defer writers.Done()
			return c.write(drainCtx, w, batches, stored)
		})
	}
	go func() {
		writers.Wait()
		close(stored)
	}()
	g.Go(func() error { return c.settle(stored) })
	err := g.Wait()

	closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if cerr := c.broker.Close(closeCtx); cerr != nil {
		c.log.Debug("closing broker connection", "err", cerr)
	}
	return err
}
