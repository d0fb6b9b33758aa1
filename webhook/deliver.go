// Package webhook delivers the outcome events to the applications that
// subscribe to them (issue 29; README "Webhooks"): signed per the Standard
// Webhooks specification, from the outbox the fold fills
// (store.FoldOutcomes), at least once, in order per subject, each event
// with one webhook-id for every attempt.
//
// Every replica runs a Deliverer: per endpoint, one loop claims a batch of
// a few events per worker at once (store.ClaimWebhooks: FOR UPDATE SKIP
// LOCKED, a lease long enough for the batch to wait its turn), a local
// queue feeds them to the workers, which POST them, and each is settled:
// delivered (deleted, many per statement), tried again later (a backoff)
// or, past the retry window, failed for good (kept for replay). No transaction stays open during a
// request; a replica that dies mid-request leaves its events to their
// lease, and another delivers them again. A slow or dead endpoint only
// grows its outbox: the data path never waits for a webhook.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/cmdtrack/cmdtrack/internal/backoff"
	"github.com/cmdtrack/cmdtrack/store"
)

// Store is the outbox the deliverer claims from and settles into (a
// *store.Store).
type Store interface {
	// ClaimWebhooks leases up to n pending events of endpoint that are due,
	// none of them behind an earlier pending event of its subject; each
	// with its claim's token (Attempts) and its lease's end (LeaseEnd).
	// With dueFor above 0, only those due for at least that long.
	ClaimWebhooks(ctx context.Context, endpoint string, n int, lease, dueFor time.Duration) ([]store.WebhookEvent, error)
	// The settles change an event only while the claim whose token they
	// give is its last: one that comes after its lease ran out and another
	// claim took the event changes nothing.

	// WebhookDelivered removes delivered events.
	WebhookDelivered(ctx context.Context, endpoint string, evs []store.WebhookSettle) error
	// RetryWebhook makes an event due again at next.
	RetryWebhook(ctx context.Context, id int64, attempts int, next time.Time, reason string) error
	// FailWebhook gives an event up, kept for a replay.
	FailWebhook(ctx context.Context, id int64, attempts int, reason string) error
	// WakeHeldWebhooks makes due the events of endpoint held back behind
	// an event that is gone, which no settle woke (see WakeInterval).
	WakeHeldWebhooks(ctx context.Context, endpoint string) (int64, error)
}

// WakeInterval is how often each endpoint's loop wakes the events held
// back behind one that is gone (Store.WakeHeldWebhooks): a settle wakes the
// next event of its subject, but a replica from before migration 028, or a
// replay or retry racing a settle, can leave one held with nothing ahead
// of it. At start, then once per interval.
const WakeInterval = time.Minute

// LogWoke is logged when held events are woken: a settle missed them.
const LogWoke = "woke webhook events held behind an event that was settled without waking them (a replica from before migration 028, or a replay or retry racing a settle)"

// MaxErrorBody is how much of a response body is read, for the error text
// of a failed attempt.
const MaxErrorBody = 4 << 10

// settleTimeout bounds one try at settling an event.
const settleTimeout = 10 * time.Second

// claimPerWorker is how many events a claim takes per worker, at most: a
// claim statement costs about what it costs whatever it returns (its
// index walk), so one per few events per worker, not one per event (issue
// 29's bench: a claim per 1-4 events cost more than the events' POSTs).
const claimPerWorker = 4

// The log messages, for tests and operators to match.
const (
	LogEndpointFailing = "webhook endpoint failing; its events wait in the outbox and are tried again with backoff"
	LogEndpointBack    = "webhook endpoint answers again"
	LogGaveUp          = "webhook events failed for good after CMDTRACK_WEBHOOK_RETRY_FOR; cmdtrack webhooks replay sends them again"
	LogDatabase        = "the webhook outbox cannot be read or settled; trying again with backoff (events are delivered once it can)"
	LogDatabaseBack    = "the webhook outbox can be read again"
	LogLeftToLease     = "a webhook event could not be settled; it will be delivered again once its lease ends"
	LogRowUnreadable   = "a webhook event's row could not be read; the attempt failed and is tried again with backoff"
	LogStopped         = "a webhook event was not sent: the stop began; it will be delivered again once its lease ends"
)

