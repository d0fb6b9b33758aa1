package upkeep_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/syncbuf"
	"github.com/cmdtrack/cmdtrack/reconcile"
	"github.com/cmdtrack/cmdtrack/store"
	"github.com/cmdtrack/cmdtrack/upkeep"
)

// fakeStore answers upkeep's calls from what the test sets, and records them.
type fakeStore struct {
	mu       sync.Mutex
	lockErr  error
	busy     bool // another replica holds the lock
	held     bool
	locks    []string
	results  []store.PartitionResult // one per MaintainPartitions call; the last repeats
	partErr  error
	pruned   store.PruneResult
	pruneErr error
	calls    map[string]int
	called   chan string
}

func (f *fakeStore) call(name string) {
	f.calls[name]++
	select {
	case f.called <- name:
	default:
	}
}

func (f *fakeStore) TryLock(_ context.Context, name string) (func(), bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.locks = append(f.locks, name)
	if f.lockErr != nil || f.busy || f.held {
		return nil, false, f.lockErr
	}
	f.held = true
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.held = false
	}, true, nil
}

func (f *fakeStore) MaintainPartitions(context.Context, store.Partitioning, time.Time) (store.PartitionResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.held {
		panic("MaintainPartitions without the lock")
	}
	f.call("partitions")
	var res store.PartitionResult
	if n := f.calls["partitions"]; len(f.results) > 0 {
		res = f.results[min(n, len(f.results))-1]
	}
	return res, f.partErr
}

func (f *fakeStore) Prune(context.Context, store.Retention, time.Time) (store.PruneResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("prune")
	return f.pruned, f.pruneErr
}

func (f *fakeStore) RefreshRollup(context.Context, int, time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.held {
		panic("RefreshRollup without the lock")
	}
	f.call("rollup")
	return nil
}

// byHistory is the result of a run that did per of each history.
func byHistory(per map[string]store.PartitionResult) store.PartitionResult {
	res := store.PartitionResult{Histories: per}
	for _, r := range per {
		res.Created += r.Created
		res.Dropped += r.Dropped
		res.Moved += r.Moved
		res.Deleted += r.Deleted
		res.Later = append(res.Later, r.Later...)
		res.LockTimeouts += r.LockTimeouts
	}
	return res
}

func (f *fakeStore) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

type fixture struct {
	st  *fakeStore
	up  *upkeep.Upkeep
	reg *prometheus.Registry
	log *syncbuf.Buffer
}

func setup(t *testing.T, st *fakeStore, cfg upkeep.Config) *fixture {
	t.Helper()
	st.calls = map[string]int{}
	st.called = make(chan string, 100)
	f := &fixture{st: st, reg: prometheus.NewRegistry(), log: &syncbuf.Buffer{}}
	log := slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.up = upkeep.New(st, cfg, log, upkeep.NewMetrics(f.reg))
	return f
}

