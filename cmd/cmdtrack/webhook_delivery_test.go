package main_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/store"
)

// How the receiver answers.
const (
	hookOK   int32 = iota // 204
	hookFail              // 500
	hookSlow              // holds the request past the worker's timeout
	hookDrop              // closes the connection without an answer
	hookGate              // holds the request until the gate opens, then answers as hookOK
	// hookFailFinished answers command.finished 500, the rest as hookOK: a
	// receiver whose handler of one type is broken.
	hookFailFinished
)

// hookReceiver is an application receiving cmdtrack's webhooks: it
// verifies every request with the Standard Webhooks library, and records
// each webhook-id with what it says. mode says how it answers.
type hookReceiver struct {
	t      *testing.T
	secret string
	wh     *standardwebhooks.Webhook
	srv    *httptest.Server
	mode   atomic.Int32

	// gate holds the requests of hookGate until it is closed (openGate).
	gate     chan struct{}
	gateOnce sync.Once

	mu         sync.Mutex
	events     map[string]hookEvent // by webhook-id, as first accepted
	first      []hookEvent          // the events in the order first accepted
	accepted   map[string]int       // by webhook-id: how often answered 2xx
	byMode     map[int32]int        // requests by the mode that answered them
	held       int                  // requests waiting at the gate
	unverified []string
}

// hookEvent is what one event said.
type hookEvent struct{ typ, subject, status, from string }

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	r := &hookReceiver{t: t, secret: "whsec_" + base64.StdEncoding.EncodeToString(key),
		events: map[string]hookEvent{}, accepted: map[string]int{}, byMode: map[int32]int{}, gate: make(chan struct{})}
	var err error
	r.wh, err = standardwebhooks.NewWebhook(r.secret)
	require.NoError(t, err)
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// env is what points a worker at the receiver. The stop grace covers the
// webhook deliverer's stop at the default timeout (the worker refuses to
// start otherwise); a test that sets a longer timeout sets the grace too.
func (r *hookReceiver) env() []string {
	return []string{"CMDTRACK_WEBHOOK_URL", r.srv.URL + "/hooks", "CMDTRACK_WEBHOOK_SECRET", r.secret,
		"CMDTRACK_SHUTDOWN_GRACE", "20s"}
}

// openGate lets the requests held at the gate, and all later ones, go on.
func (r *hookReceiver) openGate() { r.gateOnce.Do(func() { close(r.gate) }) }

// holding is how many requests wait at the gate.
func (r *hookReceiver) holding() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	mode := r.mode.Load()
	r.mu.Lock()
	r.byMode[mode]++
	r.mu.Unlock()
	switch mode {
	case hookFail:
		http.Error(w, "the billing system is down", http.StatusInternalServerError)
		return
	case hookSlow:
		// The worker gives up first (CMDTRACK_WEBHOOK_TIMEOUT); the bound
		// only ends the handler if it did not.
		select {
		case <-req.Context().Done():
		case <-time.After(30 * time.Second):
		}
		return
	case hookDrop:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
		return
	case hookGate:
		r.mu.Lock()
		r.held++
		r.mu.Unlock()
		select {
		case <-r.gate:
		case <-req.Context().Done():
		}
		r.mu.Lock()
		r.held--
		r.mu.Unlock()
		if req.Context().Err() != nil {
			return // the worker gave up on it
		}
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err == nil {
		err = r.wh.Verify(body, req.Header)
	}
	var p struct {
		Type string `json:"type"`
		Data struct {
			ID      string `json:"id"`
			Outcome struct {
				Status     string `json:"status"`
				FromStatus string `json:"from_status"`
			} `json:"outcome"`
		} `json:"data"`
	}
	if err == nil {
		err = json.Unmarshal(body, &p)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.unverified = append(r.unverified, fmt.Sprintf("%v: %.200s", err, body))
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if mode == hookFailFinished && p.Type == store.KindFinished {
		http.Error(w, "the billing system cannot take command.finished", http.StatusInternalServerError)
		return
	}
	id := req.Header.Get("webhook-id")
	if _, ok := r.events[id]; !ok {
		e := hookEvent{typ: p.Type, subject: p.Data.ID, status: p.Data.Outcome.Status, from: p.Data.Outcome.FromStatus}
		r.events[id] = e
		r.first = append(r.first, e)
	}
	r.accepted[id]++
	w.WriteHeader(http.StatusNoContent)
}

// requests is how many requests mode answered.
func (r *hookReceiver) requests(mode int32) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byMode[mode]
}

// ids are the webhook-ids received of each (type, subject, status, from
// status), sorted.
func (r *hookReceiver) ids() map[hookEvent][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[hookEvent][]string{}
	for id, e := range r.events {
		out[e] = append(out[e], id)
	}
	for _, ids := range out {
		sort.Strings(ids)
	}
	return out
}

