package lifecycle_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/lifecycle"
)

// trace records what the components did, in order.
type trace struct {
	mu     sync.Mutex
	events []string
}

func (tr *trace) add(e string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.events = append(tr.events, e)
}

func (tr *trace) get() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.events...)
}

func (tr *trace) has(e string) bool {
	for _, got := range tr.get() {
		if got == e {
			return true
		}
	}
	return false
}

// waiter runs until told to stop, and says when it was.
func waiter(tr *trace, name string) func(context.Context) error {
	return func(ctx context.Context) error {
		tr.add("run " + name)
		<-ctx.Done()
		tr.add("stop " + name)
		return nil
	}
}

// start records a start.
func start(tr *trace, name string) func(context.Context) error {
	return func(context.Context) error {
		tr.add("start " + name)
		return nil
	}
}

// runGroup runs g until ctx ends, in the background.
func runGroup(ctx context.Context, g *lifecycle.Group) <-chan error {
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	return done
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the group did not return")
		return nil
	}
}

// Starts run one after the other in the list's order, and a component after
// a Start waits for it: what needs the schema waits for migrations.
func TestStartsInOrder(t *testing.T) {
	t.Parallel()
	tr := &trace{}
	release := make(chan struct{})
	g := lifecycle.New(nil,
		lifecycle.Component{Name: "a", Start: start(tr, "a"), Run: waiter(tr, "a")},
		lifecycle.Component{Name: "gate", Start: func(context.Context) error {
			tr.add("start gate")
			<-release
			return nil
		}},
		lifecycle.Component{Name: "b", Start: start(tr, "b"), Run: waiter(tr, "b")},
		lifecycle.Component{Name: "c", Start: start(tr, "c")},
	)
	ctx, cancel := context.WithCancel(t.Context())
	done := runGroup(ctx, g)
	require.Eventually(t, func() bool { return tr.has("run a") && tr.has("start gate") }, 5*time.Second, time.Millisecond)
	require.NotContains(t, tr.get(), "start b", "b waits for the gate")
	close(release)
	require.Eventually(t, func() bool { return tr.has("run b") && tr.has("start c") }, 5*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, wait(t, done))
	var starts []string
	for _, e := range tr.get() {
		if e[:5] == "start" {
			starts = append(starts, e)
		}
	}
	require.Equal(t, []string{"start a", "start gate", "start b", "start c"}, starts)
}

// The stop goes phase by phase: a later phase is told to stop only once
// every component of the earlier ones has returned, whatever the list's
// order.
func TestStopsByPhase(t *testing.T) {
	t.Parallel()
	tr := &trace{}
	slow := make(chan struct{})
	g := lifecycle.New(nil,
		lifecycle.Component{Name: "ops", Run: waiter(tr, "ops"), Stop: 2},
		lifecycle.Component{Name: "broker", Run: waiter(tr, "broker"), Stop: 1},
		lifecycle.Component{Name: "intake", Run: waiter(tr, "intake"), Stop: 0},
		lifecycle.Component{Name: "pipeline", Run: func(ctx context.Context) error {
			tr.add("run pipeline")
			<-ctx.Done()
			<-slow // the drain
			tr.add("stop pipeline")
			return nil
		}, Stop: 0},
	)
	ctx, cancel := context.WithCancel(t.Context())
	done := runGroup(ctx, g)
	require.Eventually(t, func() bool {
		return tr.has("run ops") && tr.has("run broker") && tr.has("run intake") && tr.has("run pipeline")
	}, 5*time.Second, time.Millisecond)
	cancel()
	require.Eventually(t, func() bool { return tr.has("stop intake") }, 5*time.Second, time.Millisecond)
	require.NotContains(t, tr.get(), "stop broker", "the broker outlives the drain")
	close(slow)
	require.NoError(t, wait(t, done))
	ev := tr.get()
	require.Equal(t, []string{"stop pipeline", "stop broker", "stop ops"}, ev[len(ev)-3:])
}

