// Package reconcile repairs what notifications missed. It asks IoTDA's API
// (ShowAsyncDeviceCommand) for the state of commands cmdtrack still holds as
// not final, or of named commands, and (ShowDeviceMessage) of device
// messages stuck PENDING, and merges each answer through the same merge
// rule as a notification (source "api", recorded in the history), so that
// an answer can never move a row backwards or overwrite a newer
// notification. A command or message the API does not know is counted,
// never invented; nothing is written from a call that failed.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/backoff"
	"github.com/cmdtrack/cmdtrack/iotdaapi"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// API is the calls reconcile makes (an *iotdaapi.Client).
type API interface {
	ShowAsyncDeviceCommand(ctx context.Context, deviceID, commandID string) (*iotdaapi.Command, error)
	ShowDeviceMessage(ctx context.Context, deviceID, messageID string) (*iotdaapi.DeviceMessage, error)
}

// Store is what reconcile reads and writes (a *store.Store).
type Store interface {
	OpenCommands(ctx context.Context, q store.OpenQuery) ([]store.CommandRef, error)
	CommandsByID(ctx context.Context, ids []string) ([]store.CommandRef, error)
	ApplyReportingChanges(ctx context.Context, items []ingest.Item) ([]ingest.Result, error)
	TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error)
	StuckHorizon(ctx context.Context) (time.Duration, error)
	StuckMessages(ctx context.Context, q store.StuckMessageQuery) ([]store.MessageRef, error)
	Message(ctx context.Context, deviceID, messageID string) (store.MessageRef, bool, error)
}

// LockName is the advisory lock that lets one reconcile run at a time per
// schema, whether a replica's or `cmdtrack reconcile`'s.
var LockName = store.LockName("reconcile")

// Lookback is how long before a window's start (Selection.Since) a command
// may have last moved and still be checked by a window run: IoTDA keeps a
// command waiting at most 48 hours (expire_time is at most 172800 s), so one
// that was open when the window began moved no earlier than that. Older
// open commands are a threshold run's, within the stuck horizon.
const Lookback = 48 * time.Hour

// Config tunes a Reconciler. Zero values take the defaults.
type Config struct {
	// Rate is the most API calls per second (default 5). IoTDA's quotas are
	// per account and shared with the application that sends commands.
	Rate float64
	// Attempts is how many times a command is asked when the answer is
	// throttled, a 5xx or a timeout, before it counts as failed (default 5).
	Attempts int
	// RetryMin and RetryMax bound the backoff between attempts (default 1s
	// doubling to 30s); a Retry-After header asks for more if it says so.
	RetryMin, RetryMax time.Duration
	// CallTimeout bounds one API call (default 15s).
	CallTimeout time.Duration
	// PageSize is how many commands are read from the database at a time
	// (default 500).
	PageSize int
	// Limits are what an answer may claim, as for any notification (an
	// event time too far ahead makes it a dead letter).
	Limits ingest.Limits
	// AuthHint and EndpointHint end a StopError's message: what to check
	// when the API refuses the credentials, or the endpoint cannot serve
	// it (the caller knows the names of its settings).
	AuthHint, EndpointHint string
}

func (c Config) withDefaults() Config {
	if c.Rate <= 0 {
		c.Rate = 5
	}
	if c.Attempts <= 0 {
		c.Attempts = 5
	}
	if c.RetryMin <= 0 {
		c.RetryMin = time.Second
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(30*time.Second, c.RetryMin)
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 15 * time.Second
	}
	if c.PageSize <= 0 {
		c.PageSize = 500
	}
	return c
}

// Selection says which commands a run checks: the named ones, else those
// not final that last moved in the window (when Since or Until is set),
// else those not final that have not moved for longer than Threshold but
// moved within the stuck horizon (cmdtrack_settings.stuck_horizon).
//
// The horizon keeps a threshold run, which the worker repeats every
// interval, to commands the platform may still be working on: one that has
// not moved for longer is past what IoTDA keeps in its queues, and asking
// about it every run would spend the account's shared API quota for ever
// (2,000 such commands and an hourly run: 1.44 M calls a month) and make
// newly stuck commands wait behind it. Such a command is checked when asked
// for: by its id, or by a window that covers it.
type Selection struct {
	// IDs are checked whatever their status.
	IDs []string
	// Since and Until: commands not final whose last event is before Until
	// (zero: now) and no more than Lookback before Since (zero: no bound).
	Since, Until time.Time
	// Threshold: commands not final whose last event is older than this,
	// and within the stuck horizon.
	Threshold time.Duration
}

// Outcome is what became of one checked command.
type Outcome string

