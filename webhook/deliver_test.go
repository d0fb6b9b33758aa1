package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/store"
	"github.com/cmdtrack/cmdtrack/webhook"
)

func TestDelivered(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	f := newFakeOutbox()
	occurred := time.Date(2026, 3, 1, 12, 0, 0, 500, time.UTC)
	for _, s := range []string{"c1", "c2", "c3"} {
		f.add("hooks", store.KindFinished, s, occurred)
	}
	f.add("other", store.KindFinished, "c9", occurred) // another endpoint's
	start(t, f, rc, secret, webhook.Config{})
	waitFor(t, f, "three deliveries", func() bool { return len(f.deliveredIDs()) == 3 })
	rc.check()

	got := rc.deliveries()
	require.Len(t, got, 3)
	slices.SortFunc(got, func(a, b delivery) int { return strings.Compare(a.id, b.id) })
	for i, d := range got {
		require.Equal(t, []string{"evt_1_1", "evt_2_1", "evt_3_1"}[i], d.id)
		var p map[string]any
		require.NoError(t, json.Unmarshal(d.body, &p))
		require.Equal(t, map[string]any{
			"type":      "command.finished",
			"timestamp": "2026-03-01T12:00:00.0000005Z",
			"data": map[string]any{
				"id": d.subject, "status": "SUCCESSFUL",
				"outcome": map[string]any{"status": "SUCCESSFUL"},
			},
		}, p)
	}
	require.Len(t, f.snapshot(), 1, "the other endpoint's event stays")
}

// A row gone (retention) is named by its subject.
func TestDeliveredRowGone(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	f := newFakeOutbox()
	f.add("hooks", store.KindMessageFinalChanged, "dev1/m1", time.Now())
	gone := func(context.Context, string, string) (json.RawMessage, error) { return nil, nil }
	startData(t, f, rc, secret, webhook.Config{}, gone)
	waitFor(t, f, "the delivery", f.empty)
	rc.check()
	got := rc.deliveries()
	require.Len(t, got, 1)
	var p struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	require.NoError(t, json.Unmarshal(got[0].body, &p))
	require.Equal(t, "message.final_changed", p.Type)
	require.JSONEq(t, `{"id":"dev1/m1","outcome":{"status":"SUCCESSFUL"}}`, string(p.Data))
}

