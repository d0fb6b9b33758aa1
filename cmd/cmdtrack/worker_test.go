package main

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/lifecycle"
	"github.com/cmdtrack/cmdtrack/pipeline"
	"github.com/cmdtrack/cmdtrack/store"
)

// The worker's order, as its components declare it: what needs the schema
// starts after migrations, the ops server and the push receiver answer
// before them, and only the ops server, the watchdog and the outcome
// exporter (the database's metrics) outlive the drain.
func TestWorkerComponentOrder(t *testing.T) {
	t.Parallel()
	var names []string
	var serving []string
	for _, c := range (&worker{}).components() {
		names = append(names, c.Name)
		if c.Stop == stopServing {
			serving = append(serving, c.Name)
		}
	}
	migrations := slices.Index(names, "migrations")
	require.Positive(t, migrations)
	for _, n := range []string{"pipeline", "watchdog", "upkeep", "outcome exporter", "reconciler"} {
		require.Greater(t, slices.Index(names, n), migrations, "%s needs the schema", n)
	}
	for _, n := range []string{"ops server", "HTTP push receiver"} {
		require.Less(t, slices.Index(names, n), migrations, "%s answers at once", n)
	}
	require.ElementsMatch(t, []string{"ops server", "watchdog", "outcome exporter"}, serving)
}

// The worker's readiness and liveness follow its sources through the
// Source interface, whatever they are (here a fake beside the HTTP inbox):
// a source not ready makes the worker unready with its reason; a stalled
// pipeline fails liveness only while every source is there to hear
// settles; and each source is closed once the pipeline has returned.
func TestWorkerHealthFollowsItsSources(t *testing.T) {
	t.Parallel()
	src := &fakeSource{next: make(chan pipeline.Delivery, 1)}
	src.connected.Store(true)
	held := make(chan struct{})
	log := slog.New(slog.DiscardHandler)
	// A store for the last question of readiness: asked with an ended
	// context, its ping fails at once, without a database.
	st, err := store.Open(context.Background(), "postgres://cmdtrack@127.0.0.1:1/cmdtrack", store.Options{})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	w := &worker{cfg: &Config{ShutdownGrace: 10 * time.Second}, st: st, log: log,
		pipe: pipeline.New(holdingStore{held}, pipeline.Config{BatchSize: 1, BatchWait: time.Millisecond, Writers: 1,
			StallTimeout: time.Millisecond}, log, pipeline.NewMetrics(nil)),
		sources: []pipeline.Source{pipeline.NewInbox(), src}}
	w.group = lifecycle.New(log, w.components()...)
	w.migrated.Store(true)
	asked, cancelAsked := context.WithCancel(context.Background())
	cancelAsked()

	errDetached := errors.New(`queue "q" is not attached`)
	src.setReady(errDetached)
	require.ErrorIs(t, w.ready(asked), errDetached, "the source's reason")
	src.setReady(nil)
	require.ErrorIs(t, w.ready(asked), context.Canceled, "past the sources, on to the database")

	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- w.runPipeline(ctx) }()
	// One delivery in hand, its write held: nothing stored or settled.
	src.next <- fakeDelivery{}
	require.Eventually(t, func() bool { return w.pipe.Stalled() != nil }, 10*time.Second, time.Millisecond)
	require.Error(t, w.live(asked), "stalled, every source there: a wedge")
	src.connected.Store(false)
	require.NoError(t, w.live(asked), "a source away: waiting, not wedged")
	src.connected.Store(true)
	require.Error(t, w.live(asked))

	close(held)
	stop()
	require.NoError(t, <-ran)
	require.Equal(t, int32(1), src.closed.Load(), "closed once the pipeline returned")
}

// fakeSource is one receiver fed by next, with a state the test sets.
type fakeSource struct {
	next      chan pipeline.Delivery
	mu        sync.Mutex
	notReady  error
	connected atomic.Bool
	closed    atomic.Int32
}

func (s *fakeSource) setReady(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notReady = err
}

func (s *fakeSource) Run(ctx context.Context, consume func(context.Context, pipeline.Receiver) error) error {
	return consume(ctx, s)
}

func (s *fakeSource) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notReady
}

func (s *fakeSource) Connected() bool { return s.connected.Load() }

func (s *fakeSource) Close(context.Context) error {
	s.closed.Add(1)
	return nil
}

func (s *fakeSource) Next(ctx context.Context) (pipeline.Delivery, error) {
	select {
	case d := <-s.next:
		return d, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *fakeSource) Prefetched() pipeline.Delivery { return nil }

type fakeDelivery struct{}

func (fakeDelivery) Item() ingest.Item                           { return ingest.Item{Source: "fake"} }
func (fakeDelivery) Settle(context.Context, ingest.Result) error { return nil }
func (fakeDelivery) Abandon()                                    {}

// holdingStore holds every write until held is closed.
type holdingStore struct{ held chan struct{} }

func (s holdingStore) Apply(ctx context.Context, items []ingest.Item) ([]ingest.Result, error) {
	select {
	case <-s.held:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res := make([]ingest.Result, len(items))
	for i := range items {
		res[i] = items[i].Result()
	}
	return res, nil
}