// checkExactlyOnce requires what the receiver got to be what the
// database counted as outcomes, event for event: one webhook-id per
// outcome, every signature verified, and each id of the kinds the
// database says finished naming a row that did finish. A redelivery
// (at least once) may repeat an id, never add one.
func (r *hookReceiver) checkExactlyOnce(t *testing.T, f *fixture) {
	t.Helper()
	r.mu.Lock()
	require.Empty(t, r.unverified, "every request verified with the Standard Webhooks library")
	r.mu.Unlock()
	ids := r.ids()
	byType := map[string]int{}
	for e, list := range ids {
		require.Len(t, list, 1, "one webhook-id for %+v: %v", e, list)
		byType[e.typ]++
	}
	totals, err := f.st.OutcomeTotals(context.Background())
	require.NoError(t, err)
	want := map[string]int{}
	for _, o := range totals {
		want[o.Kind] += int(o.Count)
	}
	require.Equal(t, want, byType, "the events delivered are the outcomes counted")

	finished := map[string]bool{}
	for e := range ids {
		if e.typ == store.KindFinished {
			finished[e.subject] = true
		}
	}
	rows, err := f.st.Pool().Query(context.Background(), `SELECT command_id FROM device_commands WHERE status_rank = 3`)
	require.NoError(t, err)
	final := map[string]bool{}
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		final[id] = true
	}
	require.NoError(t, rows.Err())
	require.Equal(t, final, finished, "command.finished once for every final command, for no other")
}

// waitDelivered waits until the outbox is empty and the receiver holds as
// many events as the database counted outcomes.
func (r *hookReceiver) waitDelivered(t *testing.T, f *fixture, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		if f.count(t, `SELECT count(*) FROM outcome_events`) > 0 || f.count(t, `SELECT count(*) FROM webhook_deliveries`) > 0 {
			return false // not folded, or not delivered yet
		}
		var counted int
		require.NoError(t, f.st.Pool().QueryRow(context.Background(),
			`SELECT coalesce(sum(commands), 0)::int FROM outcome_totals`).Scan(&counted))
		r.mu.Lock()
		defer r.mu.Unlock()
		return counted > 0 && len(r.events) == counted
	}, within, 100*time.Millisecond, "every outcome delivered")
}

// Two workers on one queue, every notification out of place and a third
// twice, then half of the stream again, commands and device messages: each
// outcome the database counts reaches the receiver with one webhook-id,
// signed, and every final command has its command.finished.
func TestWebhookOncePerOutcomeAcrossWorkers(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rc := newHookReceiver(t)
	s := simulate.Generate(simulate.Config{Commands: 400, Products: 3, Seed: 29, OutOfOrder: 1, Duplicate: 0.3, MessageShare: 0.3})
	var workers []*testenv.Worker
	for range 2 {
		workers = append(workers, testenv.StartWorker(t, f.env(append(rc.env(), "CMDTRACK_BATCH_SIZE", "40", "CMDTRACK_AMQP_CREDIT", "100")...)))
	}
	for _, w := range workers {
		w.WaitReady(30 * time.Second)
	}
	f.pub.SendAll(t, bodies(s.Messages))
	f.waitStored(t, s, 2*time.Minute)
	f.pub.SendAll(t, bodies(s.Messages[:len(s.Messages)/2]))
	rc.waitDelivered(t, f, 2*time.Minute)
	rc.checkExactlyOnce(t, f)
	var delivered float64
	for _, w := range workers {
		delivered += metric(t, w, `cmdtrack_webhook_deliveries_total{endpoint="default",result="delivered"}`)
	}
	require.GreaterOrEqual(t, delivered, float64(len(rc.ids())))
	stopCleanly(t, workers...)
	f.verify(t, s)
}