// One component failing stops the others, and its error is what Run
// returns; components after a failed Start never start.
func TestOneFailureStopsTheRest(t *testing.T) {
	t.Parallel()
	tr := &trace{}
	boom := errors.New("boom")
	fail := make(chan struct{})
	g := lifecycle.New(nil,
		lifecycle.Component{Name: "a", Run: waiter(tr, "a")},
		lifecycle.Component{Name: "b", Run: waiter(tr, "b"), Stop: 1},
		lifecycle.Component{Name: "failing", Run: func(context.Context) error {
			<-fail
			return boom
		}},
		lifecycle.Component{Name: "also failing", Run: func(ctx context.Context) error {
			<-ctx.Done()
			return errors.New("a later error")
		}},
	)
	done := runGroup(t.Context(), g)
	require.Eventually(t, func() bool { return tr.has("run a") && tr.has("run b") }, 5*time.Second, time.Millisecond)
	close(fail)
	require.ErrorIs(t, wait(t, done), boom)
	require.Subset(t, tr.get(), []string{"stop a", "stop b"})

	tr = &trace{}
	g = lifecycle.New(nil,
		lifecycle.Component{Name: "a", Run: waiter(tr, "a")},
		lifecycle.Component{Name: "migrate", Start: func(context.Context) error { return boom }},
		lifecycle.Component{Name: "b", Start: start(tr, "b"), Run: waiter(tr, "b")},
	)
	require.ErrorIs(t, g.Run(t.Context()), boom)
	require.NotContains(t, tr.get(), "start b")
	require.NotContains(t, tr.get(), "run b")
}

// A stop that begins during a Start ends the Start's wait, and nothing
// after it starts: a worker stopped before the database came up.
func TestStopDuringStart(t *testing.T) {
	t.Parallel()
	tr := &trace{}
	ctx, cancel := context.WithCancel(t.Context())
	g := lifecycle.New(nil,
		lifecycle.Component{Name: "ops", Run: waiter(tr, "ops"), Stop: 1},
		lifecycle.Component{Name: "migrate", Start: func(ctx context.Context) error {
			tr.add("start migrate")
			<-ctx.Done()
			return nil
		}},
		lifecycle.Component{Name: "pipeline", Run: waiter(tr, "pipeline")},
	)
	done := runGroup(ctx, g)
	require.Eventually(t, func() bool { return tr.has("start migrate") }, 5*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, wait(t, done))
	require.NotContains(t, tr.get(), "run pipeline")
	require.Contains(t, tr.get(), "stop ops")
}

// Readiness says "stopping" before any component is told to stop, so that
// a load balancer stops sending while the drain runs.
func TestStoppingBeforeTheDrain(t *testing.T) {
	t.Parallel()
	var g *lifecycle.Group
	sawStopping := make(chan bool, 1)
	running := make(chan struct{})
	g = lifecycle.New(nil, lifecycle.Component{Name: "pipeline", Run: func(ctx context.Context) error {
		close(running)
		<-ctx.Done()
		sawStopping <- g.Stopping()
		return nil
	}})
	ctx, cancel := context.WithCancel(t.Context())
	done := runGroup(ctx, g)
	<-running
	require.False(t, g.Stopping())
	cancel()
	require.NoError(t, wait(t, done))
	require.True(t, <-sawStopping)
}

// A component that returns nil early (nothing to do) stops nothing.
func TestEarlyReturnStopsNothing(t *testing.T) {
	t.Parallel()
	tr := &trace{}
	g := lifecycle.New(nil,
		lifecycle.Component{Name: "watchdog off", Run: func(context.Context) error { tr.add("done"); return nil }},
		lifecycle.Component{Name: "a", Run: waiter(tr, "a")},
	)
	ctx, cancel := context.WithCancel(t.Context())
	done := runGroup(ctx, g)
	require.Eventually(t, func() bool { return tr.has("done") && tr.has("run a") }, 5*time.Second, time.Millisecond)
	require.False(t, g.Stopping())
	cancel()
	require.NoError(t, wait(t, done))
}