// Config tunes the deliverer. Zero values take the defaults.
type Config struct {
	// Endpoints are where events go (see Load).
	Endpoints []Endpoint
	// Timeout bounds one request, from connecting to the answer's end
	// (default 10s).
	Timeout time.Duration
	// RetryFor is how long after its outcome, or its replay, an event is
	// tried (default 24h); the attempt that fails past it fails the event
	// for good.
	RetryFor time.Duration
	// BackoffMin and BackoffMax bound the wait after a failed attempt:
	// BackoffMin doubling per attempt up to BackoffMax, with full jitter
	// (default 5s to 1h).
	BackoffMin, BackoffMax time.Duration
	// Workers is how many requests are in flight at once per endpoint
	// (default 4).
	Workers int
	// PollInterval is how often an idle endpoint's outbox is looked at
	// (default 1s).
	PollInterval time.Duration
	// Lease is how long a claimed event is this replica's before another
	// may claim it again (default 2×Timeout+30s): longer than a request and
	// its settling, or events are sent twice. A claim asks for more: a turn
	// of 2×Timeout for every round of requests its last event waits behind
	// in the queue (a few per worker).
	Lease time.Duration
	// DBRetryMax is the longest wait between claims while the database
	// fails (default 30s).
	DBRetryMax time.Duration
	// UserAgent is sent with every request (default "cmdtrack").
	UserAgent string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Busy, when set, says the data path is draining a backlog
	// (pipeline.Busy): while it does, a claim takes only the events due
	// for at least BacklogLag, so that the deliveries' CPU and database
	// work wait for the backlog, within that lag, rather than slow its
	// drain. Zero BacklogLag: never.
	Busy       func() bool
	BacklogLag time.Duration
	// Rows, when set, reads the rows of a claim's events at once, rather
	// than one statement per event (New's data); when it fails, each
	// event's row is read with data, which says of which row.
	Rows Rows
}

