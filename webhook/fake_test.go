package webhook_test

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/syncbuf"
	"github.com/cmdtrack/cmdtrack/store"
	"github.com/cmdtrack/cmdtrack/webhook"
)

// fakeOutbox is webhook.Store in memory: the claim's rules as the design
// gives them (due, leased, in order per subject, by id), enough for what
// the deliverer decides. The SQL is the store's, tested there.
type fakeOutbox struct {
	mu     sync.Mutex
	rows   []*outboxRow // by id
	nextID int64
	// careless claims ignore the lease and the order per subject: what a
	// lease that ended mid-request, or a store fault, would give.
	careless bool
	// down, when set, is every call's error: the database is away.
	down error
	// settleDown, when set, is every settle's error (claims work).
	settleDown error
	// lease, when set, is the lease every claim gets, whatever it asks.
	lease  time.Duration
	claims int
	// settles counts the settling calls.
	settles int
	// asked is each claim's n, in order.
	asked []int
	// wakes counts WakeHeldWebhooks' calls.
	wakes int
	// dueFor is each claim's dueFor, in order.
	dueFor []time.Duration
	// delivered are the ids WebhookDelivered removed, in its calls' order.
	delivered []int64
	// reasons are RetryWebhook's reasons, by id (kept once the row is
	// gone).
	reasons map[int64][]string
	// changed is signalled (without blocking) after every call.
	changed chan struct{}
	// now is the claims' clock (default time.Now): a test on a fake
	// clock gives the deliverer's (Config.Now) to both.
	now func() time.Time
}

type outboxRow struct {
	ev     store.WebhookEvent
	due    time.Time
	state  string // pending, failed
	reason string
}

var _ webhook.Store = (*fakeOutbox)(nil)

func newFakeOutbox() *fakeOutbox {
	return &fakeOutbox{changed: make(chan struct{}, 1), reasons: map[int64][]string{}, now: time.Now}
}

func (f *fakeOutbox) signal() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// add puts an event in endpoint's outbox, due now.
func (f *fakeOutbox) add(endpoint, typ, subject string, occurred time.Time) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	f.rows = append(f.rows, &outboxRow{state: "pending", ev: store.WebhookEvent{
		ID: f.nextID, WebhookID: fmt.Sprintf("evt_%d_1", f.nextID), Endpoint: endpoint, Type: typ, Subject: subject,
		ProductID: "p1", Status: "SUCCESSFUL", OccurredAt: occurred,
	}})
	return f.nextID
}

func (f *fakeOutbox) setDown(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = err
}

func (f *fakeOutbox) ClaimWebhooks(_ context.Context, endpoint string, n int, lease, dueFor time.Duration) ([]store.WebhookEvent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.signal()
	f.claims++
	f.asked = append(f.asked, n)
	f.dueFor = append(f.dueFor, dueFor)
	if f.down != nil {
		return nil, f.down
	}
	now := f.now()
	var out []store.WebhookEvent
	seen := map[string]bool{}
	for _, r := range f.rows {
		if len(out) == n {
			break
		}
		if r.state != "pending" || r.ev.Endpoint != endpoint {
			continue
		}
		earlier := seen[r.ev.Subject]
		seen[r.ev.Subject] = true
		if earlier || r.due.After(now.Add(-dueFor)) {
			if f.careless {
				// Returned, its claim's token and lease left as they are.
				out = append(out, r.ev)
			}
			continue
		}
		r.ev.Attempts++
		if f.lease > 0 {
			lease = f.lease
		}
		r.due = now.Add(lease)
		r.ev.LeaseEnd = r.due
		out = append(out, r.ev)
	}
	return out, nil
}

func (f *fakeOutbox) row(id int64) *outboxRow {
	i, ok := slices.BinarySearchFunc(f.rows, id, func(r *outboxRow, id int64) int { return cmp.Compare(r.ev.ID, id) })
	if !ok {
		return nil
	}
	return f.rows[i]
}

// settleErr is a settle's error; the lock is held.
func (f *fakeOutbox) settleErr() error {
	f.settles++
	return cmp.Or(f.down, f.settleDown)
}

