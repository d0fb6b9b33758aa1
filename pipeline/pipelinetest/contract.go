// Package pipelinetest holds the contract every pipeline.Source keeps, as
// a test any Source's package runs against its own fakes.
package pipelinetest

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/pipeline"
)

// Sender is the far side of a Source under test: it sends messages and
// hears their answers.
type Sender interface {
	// Send sends n messages, and returns without waiting for their answers.
	Send(n int)
	// Settled is how many messages the sender has heard were stored.
	Settled() int
	// Outstanding is how many messages the source holds unanswered: taken
	// from the sender and neither settled nor given back.
	Outstanding() int
}

// Harness is a Source under test and its sender, made afresh for each case.
type Harness struct {
	Source pipeline.Source
	Sender Sender
}

// TestSource runs a Source through the pipeline's cases (stored, retried,
// drained at shutdown, given up when the grace runs out) and checks its
// contract: every delivery is answered exactly once, by Settle or Abandon;
// the sender hears of every settle; once the pipeline has returned, the
// source holds nothing unanswered, and Close returns nil, twice. A source
// that is settling is ready and connected, and its Ready and Connected
// are asked all along the run, from another goroutine, as the worker's
// probes ask them (the race detector sees what they read unguarded).
func TestSource(t *testing.T, newHarness func(t *testing.T) Harness) {
	// Stored at once, or after the first writes failed: every message is
	// settled, once.
	for _, c := range []struct {
		name      string
		failFirst int64
	}{{"stored", 0}, {"retried while the database fails", 3}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a := &applier{}
			a.failFirst.Store(c.failFirst)
			r := start(t, newHarness(t), a, time.Second)
			r.h.Sender.Send(40)
			r.waitSettled(t, 40)
			require.NoError(t, r.h.Source.Ready(), "ready while it settles")
			require.True(t, r.h.Source.Connected(), "connected while it settles")
			require.NoError(t, r.stop(t))
			r.check(t, 40, 0)
		})
	}
	t.Run("drained at shutdown", func(t *testing.T) {
		t.Parallel()
		a := &applier{hold: make(chan struct{})}
		c := start(t, newHarness(t), a, 10*time.Second)
		c.h.Sender.Send(10)
		require.Eventually(t, func() bool { return a.attempts.Load() > 0 }, 5*time.Second, time.Millisecond)
		stopped := make(chan error, 1)
		go func() { stopped <- c.stop(t) }()
		// Whether intake has ended yet or not, what is in hand is written
		// and settled.
		close(a.hold)
		require.NoError(t, <-stopped)
		require.Zero(t, c.abandoned())
		c.check(t, c.taken(), 0)
	})
	t.Run("given back when the grace runs out", func(t *testing.T) {
		t.Parallel()
		a := &applier{}
		a.failFirst.Store(-1) // always
		c := start(t, newHarness(t), a, 50*time.Millisecond)
		c.h.Sender.Send(10)
		require.Eventually(t, func() bool { return a.attempts.Load() > 0 }, 5*time.Second, time.Millisecond)
		require.ErrorIs(t, c.stop(t), pipeline.ErrGraceRanOut)
		require.Zero(t, c.h.Sender.Settled(), "nothing settled that was not stored")
		c.check(t, 0, c.taken())
	})
}

// run is one case: a pipeline over the harness's source, recorded.
type run struct {
	h    Harness
	rec  *recorder
	stop func(t *testing.T) error
}