// Rows reads the rows of evs as Data does, in their order, a row gone nil.
type Rows func(ctx context.Context, evs []store.WebhookEvent) ([]json.RawMessage, error)

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.RetryFor <= 0 {
		c.RetryFor = 24 * time.Hour
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = 5 * time.Second
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = max(time.Hour, c.BackoffMin)
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.Lease < c.Timeout+5*time.Second {
		c.Lease = 2*c.Timeout + 30*time.Second
	}
	if c.DBRetryMax <= 0 {
		c.DBRetryMax = 30 * time.Second
	}
	if c.UserAgent == "" {
		c.UserAgent = "cmdtrack"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// StopBound is the longest Run takes to return once its ctx ends: a
// request in flight finishes within Timeout (none starts once the stop
// has begun, and a row read is bounded by Timeout too), then one try at
// settling it, of at most 10 s. CMDTRACK_SHUTDOWN_GRACE must cover it.
func (c Config) StopBound() time.Duration {
	return c.withDefaults().Timeout + settleTimeout
}

// Check checks the tunings the settings give (the endpoints are Load's),
// each problem naming its setting.
func (c Config) Check() error {
	var problems []string
	check := func(ok bool, msg string) {
		if !ok {
			problems = append(problems, msg)
		}
	}
	check(c.Timeout > 0 && c.Timeout <= 5*time.Minute, "CMDTRACK_WEBHOOK_TIMEOUT must be above 0 and at most 5m")
	check(c.RetryFor >= time.Minute, "CMDTRACK_WEBHOOK_RETRY_FOR must be at least 1m")
	check(c.BackoffMin > 0, "CMDTRACK_WEBHOOK_BACKOFF_MIN must be positive")
	check(c.BackoffMax >= c.BackoffMin, "CMDTRACK_WEBHOOK_BACKOFF_MAX must be at least CMDTRACK_WEBHOOK_BACKOFF_MIN")
	check(c.Workers >= 1 && c.Workers <= 256, "CMDTRACK_WEBHOOK_WORKERS must be between 1 and 256")
	// Below CmdtrackWebhookEventsDelayed's 15 minutes, with room for a
	// subject's events waiting in turn.
	check(c.BacklogLag >= 0 && c.BacklogLag <= 5*time.Minute, "CMDTRACK_WEBHOOK_BACKLOG_LAG must be between 0 (never) and 5m")
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Deliverer delivers the outbox of every endpoint. See the package's doc.
type Deliverer struct {
	st     Store
	data   Data
	cfg    Config
	log    *slog.Logger
	m      *Metrics
	client *http.Client
	eps    []*endpoint

	// dbMu guards dbDown, which says the last database call failed, so
	// that an outage is logged once, not once per claim.
	dbMu   sync.Mutex
	dbDown bool
}

// New returns a Deliverer of cfg.Endpoints (validated: see Load); its Run
// does the work. data reads an event's row; m may be nil (no metrics
// kept).
func New(st Store, data Data, cfg Config, log *slog.Logger, m *Metrics) (*Deliverer, error) {
	cfg = cfg.withDefaults()
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Deliverer{st: st, data: data, cfg: cfg, log: log, m: m}
	lagging := d.lagging
	m.lags.Store(&lagging)
	if err := Validate(cfg.Endpoints); err != nil {
		return nil, err
	}
	for _, ep := range cfg.Endpoints {
		signer, err := NewSigner(ep.Secrets)
		if err != nil {
			return nil, fmt.Errorf("webhook endpoint %q: %w", ep.Name, err)
		}
		m.endpoint(ep.Name)
		batch := cfg.Workers * claimPerWorker
		d.eps = append(d.eps, &endpoint{
			d: d, ep: ep, signer: signer,
			log:      log.With("endpoint", ep.Name),
			slots:    make(chan struct{}, batch),
			queue:    make(chan *claimed, batch),
			held:     map[string]bool{},
			resolved: make(chan *store.WebhookEvent, batch),
		})
	}
	dialTimeout := min(cfg.Timeout, 10*time.Second)
	d.client = &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   dialTimeout,
			ResponseHeaderTimeout: cfg.Timeout,
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   cfg.Workers,
			IdleConnTimeout:       90 * time.Second,
		},
		// A redirect is a failure that says where it points: following it
		// would send the signed event wherever a receiver (or whoever took
		// its name over) says.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return d, nil
}

// Run delivers until ctx ends; then the requests in flight finish, within
// Timeout, and are settled, and Run returns nil. Without endpoints it
// returns at once. Nothing fails it: a database away or an endpoint down is
// logged and tried again.
func (d *Deliverer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, e := range d.eps {
		wg.Go(func() { e.run(ctx) })
	}
	wg.Wait()
	d.client.CloseIdleConnections()
	return nil
}

// dbFailed notes a database error, logged at the start of an outage only.
func (d *Deliverer) dbFailed(err error) {
	d.dbMu.Lock()
	defer d.dbMu.Unlock()
	if !d.dbDown {
		d.log.Warn(LogDatabase, "err", err)
	} else {
		d.log.Debug(LogDatabase, "err", err)
	}
	d.dbDown = true
}

// dbOK notes a database call that worked.
func (d *Deliverer) dbOK() {
	d.dbMu.Lock()
	defer d.dbMu.Unlock()
	if d.dbDown {
		d.log.Info(LogDatabaseBack)
	}
	d.dbDown = false
}

// endpoint is one endpoint's deliveries on this replica.
type endpoint struct {
	d      *Deliverer
	ep     Endpoint
	signer *Signer
	log    *slog.Logger
	// slots hold a token per event that may be in hand (claimed, queued or
	// in flight, not yet settled): a few per worker.
	slots chan struct{}
	// queue takes the claimed events to the workers.
	queue chan *claimed
	// resolved takes the delivered events, settled together.
	resolved chan *store.WebhookEvent
	inFlight sync.WaitGroup

	mu sync.Mutex
	// held are the subjects of the events in hand, claimed and not yet
	// settled: one at a time each, whatever a claim returns.
	held map[string]bool
	// failing says the last attempt failed; gaveUp that an event failed
	// for good since the endpoint last answered: each logged once.
	failing, gaveUp bool
}

// run claims and delivers until ctx ends, then waits for what is in hand.
func (e *endpoint) run(ctx context.Context) {
	for range cap(e.slots) {
		e.slots <- struct{}{}
	}
	settled := make(chan struct{})
	go func() {
		defer close(settled)
		e.settleDelivered(ctx)
	}()
	var workers sync.WaitGroup
	for range e.d.cfg.Workers {
		// Once the stop began, what is queued is not sent: each is left
		// to its lease (attempt).
		workers.Go(func() {
			for c := range e.queue {
				e.deliver(ctx, c)
			}
		})
	}
	e.claimLoop(ctx)
	close(e.queue)
	workers.Wait()
	e.inFlight.Wait()
	close(e.resolved)
	<-settled
}

// take waits for the tokens of the next claim: at least one, then, while
// the queue holds more than a round of requests for the workers, more, so
// that a claim takes many events rather than the one a worker just let go;
// then whatever else is free. 0 once ctx ends.
func (e *endpoint) take(ctx context.Context) int {
	batch := cap(e.slots)
	n := 0
	for n < batch {
		if n > 0 && len(e.queue) <= e.d.cfg.Workers {
			select {
			case <-e.slots:
				n++
				continue
			default:
			}
			return n
		}
		select {
		case <-ctx.Done():
			e.free(n)
			return 0
		case <-e.slots:
			n++
		}
	}
	return n
}

// lease is how long a claim of n events asks for: cfg.Lease, which covers
// one request and its settle, and a turn for every round of requests the
// last of them waits behind in the queue (each a row read and a request,
// each within Timeout). Shorter, an event could be claimed again while it
// waits here, and sent twice.
func (e *endpoint) lease(n int) time.Duration {
	cfg := &e.d.cfg
	ahead := len(e.queue) + n
	rounds := (ahead + cfg.Workers - 1) / cfg.Workers
	return cfg.Lease + time.Duration(rounds)*2*cfg.Timeout
}

func (e *endpoint) claimLoop(ctx context.Context) {
	cfg := &e.d.cfg
	fails := 0
	var woken time.Time
	for {
		n := e.take(ctx)
		if n == 0 {
			return
		}
		if now := cfg.Now(); now.Sub(woken) >= WakeInterval {
			woken = now
			e.wake(ctx)
		}
		evs, err := e.d.st.ClaimWebhooks(ctx, e.ep.Name, n, e.lease(n), e.dueFor())
		if err != nil {
			e.free(n)
			if ctx.Err() != nil {
				return
			}
			fails++
			e.d.dbFailed(err)
			if !sleep(ctx, backoff.Delay(fails, cfg.PollInterval, cfg.DBRetryMax)) {
				return
			}
			continue
		}
		fails = 0
		e.d.dbOK()
		evs = evs[:min(len(evs), n)]
		rows := e.readRows(ctx, evs)
		started := 0
		for i, ev := range evs {
			if !e.hold(ev.Subject) {
				// Only a lease that ended mid-request gives this: the
				// event in hand settles it, or its lease brings it back.
				e.log.Debug("claimed a webhook event whose subject is in hand; left to its lease", "webhook_id", ev.WebhookID, "subject", ev.Subject)
				continue
			}
			started++
			e.inFlight.Add(1)
			c := &claimed{ev: ev}
			if rows != nil {
				c.row, c.read = rows[i], true
			}
			e.queue <- c
		}
		e.free(n - started)
		// A full claim says more may be due: claim again at once.
		if (len(evs) < n || started == 0) && !sleep(ctx, cfg.PollInterval) {
			return
		}
	}
}

// wake makes due the endpoint's events held behind one that is gone. A
// failure is left to the next interval: the claims report the database's
// state.
func (e *endpoint) wake(ctx context.Context) {
	n, err := e.d.st.WakeHeldWebhooks(ctx, e.ep.Name)
	switch {
	case err != nil:
		e.log.Debug("could not wake held webhook events; trying again later", "err", err)
	case n > 0:
		e.log.Info(LogWoke, "events", n)
	}
}

// dueFor is how long an event must have been due for the next claim to
// take it: BacklogLag while the data path is Busy, else 0.
func (e *endpoint) dueFor() time.Duration {
	if !e.d.lagging() {
		return 0
	}
	return e.d.cfg.BacklogLag
}

// lagging says whether claims now take only the events due for
// BacklogLag: the data path is Busy.
func (d *Deliverer) lagging() bool {
	return d.cfg.Busy != nil && d.cfg.BacklogLag > 0 && d.cfg.Busy()
}

// claimed is an event in hand, and its row if the claim read it.
type claimed struct {
	ev   store.WebhookEvent
	row  json.RawMessage
	read bool
}

// readRows reads the rows of evs at once (Config.Rows), or gives nil: then
// each is read on its own, as the worker sends it.
func (e *endpoint) readRows(ctx context.Context, evs []store.WebhookEvent) []json.RawMessage {
	cfg := &e.d.cfg
	if cfg.Rows == nil || len(evs) == 0 {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	rows, err := cfg.Rows(rctx, evs)
	if err != nil || len(rows) != len(evs) {
		e.log.Debug("a claim's rows could not be read at once; reading each on its own", "err", err)
		return nil
	}
	return rows
}

// free gives n workers back.
func (e *endpoint) free(n int) {
	for range n {
		e.slots <- struct{}{}
	}
}

// hold marks subject in hand, unless it already is.
func (e *endpoint) hold(subject string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.held[subject] {
		return false
	}
	e.held[subject] = true
	return true
}

// done lets ev's subject and worker go.
func (e *endpoint) done(ev *store.WebhookEvent) {
	e.mu.Lock()
	delete(e.held, ev.Subject)
	e.mu.Unlock()
	e.free(1)
}

// deliver makes one attempt at ev and settles it. A stop lets the request
// finish within its Timeout: stopped, it would only be sent again.
func (e *endpoint) deliver(ctx context.Context, c *claimed) {
	defer e.inFlight.Done()
	cfg := &e.d.cfg
	ev := &c.ev
	rctx := context.WithoutCancel(ctx)
	reason, res := e.attempt(ctx, rctx, c)
	if res == notMade {
		e.done(ev)
		return
	}
	if reason == "" {
		e.d.m.deliveries.WithLabelValues(e.ep.Name, resultDelivered).Inc()
		e.answered()
		e.resolved <- ev // settleDelivered calls done
		return
	}
	defer e.done(ev)
	if res == sent {
		e.failed(reason)
	}
	now := cfg.Now()
	end := windowStart(ev).Add(cfg.RetryFor)
	if !now.Before(end) {
		e.d.m.deliveries.WithLabelValues(e.ep.Name, resultFailed).Inc()
		e.giveUp(ev, reason)
		e.settle(ctx, ev.LeaseEnd, ev, func(sctx context.Context) error {
			return e.d.st.FailWebhook(sctx, ev.ID, ev.Attempts, reason)
		})
		return
	}
	// The last try comes at the window's end, not short of it.
	next := now.Add(retryDelay(ev.Attempts, cfg.BackoffMin, cfg.BackoffMax))
	if next.After(end) {
		next = end
	}
	e.d.m.deliveries.WithLabelValues(e.ep.Name, resultRetried).Inc()
	e.settle(ctx, ev.LeaseEnd, ev, func(sctx context.Context) error {
		return e.d.st.RetryWebhook(sctx, ev.ID, ev.Attempts, next, reason)
	})
}

// windowStart is when ev's retry window began: its replay's time, so that
// a replayed event gets a window, not one try, else its outcome's.
func windowStart(ev *store.WebhookEvent) time.Time {
	if ev.Since.After(ev.OccurredAt) {
		return ev.Since
	}
	return ev.OccurredAt
}

// attemptResult says what came of an attempt.
type attemptResult int

const (
	// sent: the request was made; the reason says how it went.
	sent attemptResult = iota
	// ownFault: cmdtrack could not make the request (the row unreadable,
	// the payload): a failed attempt, tried again like one and visible in
	// the outbox if it lasts, but not the endpoint's fault.
	ownFault
	// notMade: no attempt (the database away, or the stop begun): left to
	// the lease.
	notMade
)

// attempt sends ev once: reason is why it failed ("" when delivered). The
// request runs on rctx, which a stop does not cut; stop is Run's ctx: once
// it ends no request starts, so that a stop waits for those in flight only.
func (e *endpoint) attempt(stop, rctx context.Context, c *claimed) (reason string, res attemptResult) {
	cfg := &e.d.cfg
	ev := &c.ev
	if stop.Err() != nil {
		e.log.Info(LogStopped, "webhook_id", ev.WebhookID)
		return "", notMade
	}
	row, err := c.row, error(nil)
	if !c.read {
		dctx, cancel := context.WithTimeout(rctx, cfg.Timeout)
		row, err = e.d.data(dctx, ev.Type, ev.Subject)
		cancel()
	}
	if err != nil {
		err = fmt.Errorf("reading the row of %s %s: %w", ev.Type, ev.Subject, err)
		if databaseAway(err) {
			e.d.dbFailed(err)
			return "", notMade
		}
		// The row itself is at fault (a scan error, a NULL where none
		// should be), or a query the schema refuses: waiting for the lease
		// would block its subject for ever, unseen.
		e.log.Warn(LogRowUnreadable, "webhook_id", ev.WebhookID, "type", ev.Type, "subject", ev.Subject, "err", err)
		return fmt.Sprintf("cmdtrack could not read the event's row: %v", errors.Unwrap(err)), ownFault
	}
	b, err := body(ev, row)
	if err != nil {
		return fmt.Sprintf("cmdtrack could not make the payload: %v", err), ownFault
	}
	if stop.Err() != nil {
		e.log.Info(LogStopped, "webhook_id", ev.WebhookID)
		return "", notMade
	}
	start := time.Now()
	reason = e.post(rctx, ev, b)
	e.d.m.attempt.WithLabelValues(e.ep.Name).Observe(time.Since(start).Seconds())
	return reason, sent
}

// databaseAway says that reading a row failed for want of the database
// (its connection refused or dropped, the server shutting down or short
// of connections, or no answer within the timeout), not for the row: the
// store's classes (store/errors.go) decide.
func databaseAway(err error) bool {
	return store.Unavailable(err) || store.ClassifyError(err) == store.CanceledError
}

// post sends one request: "" when it was answered 2xx, else why not.
func (e *endpoint) post(ctx context.Context, ev *store.WebhookEvent, b []byte) string {
	cfg := &e.d.cfg
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.ep.URL, bytes.NewReader(b))
	if err != nil {
		// The error repeats the URL, and whatever token it holds.
		return fmt.Sprintf("cmdtrack could not make a request to %s: check the endpoint's URL", redacted(e.ep.URL))
	}
	ts := cfg.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", cfg.UserAgent)
	req.Header.Set(HeaderID, ev.WebhookID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(HeaderSignature, e.signer.Sign(ev.WebhookID, ts, b))
	resp, err := e.d.client.Do(req)
	if err != nil {
		return requestError(err, cfg.Timeout)
	}
	defer resp.Body.Close()
	// Bounded: a receiver that answers forever must not hold a worker.
	text, err := io.ReadAll(io.LimitReader(resp.Body, MaxErrorBody))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return ""
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		where := resp.Header.Get("Location")
		if u, perr := url.Parse(where); perr == nil {
			where = safeURL(u)
		} else {
			where = "(a URL that does not parse)"
		}
		return fmt.Sprintf("HTTP %d: a redirect to %q, not followed: set the endpoint's URL to where it points", resp.StatusCode, where)
	}
	reason := fmt.Sprintf("HTTP %d", resp.StatusCode)
	if s := oneLine(text); s != "" {
		reason += ": " + s
	}
	if err != nil && !errors.Is(err, io.EOF) {
		reason += fmt.Sprintf(" (reading the answer: %v)", err)
	}
	return reason
}

// requestError says why a request got no answer, without its URL (the
// endpoint is named beside it).
func requestError(err error, timeout time.Duration) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Sprintf("no answer within %v (CMDTRACK_WEBHOOK_TIMEOUT)", timeout)
		}
		err = ue.Err
	}
	return err.Error()
}