// WebhookDelivered removes the events whose token is their claim's; like
// the store, it records every id it is given.
func (f *fakeOutbox) WebhookDelivered(_ context.Context, endpoint string, evs []store.WebhookSettle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.signal()
	if err := f.settleErr(); err != nil {
		return err
	}
	f.rows = slices.DeleteFunc(f.rows, func(r *outboxRow) bool {
		return r.ev.Endpoint == endpoint && slices.Contains(evs, store.WebhookSettle{ID: r.ev.ID, Attempts: r.ev.Attempts})
	})
	for _, e := range evs {
		f.delivered = append(f.delivered, e.ID)
	}
	return nil
}

func (f *fakeOutbox) RetryWebhook(_ context.Context, id int64, attempts int, next time.Time, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.signal()
	if err := f.settleErr(); err != nil {
		return err
	}
	if r := f.row(id); r != nil && r.ev.Attempts == attempts {
		r.due, r.reason = next, reason
	}
	f.reasons[id] = append(f.reasons[id], reason)
	return nil
}

func (f *fakeOutbox) FailWebhook(_ context.Context, id int64, attempts int, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.signal()
	if err := f.settleErr(); err != nil {
		return err
	}
	if r := f.row(id); r != nil && r.ev.Attempts == attempts {
		r.state, r.reason = "failed", reason
	}
	return nil
}

// snapshot is a copy of the rows left.
func (f *fakeOutbox) snapshot() []outboxRow {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]outboxRow, len(f.rows))
	for i, r := range f.rows {
		out[i] = *r
	}
	return out
}

func (f *fakeOutbox) deliveredIDs() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.delivered)
}

// retries are the reasons RetryWebhook was given for id.
func (f *fakeOutbox) retries(id int64) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reasons[id])
}

// empty says every event was delivered.
func (f *fakeOutbox) empty() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.rows) == 0
}

func (f *fakeOutbox) claimCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.claims
}

// waitFor waits until cond holds, checking after every change of the
// outbox and at least every 10 ms, for at most a generous bound: the tests
// wait on conditions, and the bound only ends a test that is broken.
func waitFor(t *testing.T, f *fakeOutbox, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-f.changed:
		case <-tick.C:
		}
	}
}

// newSecret is a random "whsec_" secret.
func newSecret(t testing.TB) string {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// delivery is a request the receiver took, its signature verified.
type delivery struct {
	id      string
	body    []byte
	subject string
	// release ends the request in the receiver's count of requests in hand,
	// once (the handler's return does it too). An answer that drops the
	// connection calls it first: the deliverer may retry the moment the
	// connection closes, before the handler has returned.
	release func()
}

// receiver is an HTTP endpoint that verifies every request's signature
// with the Standard Webhooks library and answers as the test says.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	verify *standardwebhooks.Webhook

	mu   sync.Mutex
	got  []delivery
	bad  []string
	busy map[string]int // subject: requests in hand
	// answer handles a verified request; nil: 204.
	answer func(w http.ResponseWriter, r *http.Request, d delivery)
}

func newReceiver(t *testing.T, secret string) *receiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	rc := &receiver{t: t, verify: wh, busy: map[string]int{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	d := delivery{id: r.Header.Get("webhook-id"), body: body}
	var p struct {
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &p)
	d.subject = p.Data.ID
	rc.mu.Lock()
	if err := rc.verify.Verify(body, r.Header); err != nil {
		rc.bad = append(rc.bad, d.id+": "+err.Error())
	}
	if r.Header.Get("Content-Type") != "application/json" || r.UserAgent() != "cmdtrack/test" {
		rc.bad = append(rc.bad, d.id+": content-type "+r.Header.Get("Content-Type")+", user-agent "+r.UserAgent())
	}
	rc.busy[d.subject]++
	// A row without an id (TestPayloadRows) names no subject.
	if rc.busy[d.subject] > 1 && d.subject != "" {
		rc.bad = append(rc.bad, "two requests of "+d.subject+" at once")
	}
	var once sync.Once
	subject := d.subject
	d.release = func() {
		once.Do(func() {
			rc.mu.Lock()
			rc.busy[subject]--
			rc.mu.Unlock()
		})
	}
	rc.got = append(rc.got, d)
	answer := rc.answer
	rc.mu.Unlock()
	defer d.release()
	if answer == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	answer(w, r, d)
}

func (rc *receiver) setAnswer(f func(w http.ResponseWriter, r *http.Request, d delivery)) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.answer = f
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// faulty says a request was not as it should be.
func (rc *receiver) faulty() bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.bad) > 0
}