func (f *fixture) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// series counts the series of a metric family.
func (f *fixture) series(t *testing.T, name string) int {
	t.Helper()
	mfs, err := f.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

var privilegeErr = store.NewError(store.PrivilegeError, errors.New("must be owner of table device_command_events"))

// Both background jobs name their advisory locks one way.
func TestLockNames(t *testing.T) {
	t.Parallel()
	require.Equal(t, "cmdtrack.upkeep", upkeep.LockName)
	require.Equal(t, "cmdtrack.reconcile", reconcile.LockName)
	f := setup(t, &fakeStore{}, upkeep.Config{})
	require.NoError(t, f.up.RunOnce(context.Background()))
	require.Equal(t, []string{"cmdtrack.upkeep", "cmdtrack.upkeep"}, f.st.locks)
	require.False(t, f.st.held, "the lock is released after each task")
}

// Another replica holds the lock: nothing is done, nothing fails.
func TestBusyLockSkipsTheRun(t *testing.T) {
	t.Parallel()
	f := setup(t, &fakeStore{busy: true}, upkeep.Config{})
	later, err := f.up.Partitions(context.Background())
	require.NoError(t, err)
	require.False(t, later)
	require.NoError(t, f.up.Rollup(context.Background()))
	require.Zero(t, f.st.count("partitions")+f.st.count("prune")+f.st.count("rollup"))
	require.Zero(t, f.metric(t, "cmdtrack_upkeep_runs_total", "task", "partitions"))
	require.Zero(t, f.series(t, "cmdtrack_upkeep_failures_total"))
}

// HoldsLock follows the last try: the replica that took the lock exports
// the database's gauges, one that found it busy stops exporting them.
func TestHoldsLockFollowsTheLastTry(t *testing.T) {
	t.Parallel()
	st := &fakeStore{}
	f := setup(t, st, upkeep.Config{})
	require.False(t, f.up.HoldsLock(), "before any run")
	require.NoError(t, f.up.Rollup(context.Background()))
	require.True(t, f.up.HoldsLock())
	st.mu.Lock()
	st.busy = true
	st.mu.Unlock()
	require.NoError(t, f.up.Rollup(context.Background()))
	require.False(t, f.up.HoldsLock())
}

// A lock that cannot be asked for (the database away) is a failure of its
// class, tried again soon.
func TestLockErrorIsAFailure(t *testing.T) {
	t.Parallel()
	f := setup(t, &fakeStore{lockErr: store.NewError(store.ConnectionError, errors.New("connection refused"))}, upkeep.Config{})
	later, err := f.up.Partitions(context.Background())
	require.Error(t, err)
	require.True(t, later)
	require.Equal(t, 1.0, f.metric(t, "cmdtrack_upkeep_failures_total", "task", "partitions", "class", "connection"))
	require.Contains(t, f.log.String(), upkeep.LogLock)
}

// A role that may not make or drop partitions is told what to do, counted
// as a privilege failure, and not retried every Retry; retention of the
// other tables runs all the same.
func TestPrivilegeFailure(t *testing.T) {
	t.Parallel()
	f := setup(t, &fakeStore{partErr: privilegeErr}, upkeep.Config{PrivilegeHint: "run `cmdtrack upkeep` as the owner"})
	later, err := f.up.Partitions(context.Background())
	require.ErrorIs(t, err, privilegeErr)
	require.False(t, later)
	require.Equal(t, 1, f.st.count("prune"), "retention ran all the same")
	require.Equal(t, 1.0, f.metric(t, "cmdtrack_upkeep_failures_total", "task", "partitions", "class", "privilege"))
	require.Contains(t, f.log.String(), upkeep.LogPrivilege+": run `cmdtrack upkeep` as the owner")
}

// What a run made and dropped is counted, per history; what it left for
// later is shown and logged, and the loop comes back for it after Retry,
// not Interval.
func TestLeftForLaterIsRetriedSoon(t *testing.T) {
	t.Parallel()
	st := &fakeStore{results: []store.PartitionResult{
		byHistory(map[string]store.PartitionResult{
			"command": {Created: 2, Dropped: 3, Later: []string{"device_command_events_20280102"}},
			"message": {Created: 5, Later: []string{"device_message_events_20280103"}},
		}),
		byHistory(map[string]store.PartitionResult{"message": {Dropped: 1}}),
	}}
	f := setup(t, st, upkeep.Config{Interval: time.Hour, Retry: time.Millisecond, RollupInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.up.Loop(ctx)
	}()
	require.Eventually(t, func() bool { return st.count("partitions") >= 2 }, 10*time.Second, time.Millisecond)
	cancel()
	<-done
	require.Equal(t, 2, st.count("partitions"), "after a run that left nothing, the next waits an Interval")
	for _, c := range []struct {
		history          string
		created, dropped float64
	}{{"command", 2, 3}, {"message", 5, 1}} {
		require.Equal(t, c.created, f.metric(t, "cmdtrack_upkeep_partitions_created_total", "history", c.history), c.history)
		require.Equal(t, c.dropped, f.metric(t, "cmdtrack_upkeep_partitions_dropped_total", "history", c.history), c.history)
		require.Zero(t, f.metric(t, "cmdtrack_upkeep_partitions_left_for_later", "history", c.history), "%s: the second run left nothing", c.history)
	}
	require.Equal(t, 2.0, f.metric(t, "cmdtrack_upkeep_runs_total", "task", "partitions"))
	require.Contains(t, f.log.String(), upkeep.LogLater)
	require.Contains(t, f.log.String(), "device_command_events_20280102")
	require.Contains(t, f.log.String(), "device_message_events_20280103")
	require.Contains(t, f.log.String(), "history=message created=0 dropped=1")
}

// Every history's series exist before anything happened to it, at zero:
// a rule or panel over them has something to read.
func TestHistorySeriesStartAtZero(t *testing.T) {
	t.Parallel()
	f := setup(t, &fakeStore{}, upkeep.Config{})
	for _, name := range []string{"cmdtrack_upkeep_partitions_created_total", "cmdtrack_upkeep_partitions_dropped_total",
		"cmdtrack_upkeep_partitions_left_for_later", "cmdtrack_upkeep_lock_timeouts_total"} {
		require.Equal(t, len(store.HistoryNames()), f.series(t, name), name)
	}
	require.Equal(t, []string{"command", "message"}, store.HistoryNames())
}

// What retention deleted is logged, messages with commands.
func TestPrunedLogged(t *testing.T) {
	t.Parallel()
	f := setup(t, &fakeStore{pruned: store.PruneResult{Commands: 2, Messages: 3}}, upkeep.Config{})
	_, err := f.up.Partitions(context.Background())
	require.NoError(t, err)
	require.Contains(t, f.log.String(), upkeep.LogPruned)
	require.Contains(t, f.log.String(), "commands=2 messages=3")
}

// A passing failure (the database away) is tried again soon; a privilege
// failure waits for the Interval.
func TestRetryByClass(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err   error
		later bool
	}{
		{store.NewError(store.ShutdownError, errors.New("terminating connection")), true},
		{store.NewError(store.DeadlockError, errors.New("deadlock detected")), true},
		{privilegeErr, false}, // needs an operator
		{store.NewError(store.SchemaError, errors.New(`relation "x" does not exist`)), false},
		{errors.New("partition has bounds"), false}, // other
	} {
		f := setup(t, &fakeStore{partErr: tc.err}, upkeep.Config{})
		later, err := f.up.Partitions(context.Background())
		require.ErrorIs(t, err, tc.err)
		require.Equal(t, tc.later, later, "%v", tc.err)
	}
}

// Stopping is not a failure: Loop returns when ctx ends, nothing counted.
func TestLoopStops(t *testing.T) {
	t.Parallel()
	f := setup(t, &fakeStore{}, upkeep.Config{RollupInterval: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.up.Loop(ctx)
	}()
	require.Eventually(t, func() bool { return f.st.count("rollup") >= 2 }, 10*time.Second, time.Millisecond)
	cancel()
	<-done
	require.Equal(t, 1, f.st.count("partitions"), "at once, then an hour later")
	require.Zero(t, f.series(t, "cmdtrack_upkeep_failures_total"))
}

// A run that gave up waiting for the history's lock (each wait held the
// writers off) counts it, and says so with what it left for later.
func TestHistoryLockTimeoutsCounted(t *testing.T) {
	t.Parallel()
	st := &fakeStore{results: []store.PartitionResult{
		byHistory(map[string]store.PartitionResult{
			"command": {Later: []string{"device_command_events_20280101", "device_command_events_20280102"}, LockTimeouts: 1},
		}),
	}}
	f := setup(t, st, upkeep.Config{})
	later, err := f.up.Partitions(context.Background())
	require.NoError(t, err)
	require.True(t, later)
	_, err = f.up.Partitions(context.Background())
	require.NoError(t, err)
	require.Equal(t, 2.0, f.metric(t, "cmdtrack_upkeep_lock_timeouts_total", "history", "command"))
	require.Zero(t, f.metric(t, "cmdtrack_upkeep_lock_timeouts_total", "history", "message"))
	require.Equal(t, 2.0, f.metric(t, "cmdtrack_upkeep_partitions_left_for_later", "history", "command"))
	require.Contains(t, f.log.String(), "history_lock_timeouts=1")
}