// oneLine is a response body as one line of printable text.
func oneLine(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// settleDelivered removes the delivered events, as many at once as come
// together (up to a claim's batch), until resolved is closed.
func (e *endpoint) settleDelivered(ctx context.Context) {
	for ev := range e.resolved {
		batch := []*store.WebhookEvent{ev}
	more:
		for len(batch) < cap(e.resolved) {
			select {
			case next, ok := <-e.resolved:
				if !ok {
					break more
				}
				batch = append(batch, next)
			default:
				break more
			}
		}
		evs := make([]store.WebhookSettle, len(batch))
		first := batch[0]
		for i, ev := range batch {
			evs[i] = store.WebhookSettle{ID: ev.ID, Attempts: ev.Attempts}
			if ev.LeaseEnd.Before(first.LeaseEnd) {
				first = ev
			}
		}
		// Tried until the first of their leases ends.
		e.settle(ctx, first.LeaseEnd, first, func(sctx context.Context) error {
			return e.d.st.WebhookDelivered(sctx, e.ep.Name, evs)
		})
		for _, ev := range batch {
			e.done(ev)
		}
	}
}

// settle runs f until it works, the lease of ev ends (another claim may
// have it then: a settle after that changes nothing, its token being
// stale) or the stop begins; what it could not settle is delivered again
// after its lease: at least once, with the same webhook-id. The lease's
// end is the database's (ClaimWebhooks), read on this clock.
func (e *endpoint) settle(ctx context.Context, leaseEnd time.Time, ev *store.WebhookEvent, f func(context.Context) error) {
	cfg := &e.d.cfg
	for try := 1; ; try++ {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		err := f(sctx)
		cancel()
		if err == nil {
			e.d.dbOK()
			return
		}
		e.d.dbFailed(err)
		wait := backoff.Delay(try, cfg.PollInterval, cfg.DBRetryMax)
		if ctx.Err() != nil || cfg.Now().Add(wait).After(leaseEnd) || !sleep(ctx, wait) {
			e.log.Warn(LogLeftToLease, "webhook_id", ev.WebhookID, "err", err)
			return
		}
	}
}

// answered notes a 2xx.
func (e *endpoint) answered() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failing {
		e.log.Info(LogEndpointBack)
	}
	e.failing, e.gaveUp = false, false
}

// failed notes a failed attempt, logged when the endpoint begins failing.
func (e *endpoint) failed(reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.failing {
		e.log.Warn(LogEndpointFailing, "url", redacted(e.ep.URL), "reason", reason)
	}
	e.failing = true
}

// giveUp notes an event failed for good, logged once per failing spell.
func (e *endpoint) giveUp(ev *store.WebhookEvent, reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.gaveUp {
		e.log.Warn(LogGaveUp, "webhook_id", ev.WebhookID, "type", ev.Type, "subject", ev.Subject, "reason", reason)
	} else {
		e.log.Debug(LogGaveUp, "webhook_id", ev.WebhookID, "type", ev.Type, "subject", ev.Subject, "reason", reason)
	}
	e.gaveUp = true
}

// redacted is the URL raw as logs and errors may show it (see safeURL).
func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return safeURL(u)
}

// sleep waits d, or less if ctx ends first (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