// check fails the test if any request was not as it should be.
func (rc *receiver) check() {
	rc.t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	require.Empty(rc.t, rc.bad)
}

// rows are the rows Data gives: a JSON object per subject.
func rows(_ context.Context, _, subject string) (json.RawMessage, error) {
	return json.RawMessage(fmt.Sprintf(`{"id":%q,"status":"SUCCESSFUL"}`, subject)), nil
}

// started runs a Deliverer until the test ends (or stop, which returns
// once Run has).
type started struct {
	d   *webhook.Deliverer
	log *syncbuf.Buffer
	// cancel begins the stop and returns; stop also waits for Run, and
	// done is closed once it has returned.
	cancel func()
	stop   func()
	done   <-chan struct{}
}

// start runs a deliverer of one endpoint, "hooks", at rc with cfg's
// tunings (fast polls and backoffs unless set).
func start(t *testing.T, f *fakeOutbox, rc *receiver, secret string, cfg webhook.Config) *started {
	t.Helper()
	return startData(t, f, rc, secret, cfg, rows)
}

// startData is start with data reading the rows.
func startData(t *testing.T, f *fakeOutbox, rc *receiver, secret string, cfg webhook.Config, data webhook.Data) *started {
	t.Helper()
	return startWith(t, f, rc, secret, cfg, data, nil)
}

// startWith is startData keeping metrics in m (nil: none).
func startWith(t *testing.T, f *fakeOutbox, rc *receiver, secret string, cfg webhook.Config, data webhook.Data, m *webhook.Metrics) *started {
	t.Helper()
	if len(cfg.Endpoints) == 0 {
		cfg.Endpoints = []webhook.Endpoint{{Name: "hooks", URL: rc.srv.URL, Secrets: []string{secret}}}
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 5 * time.Millisecond
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 5*time.Millisecond
	}
	if cfg.DBRetryMax == 0 {
		cfg.DBRetryMax = 20 * time.Millisecond
	}
	cfg.UserAgent = "cmdtrack/test"
	var buf syncbuf.Buffer
	d, err := webhook.New(f, data, cfg, slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), m)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(ctx)
	}()
	s := &started{d: d, log: &buf, cancel: cancel, stop: func() { cancel(); <-done }, done: done}
	t.Cleanup(s.stop)
	return s
}

// replay puts a failed event back as store.ReplayWebhooks does: due now,
// its attempts from zero, its retry window from now.
func (f *fakeOutbox) replay(id int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.signal()
	if r := f.row(id); r != nil && r.state == "failed" {
		r.state, r.due, r.ev.Attempts, r.ev.Since = "pending", time.Time{}, 0, time.Now()
	}
}

// WakeHeldWebhooks counts its calls; the fake never holds an event back.
func (f *fakeOutbox) WakeHeldWebhooks(context.Context, string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wakes++
	return 0, f.down
}

// claimsAsked is each claim's n so far.
func (f *fakeOutbox) claimsAsked() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.asked)
}

// wakeCount is how many times WakeHeldWebhooks was called.
func (f *fakeOutbox) wakeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wakes
}

// setDue makes the event id due at t.
func (f *fakeOutbox) setDue(id int64, t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.row(id).due = t
}

// claimDueFor is each claim's dueFor so far.
func (f *fakeOutbox) claimDueFor() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.dueFor)
}

// state is the state of the event id ("" once it is gone).
func (f *fakeOutbox) state(id int64) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.row(id); r != nil {
		return r.state
	}
	return ""
}

// due is when the event id is due next (zero once it is gone).
func (f *fakeOutbox) due(id int64) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.row(id); r != nil {
		return r.due
	}
	return time.Time{}
}

// fakeClock is a clock that moves only when told: the deliverer's
// decisions against a window then depend on no scheduling.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock(now time.Time) *fakeClock { return &fakeClock{now: now} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