// The receiver answers 500, then holds requests past the timeout, then
// drops connections, then comes back: the stream is stored meanwhile as
// fast as ever (the data path never waits for a webhook), and once the
// receiver answers every outcome reaches it, once per webhook-id.
func TestWebhooksOutlastTheReceiver(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rc := newHookReceiver(t)
	rc.mode.Store(hookFail)
	s := simulate.Generate(simulate.Config{Commands: 200, Products: 2, Seed: 31, OutOfOrder: 1, Duplicate: 0.2})
	w := testenv.StartWorker(t, f.env(append(rc.env(), "CMDTRACK_WEBHOOK_TIMEOUT", "1s",
		"CMDTRACK_WEBHOOK_BACKOFF_MIN", "50ms", "CMDTRACK_WEBHOOK_BACKOFF_MAX", "400ms")...))
	w.WaitReady(30 * time.Second)
	f.pub.SendAll(t, bodies(s.Messages))
	f.waitStored(t, s, 2*time.Minute)
	// Stored is committed; the accepts follow the commit. While the
	// receiver still fails, every message is settled all the same.
	require.Eventually(t, func() bool { return metric(t, w, "cmdtrack_messages_unsettled") == 0 },
		time.Minute, 20*time.Millisecond, "nothing held for the webhooks")

	// The fresh events are due first: an event tried again shows the
	// retries at work.
	require.Eventually(t, func() bool { return f.count(t, `SELECT count(*) FROM webhook_deliveries WHERE attempts > 1`) > 0 },
		time.Minute, 20*time.Millisecond, "events wait in the outbox and are tried again")
	for _, mode := range []int32{hookSlow, hookDrop} {
		rc.mode.Store(mode)
		require.Eventually(t, func() bool { return rc.requests(mode) >= 5 }, time.Minute, 20*time.Millisecond,
			"the worker keeps trying (mode %d)", mode)
	}
	rc.mode.Store(hookOK)
	rc.waitDelivered(t, f, 2*time.Minute)
	rc.checkExactlyOnce(t, f)
	require.Positive(t, metric(t, w, `cmdtrack_webhook_deliveries_total{endpoint="default",result="retried"}`))
	require.Zero(t, f.count(t, `SELECT count(*) FROM webhook_deliveries WHERE state = 'failed'`))
	stopCleanly(t, w)
	f.verify(t, s)
}

// Commands whose final status is replaced (TIMEOUT, then a late
// SUCCESSFUL: the merge rule's later terminal event wins), the receiver
// failing meanwhile, then failing command.finished only, then back: for
// every command its command.finished is accepted before its
// command.final_changed. While only command.finished fails, every
// final_changed would be accepted at its first attempt: only the order per
// subject holds it back. Two workers share the outbox.
func TestWebhookOrderPerSubject(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rc := newHookReceiver(t)
	rc.mode.Store(hookFail)
	const n = 40
	ids := make([]string, n)
	timedOut, succeeded := make([][]byte, n), make([][]byte, n)
	at := time.Now().Add(-10 * time.Minute)
	for i := range ids {
		ids[i] = fmt.Sprintf("order-%02d", i)
		timedOut[i] = finalBody(ids[i], "TIMEOUT", at)
		succeeded[i] = finalBody(ids[i], "SUCCESSFUL", at.Add(time.Minute))
	}
	env := f.env(append(rc.env(), "CMDTRACK_WEBHOOK_BACKOFF_MIN", "100ms", "CMDTRACK_WEBHOOK_BACKOFF_MAX", "1s")...)
	workers := []*testenv.Worker{testenv.StartWorker(t, env), testenv.StartWorker(t, env)}
	for _, w := range workers {
		w.WaitReady(30 * time.Second)
	}

	// Stored apart, so that no batch folds the two into one change.
	f.pub.SendAll(t, timedOut)
	require.Eventually(t, func() bool {
		return f.count(t, `SELECT count(*) FROM webhook_deliveries WHERE type = 'command.finished' AND attempts > 0`) == n
	}, 2*time.Minute, 20*time.Millisecond, "every command.finished tried, and refused")
	f.pub.SendAll(t, succeeded)
	require.Eventually(t, func() bool {
		return f.count(t, `SELECT count(*) FROM webhook_deliveries WHERE type = 'command.final_changed'`) == n
	}, 2*time.Minute, 20*time.Millisecond, "every command.final_changed in the outbox")
	require.Empty(t, rc.ids(), "nothing accepted yet")
	rc.mode.Store(hookFailFinished)
	require.Eventually(t, func() bool { return rc.requests(hookFailFinished) >= 2*n }, 2*time.Minute, 20*time.Millisecond,
		"command.finished refused again, each about twice")
	require.Empty(t, rc.ids(), "no command.final_changed before its command.finished")
	rc.mode.Store(hookOK)
	rc.waitDelivered(t, f, 2*time.Minute)
	rc.checkExactlyOnce(t, f)

	rc.mu.Lock()
	first := slices.Clone(rc.first)
	rc.mu.Unlock()
	seen := map[string]string{} // subject: the type of its first event
	changed := 0
	for _, e := range first {
		switch e.typ {
		case store.KindFinished:
			require.Equal(t, "TIMEOUT", e.status, "%s: the first final status", e.subject)
			require.NotContains(t, seen, e.subject, "%s: one command.finished", e.subject)
			seen[e.subject] = e.typ
		case store.KindFinalChanged:
			require.Equal(t, store.KindFinished, seen[e.subject], "%s: command.final_changed accepted before its command.finished", e.subject)
			require.Equal(t, hookEvent{typ: store.KindFinalChanged, subject: e.subject, status: "SUCCESSFUL", from: "TIMEOUT"}, e)
			changed++
		}
	}
	require.Len(t, seen, n)
	require.Equal(t, n, changed)
	stopCleanly(t, workers...)
}
