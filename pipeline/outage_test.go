package pipeline_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/syncbuf"
	"github.com/cmdtrack/cmdtrack/pipeline"
)

// These tests live through database outages of tens of seconds on a fake
// clock: each backoff the pipeline waits out moves the clock by as much and
// returns at once.

// unavailableError is a write error that says the database is away (the
// store's connection and shutdown classes).
type unavailableError struct{ writeError }

func (unavailableError) RetrySoon() bool { return true }

// outage is a pipeline whose store fails until the fake clock reaches the
// outage's end, with the backoffs it waited and the log it wrote.
type outage struct {
	*fixture
	mu     sync.Mutex
	delays []time.Duration
	log    syncbuf.Buffer
	end    time.Time
}

// records are the log records whose message is msg.
func (o *outage) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(o.log.String()), "\n") {
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &r), line)
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

func (o *outage) waited() []time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]time.Duration(nil), o.delays...)
}

// newOutage runs a pipeline with the worker's default retry bounds whose
// store fails with err for the first lasting of the fake clock.
func newOutage(t *testing.T, lasting time.Duration, err error) *outage {
	t.Helper()
	o := &outage{fixture: &fixture{store: &fakeStore{}, src: newFakeSource(), reg: prometheus.NewRegistry(),
		clock: &fakeClock{}, stopping: make(chan struct{})}}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	o.clock.ns.Store(start.UnixNano())
	o.end = start.Add(lasting)
	o.store.fail = func(int, []ingest.Item) error {
		if o.clock.now().Before(o.end) {
			return err
		}
		return nil
	}
	o.p = pipeline.New(o.store, pipeline.Config{
		BatchSize: 4, Writers: 1, RetryMin: 200 * time.Millisecond, RetryMax: 10 * time.Second,
		DatabaseHosts: []string{"db1.example:5432", "db2.example:5432"},
	}, slog.New(slog.NewJSONHandler(&o.log, nil)), pipeline.NewMetrics(o.reg))
	pipeline.SetClock(o.p, o.clock.now)
	pipeline.SetAfter(o.p, func(d time.Duration) <-chan time.Time {
		o.mu.Lock()
		o.delays = append(o.delays, d)
		o.mu.Unlock()
		o.clock.advance(d)
		c := make(chan time.Time, 1)
		c <- o.clock.now()
		return c
	})
	return o
}

// While the database is away (a failover, a restart), writes are retried at
// least every two seconds, so that they resume within that of a new primary
// taking them; backing off to CMDTRACK_DB_RETRY_MAX (10 s) let them resume up
// to 5.5 s late through a failover.
func TestRetryQuicklyWhileTheDatabaseIsAway(t *testing.T) {
	t.Parallel()
	o := newOutage(t, 50*time.Second, unavailableError{writeError{class: "connection", retry: true}})
	o.run(t, time.Second)
	ds := o.src.send(4)
	require.Eventually(t, func() bool { return ds[3].settled.Load() == 1 }, 10*time.Second, time.Millisecond)
	waited := o.waited()
	for i, d := range waited {
		require.LessOrEqual(t, d, 2*time.Second, "backoff %d of %d", i+1, len(waited))
	}
	require.Greater(t, len(waited), 20, "retried throughout the outage")
	// Jitter: replicas cut off together do not come back in step.
	require.Greater(t, len(distinct(waited[len(waited)-10:])), 1, "the capped backoffs vary")
	require.WithinDuration(t, o.end, o.clock.now(), 2*time.Second, "stored within the cap of the database's return")
}

// A database that answers but refuses (a missing table, a refused
// password) gets the full backoff: retrying it every second would only
// spam it, and an operator must act anyway.
func TestRetryRefusalsWithTheFullBackoff(t *testing.T) {
	t.Parallel()
	o := newOutage(t, 50*time.Second, writeError{class: "schema", retry: true})
	o.run(t, time.Second)
	ds := o.src.send(4)
	require.Eventually(t, func() bool { return ds[3].settled.Load() == 1 }, 10*time.Second, time.Millisecond)
	require.Greater(t, max(o.waited()[len(o.waited())-1], o.waited()[len(o.waited())-2]), 5*time.Second)
}

// A long outage is not silent between its first and last lines: every so
// often the log says for how long writes have failed and which hosts were
// tried.
func TestOutageIsLoggedEverySoOften(t *testing.T) {
	t.Parallel()
	o := newOutage(t, 50*time.Second, unavailableError{writeError{class: "connection", retry: true}})
	o.run(t, time.Second)
	ds := o.src.send(4)
	require.Eventually(t, func() bool { return ds[3].settled.Load() == 1 }, 10*time.Second, time.Millisecond)

	require.Len(t, o.records(t, pipeline.LogWriteFailed), 1)
	still := o.records(t, pipeline.LogWriteStillFails)
	// One every 10 s of the 50 s: at 10, 20, 30 and 40 s (and perhaps 50).
	require.GreaterOrEqual(t, len(still), 4, "lines during a 50 s outage")
	require.LessOrEqual(t, len(still), 5, "lines during a 50 s outage")
	prev := 0.0
	for i, r := range still {
		require.Equal(t, "db1.example:5432,db2.example:5432", r["hosts"], "line %d names the hosts tried", i)
		// 10 s after the one before, plus up to the backoff (1 s) that
		// was running when the 10 s were up.
		d := seconds(t, r["failing_for"])
		require.InDelta(t, prev+10.75, d, 1.25, "line %d says for how long", i)
		prev = d
		require.Equal(t, "connection", r["class"])
		require.NotEmpty(t, r["err"])
	}
	rec := o.records(t, pipeline.LogWriteRecovered)
	require.Len(t, rec, 1)
	require.InDelta(t, 50, seconds(t, rec[0]["failing_for"]), 2.5, "the recovery says how long it failed")
}

func distinct(ds []time.Duration) map[time.Duration]bool {
	m := map[time.Duration]bool{}
	for _, d := range ds {
		m[d] = true
	}
	return m
}

// seconds reads a duration that slog's JSON handler wrote (nanoseconds).
func seconds(t *testing.T, v any) float64 {
	t.Helper()
	ns, ok := v.(float64)
	require.True(t, ok, "a duration, not %T %v", v, v)
	return time.Duration(ns).Seconds()
}