// The outcomes.
const (
	// Updated: the answer changed the command's row.
	Updated Outcome = "updated"
	// Unchanged: the row already said as much, or holds something newer.
	Unchanged Outcome = "unchanged"
	// Unknown: the API does not know the command; nothing was written.
	Unknown Outcome = "unknown"
	// Failed: no usable answer (or none could be asked for); nothing written.
	Failed Outcome = "failed"
)

// Check is one checked command or device message, as -v reports it.
type Check struct {
	// CommandID names a command; MessageID (with DeviceID) a message.
	CommandID, MessageID, DeviceID string
	Outcome                        Outcome
	// Stored is the status before the run; API the status the API answered
	// (empty unless it answered).
	Stored, API notification.Status
	// Err says why it failed.
	Err error
}

// Summary counts a run's checks.
type Summary struct {
	Checked, Updated, Unchanged, Unknown, Failed int
}

func (s Summary) String() string {
	return fmt.Sprintf("checked %d, updated %d, unchanged %d, unknown %d, failed %d",
		s.Checked, s.Updated, s.Unchanged, s.Unknown, s.Failed)
}

func (s *Summary) add(o Outcome) {
	s.Checked++
	switch o {
	case Updated:
		s.Updated++
	case Unchanged:
		s.Unchanged++
	case Unknown:
		s.Unknown++
	case Failed:
		s.Failed++
	}
}

// ErrBusy is Run's answer when another run (another replica's, or
// `cmdtrack reconcile`) holds the lock.
var ErrBusy = errors.New("another reconcile is running (a replica, or cmdtrack reconcile); nothing was checked")

// StopError ends a run early: the API refused the credentials (401, 403) or
// the endpoint cannot serve it (the gateway's 404, a redirect, a
// certificate that does not verify). Every further call would fail alike.
type StopError struct {
	Class iotdaapi.ErrorClass
	Err   error
	// Hint says what to check.
	Hint string
}

func (e *StopError) Error() string {
	if e.Hint == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + "; " + e.Hint
}
func (e *StopError) Unwrap() error { return e.Err }

// Reconciler checks commands against the API. Run is not meant to be called
// concurrently on one Reconciler; the lock keeps runs apart across processes.
type Reconciler struct {
	api     API
	st      Store
	cfg     Config
	log     *slog.Logger
	m       *Metrics
	limiter *limiter
	now     func() time.Time

	// recheck, when set, remembers until when a command needs no asking
	// again (see Remember).
	recheck      map[string]time.Time
	unknownAfter time.Duration
}

// New returns a Reconciler; m may be nil (no metrics).
func New(api API, st Store, cfg Config, log *slog.Logger, m *Metrics) *Reconciler {
	cfg = cfg.withDefaults()
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Reconciler{
		api: api, st: st, cfg: cfg, log: log, m: m, now: time.Now,
		limiter: newLimiter(time.Duration(float64(time.Second) / cfg.Rate)),
	}
}

// Remember makes the Reconciler skip, in later threshold runs, a command it
// checked recently: one whose answer changed nothing is asked again no
// sooner than the threshold later, one the API does not know no sooner than
// unknownAfter later. The daemon, which runs every interval, uses it so that
// a command stuck for good costs one call per threshold, not per interval.
func (r *Reconciler) Remember(unknownAfter time.Duration) {
	r.recheck = map[string]time.Time{}
	r.unknownAfter = unknownAfter
}

// Run checks the selected commands once, one at a time, within the rate,
// and calls report (if not nil) with each check. It returns ErrBusy when
// another run holds the lock, a *StopError when the API refuses the
// credentials or the endpoint, and an error when the database fails (so
// that no call is spent on answers that cannot be recorded). ctx bounds the
// whole run; what was stored before it ended stays stored.
func (r *Reconciler) Run(ctx context.Context, sel Selection, report func(Check)) (Summary, error) {
	unlock, ok, err := r.st.TryLock(ctx, LockName)
	if err != nil {
		return Summary{}, fmt.Errorf("reconcile: %w", err)
	}
	if !ok {
		return Summary{}, ErrBusy
	}
	defer unlock()
	r.m.runs.Inc()

	ru := &run{r: r, now: r.now(), threshold: sel.Threshold, report: report}
	r.forget(ru.now)
	if len(sel.IDs) > 0 {
		err = ru.named(ctx, sel.IDs)
	} else {
		err = ru.open(ctx, sel)
	}
	if err == nil && len(sel.IDs) == 0 && sel.Since.IsZero() && sel.Until.IsZero() {
		err = ru.messages(ctx, sel.Threshold)
	}
	return ru.sum, err
}

// run is one Run's checks, counted.
type run struct {
	r         *Reconciler
	now       time.Time
	threshold time.Duration
	report    func(Check)
	sum       Summary
}