// A 500 is tried again, with the same webhook-id, and its body is the
// reason.
func TestRetriedAfter500(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	var calls sync.Map
	rc.setAnswer(func(w http.ResponseWriter, _ *http.Request, d delivery) {
		if _, again := calls.LoadOrStore(d.id, true); !again {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte("down for\nmaintenance"))
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	f := newFakeOutbox()
	id := f.add("hooks", store.KindFinished, "c1", time.Now())
	start(t, f, rc, secret, webhook.Config{})
	waitFor(t, f, "the delivery", f.empty)
	rc.check()
	got := rc.deliveries()
	require.Len(t, got, 2)
	require.Equal(t, got[0].id, got[1].id)
	require.Equal(t, []string{"HTTP 500: down for maintenance"}, f.retries(id))
}

// A request with no answer within the timeout is tried again.
func TestSlowTimesOut(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	var calls atomic.Int32
	rc.setAnswer(func(w http.ResponseWriter, r *http.Request, _ delivery) {
		if calls.Add(1) == 1 {
			<-r.Context().Done() // until the client gives up
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	f := newFakeOutbox()
	id := f.add("hooks", store.KindFinished, "c1", time.Now())
	// The timeout is what the test waits for once; a busy machine may
	// make the second answer late too, which only adds a retry.
	start(t, f, rc, secret, webhook.Config{Timeout: 300 * time.Millisecond})
	waitFor(t, f, "the delivery", f.empty)
	rc.check()
	reasons := f.retries(id)
	require.NotEmpty(t, reasons)
	require.Equal(t, "no answer within 300ms (CMDTRACK_WEBHOOK_TIMEOUT)", reasons[0])
}

// A redirect is a failure that says where it points; it is not followed.
func TestRedirectRefused(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	var elsewhere atomic.Int32
	rc.setAnswer(func(w http.ResponseWriter, r *http.Request, _ delivery) {
		if r.URL.Path == "/elsewhere" {
			elsewhere.Add(1)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	})
	f := newFakeOutbox()
	id := f.add("hooks", store.KindFinished, "c1", time.Now())
	s := start(t, f, rc, secret, webhook.Config{})
	waitFor(t, f, "two retries", func() bool { return len(f.retries(id)) >= 2 })
	s.stop()
	require.Equal(t, `HTTP 307: a redirect to "/elsewhere", not followed: set the endpoint's URL to where it points`, f.retries(id)[0])
	require.Zero(t, elsewhere.Load())
	require.Contains(t, s.log.String(), webhook.LogEndpointFailing)
	rc.check()
}

// An endpoint that drops every connection, then comes back: nothing lost.
func TestDeadThenBack(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	var dead atomic.Bool
	dead.Store(true)
	rc.setAnswer(func(w http.ResponseWriter, _ *http.Request, d delivery) {
		if dead.Load() {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				d.release()
				_ = conn.Close()
			}
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	f := newFakeOutbox()
	var ids []int64
	for _, s := range []string{"c1", "c2", "c3", "c1", "c2"} {
		ids = append(ids, f.add("hooks", store.KindFinished, s, time.Now()))
	}
	s := start(t, f, rc, secret, webhook.Config{})
	waitFor(t, f, "retries while dead", func() bool { return len(f.retries(ids[0])) >= 3 })
	// Logged once while dead. Counted before the endpoint is back: a
	// request dropped before that may end after one answered, which is a
	// failing spell of its own.
	require.Equal(t, 1, strings.Count(s.log.String(), webhook.LogEndpointFailing))
	dead.Store(false)
	waitFor(t, f, "every delivery", f.empty)
	rc.check()
	delivered := f.deliveredIDs()
	slices.Sort(delivered)
	require.Equal(t, ids, delivered)
	require.Contains(t, s.log.String(), webhook.LogEndpointBack)
	// In order per subject: c1's first event reached the receiver first.
	var order []string
	for _, d := range rc.deliveries() {
		if d.subject == "c1" && (len(order) == 0 || order[len(order)-1] != d.id) {
			order = append(order, d.id)
		}
	}
	require.Equal(t, "evt_1_1", order[0])
	require.Equal(t, "evt_4_1", order[len(order)-1])
	// Once the later event went out, the earlier one never did again.
	require.NotContains(t, order[slices.Index(order, "evt_4_1"):], "evt_1_1")
}

// Past the retry window an event fails for good; the last attempt comes
// at the window's end, however long the backoff. On a fake clock: the
// first attempt at the edge must come before the window ends, whatever
// the machine's load.
func TestRetryWindowExhausted(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	rc.setAnswer(func(w http.ResponseWriter, _ *http.Request, _ delivery) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	clock := newFakeClock(time.Now())
	f := newFakeOutbox()
	f.now = clock.Now
	old := f.add("hooks", store.KindFinished, "c1", clock.Now().Add(-2*time.Hour))
	edgeAt := clock.Now().Add(-time.Hour + time.Minute)
	edge := f.add("hooks", store.KindFinished, "c2", edgeAt)
	s := start(t, f, rc, secret, webhook.Config{RetryFor: time.Hour, BackoffMin: time.Hour, BackoffMax: time.Hour, Now: clock.Now})
	waitFor(t, f, "the old event failed, the edge's tried again", func() bool {
		return f.state(old) == "failed" && len(f.retries(edge)) == 1
	})
	// The backoff (up to an hour, full jitter) is capped at the window's
	// end: a wait up to then, then the last try.
	require.False(t, f.due(edge).After(edgeAt.Add(time.Hour)), "due by the window's end")
	clock.Add(time.Minute)
	waitFor(t, f, "the edge failed", func() bool { return f.state(edge) == "failed" })
	rc.check()
	require.Empty(t, f.retries(old))
	require.Equal(t, []string{"HTTP 503"}, f.retries(edge), "one retry, the last try at the window's end")
	for _, r := range f.snapshot() {
		require.Equal(t, "HTTP 503", r.reason)
	}
	s.stop()
	require.Equal(t, 1, strings.Count(s.log.String(), "level=WARN msg=\""+webhook.LogGaveUp))
}

// A replayed event is tried for a whole window again, counted from the
// replay: an event older than the window, failed for good, is not given
// up at its replay's first failed attempt.
func TestReplayedGetsAWindow(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	rc.setAnswer(func(w http.ResponseWriter, _ *http.Request, _ delivery) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	f := newFakeOutbox()
	id := f.add("hooks", store.KindFinished, "c1", time.Now().Add(-3*time.Hour))
	start(t, f, rc, secret, webhook.Config{RetryFor: time.Hour, BackoffMin: time.Hour, BackoffMax: time.Hour})
	waitFor(t, f, "the old event failed", func() bool { return f.state(id) == "failed" })
	require.Empty(t, f.retries(id))

	f.replay(id)
	waitFor(t, f, "the replay's attempt settled", func() bool { return len(f.retries(id)) > 0 || f.state(id) == "failed" })
	rc.check()
	require.Equal(t, []string{"HTTP 503"}, f.retries(id), "retried within the replay's window")
	require.Equal(t, "pending", f.state(id))
	require.Len(t, rc.deliveries(), 2)
}

// A body is read only to MaxErrorBody: an answer that never ends holds no
// worker, and its start is the reason.
func TestBodyLimit(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	rc.setAnswer(func(w http.ResponseWriter, r *http.Request, _ delivery) {
		w.WriteHeader(http.StatusBadGateway)
		chunk := []byte(strings.Repeat("x", 1023) + "\n")
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	f := newFakeOutbox()
	id := f.add("hooks", store.KindFinished, "c1", time.Now())
	// A long timeout: the limit, not the timeout, ends the attempt.
	s := start(t, f, rc, secret, webhook.Config{Timeout: time.Minute})
	waitFor(t, f, "a retry", func() bool { return len(f.retries(id)) >= 1 })
	s.stop()
	reason := f.retries(id)[0]
	require.True(t, strings.HasPrefix(reason, "HTTP 502: xxx"), reason)
	require.LessOrEqual(t, len(reason), len("HTTP 502: ")+webhook.MaxErrorBody)
	require.Greater(t, len(reason), webhook.MaxErrorBody-8)
	rc.check()
}

// The stop lets a request in flight finish, and settles it.
func TestStopWaitsForInFlight(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	entered, release := make(chan struct{}), make(chan struct{})
	rc.setAnswer(func(w http.ResponseWriter, _ *http.Request, _ delivery) {
		close(entered)
		<-release
		w.WriteHeader(http.StatusNoContent)
	})
	f := newFakeOutbox()
	id := f.add("hooks", store.KindFinished, "c1", time.Now())
	s := start(t, f, rc, secret, webhook.Config{})
	<-entered
	s.cancel() // the stop has begun when it returns
	claims := f.claimCount()
	// The request is still in hand: Run must not return. One that did not
	// wait would return at once; the bound only gives it the time to. A
	// machine too busy to run it within the bound lets the test pass, it
	// cannot make it fail.
	select {
	case <-s.done:
		t.Fatal("Run returned with a request in flight")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	<-s.done
	require.Equal(t, []int64{id}, f.deliveredIDs(), "settled before Run returned")
	require.LessOrEqual(t, f.claimCount(), claims+1, "no claim once stopped (one may have begun)")
	rc.check()
}

// A request that does not finish within its timeout after the stop is
// settled as any timeout: tried again later, not lost.
func TestStopCutsAtTimeout(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	entered := make(chan struct{})
	var once sync.Once
	rc.setAnswer(func(_ http.ResponseWriter, r *http.Request, _ delivery) {
		once.Do(func() { close(entered) })
		<-r.Context().Done()
	})
	f := newFakeOutbox()
	id := f.add("hooks", store.KindFinished, "c1", time.Now())
	s := start(t, f, rc, secret, webhook.Config{Timeout: 300 * time.Millisecond})
	<-entered
	s.stop()
	require.Equal(t, []string{"no answer within 300ms (CMDTRACK_WEBHOOK_TIMEOUT)"}, f.retries(id))
	require.Len(t, f.snapshot(), 1)
	rc.check()
}

// Whatever a claim returns, the deliverer holds one event of a subject at
// a time.
func TestOneSubjectAtATime(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	f := newFakeOutbox()
	f.careless = true
	rc.setAnswer(func(w http.ResponseWriter, r *http.Request, _ delivery) {
		// Answer once the deliverer has claimed again, twice: the careless
		// claims returned this subject's events meanwhile.
		from := f.claimCount()
		deadline := time.Now().Add(2 * time.Second)
		for f.claimCount() < from+2 && time.Now().Before(deadline) && r.Context().Err() == nil {
			select {
			case <-f.changed:
			case <-time.After(5 * time.Millisecond):
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})
	for _, s := range []string{"a", "b", "a", "a", "b"} {
		f.add("hooks", store.KindFinished, s, time.Now())
	}
	start(t, f, rc, secret, webhook.Config{})
	waitFor(t, f, "every delivery", func() bool { return f.empty() || rc.faulty() })
	rc.check() // no two requests of a subject at once
	// A careless claim may return an event settled while the claim ran:
	// sent again, as a lease that ended would make it, with its webhook-id.
	// It may also return a subject's later event while an earlier one is
	// in hand and left to its lease, so the order of the first requests is
	// not this fake's to promise: the store's claim returns only a
	// subject's first pending event (store's TestClaimInOrderPerSubject,
	// and TestWebhookOrderPerSubject end to end). Each is delivered.
	seen := map[string]bool{}
	var a, b []string
	for _, d := range rc.deliveries() {
		if seen[d.id] {
			continue
		}
		seen[d.id] = true
		if d.subject == "a" {
			a = append(a, d.id)
		} else {
			b = append(b, d.id)
		}
	}
	require.ElementsMatch(t, []string{"evt_1_1", "evt_3_1", "evt_4_1"}, a)
	require.ElementsMatch(t, []string{"evt_2_1", "evt_5_1"}, b)
}

// The database away is logged once, tried again, and survived.
func TestDatabaseAway(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	f := newFakeOutbox()
	f.setDown(errors.New("connection refused"))
	s := start(t, f, rc, secret, webhook.Config{})
	waitFor(t, f, "claims tried again", func() bool { return f.claimCount() >= 5 })
	f.setDown(nil)
	f.add("hooks", store.KindFinished, "c1", time.Now())
	waitFor(t, f, "the delivery", f.empty)
	s.stop()
	log := s.log.String()
	require.Equal(t, 1, strings.Count(log, "level=WARN msg=\""+webhook.LogDatabase), log)
	require.Equal(t, 1, strings.Count(log, webhook.LogDatabaseBack), log)
	rc.check()
}

// Without endpoints, Run has nothing to do.
func TestNoEndpoints(t *testing.T) {
	d, err := webhook.New(newFakeOutbox(), rows, webhook.Config{}, nil, nil)
	require.NoError(t, err)
	require.NoError(t, d.Run(t.Context()))
}

// While the data path drains a backlog (Busy), a claim takes only the
// events due for BacklogLag, so that the deliveries wait for the drain
// within that lag: an older event goes, a fresh one once it is old
// enough or once the backlog is drained, whichever comes first.
func TestBacklogLag(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	clock := newFakeClock(time.Now())
	f := newFakeOutbox()
	f.now = clock.Now
	fresh := f.add("hooks", store.KindFinished, "c1", clock.Now())
	f.setDue(fresh, clock.Now())
	old := f.add("hooks", store.KindFinished, "c2", clock.Now().Add(-2*time.Minute))
	f.setDue(old, clock.Now().Add(-2*time.Minute))
	var busy atomic.Bool
	busy.Store(true)
	start(t, f, rc, secret, webhook.Config{Busy: busy.Load, BacklogLag: time.Minute, Now: clock.Now})
	waitFor(t, f, "the old event delivered", func() bool { return slices.Equal(f.deliveredIDs(), []int64{old}) })
	claims := f.claimCount()
	waitFor(t, f, "two claims more", func() bool { return f.claimCount() >= claims+2 })
	require.Equal(t, []int64{old}, f.deliveredIDs(), "the fresh one waits while the pipeline is busy")
	for _, d := range f.claimDueFor() {
		require.Equal(t, time.Minute, d, "every claim asked for events due for the lag")
	}

	clock.Add(time.Minute)
	waitFor(t, f, "the fresh one delivered once due for the lag", func() bool { return len(f.deliveredIDs()) == 2 })

	next := f.add("hooks", store.KindFinished, "c3", clock.Now())
	f.setDue(next, clock.Now())
	busy.Store(false)
	waitFor(t, f, "a fresh one delivered at once once the backlog is drained", func() bool { return len(f.deliveredIDs()) == 3 })
	rc.check()
}

// Each endpoint's loop wakes the events held behind one that is gone
// (Store.WakeHeldWebhooks) at start, then once per WakeInterval.
func TestWakesHeldEvents(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	clock := newFakeClock(time.Now())
	f := newFakeOutbox()
	f.now = clock.Now
	start(t, f, rc, secret, webhook.Config{Now: clock.Now})
	waitFor(t, f, "a wake at start", func() bool { return f.wakeCount() == 1 })
	claims := f.claimCount()
	waitFor(t, f, "two claims more", func() bool { return f.claimCount() >= claims+2 })
	require.Equal(t, 1, f.wakeCount(), "not again within the interval")
	clock.Add(webhook.WakeInterval)
	waitFor(t, f, "a wake an interval later", func() bool { return f.wakeCount() == 2 })
}