func start(t *testing.T, h Harness, a *applier, grace time.Duration) *run {
	t.Helper()
	rec := &recorder{}
	p := pipeline.New(a, pipeline.Config{BatchSize: 4, BatchWait: time.Millisecond, Writers: 2,
		RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}, slog.New(slog.DiscardHandler), pipeline.NewMetrics(nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, grace, recordingSource{h.Source, rec}) }()
	probed := probe(h.Source, done)
	r := &run{h: h, rec: rec}
	var once sync.Once
	var err error
	r.stop = func(t *testing.T) error {
		t.Helper()
		once.Do(func() {
			cancel()
			select {
			case err = <-probed:
			case <-time.After(20 * time.Second):
				t.Fatal("the pipeline did not return")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = r.stop(t) })
	return r
}

// probe asks the source's Ready and Connected, as the worker's readiness
// and liveness probes do, until the pipeline returns; it passes on what the
// pipeline returned once it has stopped asking.
func probe(s pipeline.Source, done <-chan error) <-chan error {
	out := make(chan error, 1)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			_, _ = s.Ready(), s.Connected()
			select {
			case err := <-done:
				out <- err
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

func (r *run) waitSettled(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return r.h.Sender.Settled() == n }, 10*time.Second, time.Millisecond,
		"the sender heard of %d settles, want %d", r.h.Sender.Settled(), n)
}

func (r *run) taken() int { return len(r.rec.all()) }

func (r *run) abandoned() int {
	n := 0
	for _, d := range r.rec.all() {
		n += int(d.abandons.Load())
	}
	return n
}

// check says that every delivery was answered exactly once, settled and
// abandoned as many as said, that the sender heard every settle, and that
// the source holds nothing unanswered.
func (r *run) check(t *testing.T, settled, abandoned int) {
	t.Helper()
	var s, a int
	for i, d := range r.rec.all() {
		require.Equal(t, int32(1), d.settles.Load()+d.abandons.Load(), "delivery %d answered exactly once", i)
		s += int(d.settles.Load())
		a += int(d.abandons.Load())
	}
	require.Equal(t, settled, s, "settled")
	require.Equal(t, abandoned, a, "abandoned")
	// The sender may hear a moment after the pipeline has answered.
	require.Eventually(t, func() bool { return r.h.Sender.Outstanding() == 0 && r.h.Sender.Settled() == s },
		5*time.Second, time.Millisecond, "%d messages still held unanswered; the sender heard of %d settles, want %d",
		r.h.Sender.Outstanding(), r.h.Sender.Settled(), s)
	// The worker closes its sources once the pipeline has returned; a
	// second close (a stop that raced a failure) changes nothing.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, r.h.Source.Close(ctx), "close")
	require.NoError(t, r.h.Source.Close(ctx), "close again")
}

// applier is a store that fails its first failFirst attempts (-1: all), or
// holds every attempt until hold is closed.
type applier struct {
	attempts  atomic.Int64
	failFirst atomic.Int64
	hold      chan struct{}
}

// errDown is a database away: retried.
var errDown = errors.New("database away")

func (a *applier) Apply(ctx context.Context, items []ingest.Item) ([]ingest.Result, error) {
	n := a.attempts.Add(1)
	if a.hold != nil {
		select {
		case <-a.hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f := a.failFirst.Load(); f < 0 || n <= f {
		return nil, errDown
	}
	res := make([]ingest.Result, len(items))
	for i := range items {
		res[i] = items[i].Result()
	}
	return res, nil
}

// recorder keeps every delivery the pipeline took, with its answers.
type recorder struct {
	mu         sync.Mutex
	deliveries []*recordedDelivery
}

func (r *recorder) add(d pipeline.Delivery) pipeline.Delivery {
	if d == nil {
		return nil
	}
	rd := &recordedDelivery{Delivery: d}
	r.mu.Lock()
	r.deliveries = append(r.deliveries, rd)
	r.mu.Unlock()
	return rd
}

func (r *recorder) all() []*recordedDelivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*recordedDelivery(nil), r.deliveries...)
}

type recordingSource struct {
	pipeline.Source
	rec *recorder
}

func (s recordingSource) Run(ctx context.Context, consume func(context.Context, pipeline.Receiver) error) error {
	return s.Source.Run(ctx, func(ctx context.Context, r pipeline.Receiver) error {
		return consume(ctx, recordingReceiver{r, s.rec})
	})
}

type recordingReceiver struct {
	pipeline.Receiver
	rec *recorder
}

func (r recordingReceiver) Next(ctx context.Context) (pipeline.Delivery, error) {
	d, err := r.Receiver.Next(ctx)
	if err != nil {
		return nil, err
	}
	return r.rec.add(d), nil
}

func (r recordingReceiver) Prefetched() pipeline.Delivery { return r.rec.add(r.Receiver.Prefetched()) }

type recordedDelivery struct {
	pipeline.Delivery
	settles, abandons atomic.Int32
}

func (d *recordedDelivery) Settle(ctx context.Context, res ingest.Result) error {
	d.settles.Add(1)
	return d.Delivery.Settle(ctx, res)
}

func (d *recordedDelivery) Abandon() {
	d.abandons.Add(1)
	d.Delivery.Abandon()
}