// named checks the commands called ids, whatever their status, each once,
// in id order.
func (ru *run) named(ctx context.Context, ids []string) error {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	refs, err := ru.r.st.CommandsByID(ctx, ids)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	for _, id := range ids {
		i, found := slices.BinarySearchFunc(refs, id, func(r store.CommandRef, id string) int { return strings.Compare(r.CommandID, id) })
		ref := store.CommandRef{CommandID: id}
		if found {
			ref = refs[i]
		}
		if err := ru.check(ctx, ref); err != nil {
			return err
		}
	}
	return nil
}

// open checks the commands not final that sel chooses (by threshold or
// window, see Selection), oldest first, a page at a time.
func (ru *run) open(ctx context.Context, sel Selection) error {
	q, err := ru.openQuery(ctx, sel)
	if err != nil {
		return err
	}
	windowed := !sel.Since.IsZero() || !sel.Until.IsZero()
	// A row the run updates may move within the selection and come up again
	// on a later page: ask once per run.
	seen := map[string]bool{}
	for {
		page, err := ru.r.st.OpenCommands(ctx, q)
		if err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
		for _, ref := range page {
			if seen[ref.CommandID] || (!windowed && ru.r.recent(ref.CommandID, ru.now)) {
				continue
			}
			seen[ref.CommandID] = true
			if err := ru.check(ctx, ref); err != nil {
				return err
			}
		}
		if len(page) < q.Limit {
			return nil
		}
		q.After = &page[len(page)-1]
	}
}

// openQuery is the first page's query for sel: a window's bounds, or the
// threshold within the stuck horizon.
func (ru *run) openQuery(ctx context.Context, sel Selection) (store.OpenQuery, error) {
	q := store.OpenQuery{Before: ru.now.Add(-sel.Threshold), Limit: ru.r.cfg.PageSize}
	if !sel.Since.IsZero() || !sel.Until.IsZero() {
		q.Before = sel.Until
		if q.Before.IsZero() {
			q.Before = ru.now
		}
		if !sel.Since.IsZero() {
			q.Since = sel.Since.Add(-Lookback)
		}
		return q, nil
	}
	horizon, err := ru.r.st.StuckHorizon(ctx)
	if err != nil {
		return q, fmt.Errorf("reconcile: %w", err)
	}
	if horizon <= sel.Threshold {
		ru.r.log.Warn("reconcile: the threshold is not shorter than the stuck horizon, so no command is selected; "+
			"lower CMDTRACK_RECONCILE_THRESHOLD or raise cmdtrack_settings.stuck_horizon",
			"threshold", sel.Threshold.String(), "stuck_horizon", horizon.String())
	}
	q.Since = ru.now.Add(-horizon)
	// The console's and the gauge's definition (store.OpenQuery.Stuck);
	// Since stays for stores that filter by it, such as the tests' fake.
	q.Stuck = sel.Threshold
	return q, nil
}

// check checks one command, counts and reports it. It returns an error
// only when the run must stop.
func (ru *run) check(ctx context.Context, ref store.CommandRef) error {
	c, err := ru.r.check(ctx, ref)
	if err != nil {
		return err
	}
	ru.sum.add(c.Outcome)
	ru.r.m.count(c.Outcome)
	ru.r.remember(ref.CommandID, c.Outcome, ru.threshold, ru.now)
	if ru.report != nil {
		ru.report(c)
	}
	return nil
}

// check asks the API about one command and stores its answer. It returns an
// error only when the run must stop.
func (r *Reconciler) check(ctx context.Context, ref store.CommandRef) (Check, error) {
	c := Check{CommandID: ref.CommandID, DeviceID: ref.DeviceID, Stored: ref.Status}
	log := r.log.With("command_id", ref.CommandID, "device_id", ref.DeviceID)
	switch {
	case ref.Status == "":
		c.Outcome, c.Err = Failed, errors.New("not in device_commands, so its device is not known; nothing was asked")
		log.Warn("reconcile: command not stored", "err", c.Err)
		return c, nil
	case ref.DeviceID == "":
		c.Outcome, c.Err = Failed, errors.New("no device id recorded for it, and the API needs one; nothing was asked")
		log.Warn("reconcile: command without device id", "err", c.Err)
		return c, nil
	}

	var answer *iotdaapi.Command
	err := r.ask(ctx, log, func(ctx context.Context) (err error) {
		answer, err = r.api.ShowAsyncDeviceCommand(ctx, ref.DeviceID, ref.CommandID)
		return err
	})
	if done, stop := r.judge(ctx, err, &c, log); done {
		return c, stop
	}
	c.API = notification.Status(answer.Status)
	item, err := ingest.FromAPI(answer, r.now(), r.cfg.Limits)
	if err != nil {
		return r.unusable(c, err, log), nil
	}
	res, err := r.st.ApplyReportingChanges(ctx, []ingest.Item{item})
	if err != nil {
		if ctx.Err() != nil {
			return c, ctx.Err()
		}
		return c, fmt.Errorf("reconcile: store the answer for command %s: %w", ref.CommandID, err)
	}
	if r.refused(&c, res[0], log) {
		return c, nil
	}
	c.Outcome = Unchanged
	if res[0].Changed {
		c.Outcome = Updated
		log.Debug("reconcile: updated", "stored", string(c.Stored), "api", string(c.API))
	}
	return c, nil
}

// judge decides what a failed call means for the check c: done when the
// call failed (c says how), with an error when the run must stop.
func (r *Reconciler) judge(ctx context.Context, err error, c *Check, log *slog.Logger) (done bool, stop error) {
	var stopErr *StopError
	switch {
	case err == nil:
		return false, nil
	case errors.As(err, &stopErr) || ctx.Err() != nil:
		if ctx.Err() != nil {
			return true, ctx.Err()
		}
		return true, err
	case iotdaapi.Classify(err) == iotdaapi.ClassNotFound:
		c.Outcome = Unknown
		log.Info("reconcile: the API does not know it; left as it is", "err", err)
		return true, nil
	}
	c.Outcome, c.Err = Failed, err
	log.Warn("reconcile: no usable answer; nothing stored", "class", string(iotdaapi.Classify(err)), "err", err)
	return true, nil
}

// unusable is the check c whose answer could not be turned into a record.
func (r *Reconciler) unusable(c Check, err error, log *slog.Logger) Check {
	r.m.apiErrors.WithLabelValues(string(iotdaapi.ClassBadResponse)).Inc()
	c.Outcome, c.Err = Failed, err
	log.Warn("reconcile: unusable answer; nothing stored", "err", err)
	return c
}

// refused reports whether the store kept the answer as a dead letter, and
// if so counts c as failed.
func (r *Reconciler) refused(c *Check, res ingest.Result, log *slog.Logger) bool {
	if res.Outcome != ingest.DeadLettered {
		return false
	}
	c.Outcome, c.Err = Failed, errors.New(res.DeadLetter.Reason)
	log.Warn("reconcile: the answer was refused, and kept as a dead letter", "class", string(res.DeadLetter.Class), "err", c.Err)
	return true
}

// ask makes call within the rate, retrying throttling, 5xx and timeouts
// with backoff (or as long as Retry-After asks, for everyone). It returns a
// *StopError for refusals that end the run. log names what is asked about.
func (r *Reconciler) ask(ctx context.Context, log *slog.Logger, call func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		if err := r.limiter.wait(ctx); err != nil {
			return err
		}
		callCtx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
		err := call(callCtx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		class := iotdaapi.Classify(err)
		if class != iotdaapi.ClassNotFound {
			r.m.apiErrors.WithLabelValues(string(class)).Inc()
		}
		switch class {
		case iotdaapi.ClassAuth:
			return &StopError{Class: class, Err: err, Hint: r.cfg.AuthHint}
		case iotdaapi.ClassEndpoint:
			return &StopError{Class: class, Err: err, Hint: r.cfg.EndpointHint}
		case iotdaapi.ClassRateLimited, iotdaapi.ClassUnavailable:
		default:
			return err
		}
		if attempt >= r.cfg.Attempts {
			return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		delay := backoff.Delay(attempt, r.cfg.RetryMin, r.cfg.RetryMax)
		var apiErr *iotdaapi.APIError
		if errors.As(err, &apiErr) && apiErr.RetryAfter > delay {
			delay = apiErr.RetryAfter
		}
		if class == iotdaapi.ClassRateLimited {
			// The quota is the account's: every call waits, not just this one.
			r.limiter.pause(r.now().Add(delay))
			log.Info("reconcile: the API is throttling; waiting", "wait", delay.String())
			continue
		}
		log.Debug("reconcile: retrying", "attempt", attempt, "wait", delay.String(), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

func (r *Reconciler) recent(id string, now time.Time) bool {
	until, ok := r.recheck[id]
	return ok && now.Before(until)
}

func (r *Reconciler) remember(id string, o Outcome, threshold time.Duration, now time.Time) {
	if r.recheck == nil {
		return
	}
	switch o {
	case Unchanged, Failed:
		r.recheck[id] = now.Add(threshold)
	case Unknown:
		r.recheck[id] = now.Add(r.unknownAfter)
	default:
		// An updated command may have moved to another open status: its new
		// last event decides when it is due again.
		delete(r.recheck, id)
	}
}

// forget drops what is due again, so the memory holds only what is skipped.
func (r *Reconciler) forget(now time.Time) {
	for id, until := range r.recheck {
		if !now.Before(until) {
			delete(r.recheck, id)
		}
	}
}
