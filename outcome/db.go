package outcome

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// Database is what the database's metrics read.
type Database interface {
	Stuck(ctx context.Context, quiet time.Duration) (map[notification.Status]int64, error)
	MessagesStuck(ctx context.Context, quiet time.Duration) (int64, error)
	NewestEvent(ctx context.Context) (time.Time, error)
	OutcomeTotals(ctx context.Context) ([]store.OutcomeTotal, error)
}

// counter exports the outcome events of one kind as one counter.
type counter struct {
	kind string
	desc *prometheus.Desc
	// changes: labelled from and to, the final status replaced and the
	// one after it; otherwise product_id and status.
	changes bool
}

// counters are the outcome counters, one line per kind of outcome event
// (store.OutcomeTotal.Kind). A kind without a line is not exported.
func counters() []counter {
	return []counter{
		{kind: store.KindFinished, desc: prometheus.NewDesc("cmdtrack_commands_finished_total",
			"Commands whose stored status became final (SUCCESSFUL, FAILED, TIMEOUT, EXPIRED, CANCELED) for the first time, by product and that status, whoever wrote it; read from the database by the replica holding the metrics lease.",
			[]string{"product_id", "status"}, nil)},
		{kind: store.KindFinalChanged, changes: true, desc: prometheus.NewDesc("cmdtrack_commands_final_changed_total",
			"Final statuses replaced by a later final status (a TIMEOUT, then a late SUCCESSFUL), by the status before and after; read from the database by the replica holding the metrics lease.",
			[]string{"from", "to"}, nil)},
		{kind: store.KindMessageFinished, desc: prometheus.NewDesc("cmdtrack_messages_finished_total",
			"Device messages (device.message.status) whose stored status became final (DELIVERED, FAILED, TIMEOUT) for the first time, by product and that status, whoever wrote it; read from the database by the replica holding the metrics lease.",
			[]string{"product_id", "status"}, nil)},
		{kind: store.KindMessageFinalChanged, changes: true, desc: prometheus.NewDesc("cmdtrack_messages_final_changed_total",
			"Device messages' final statuses replaced by a later final status (a FAILED, then a DELIVERED of a message the platform retried), by the status before and after; read from the database by the replica holding the metrics lease.",
			[]string{"from", "to"}, nil)},
		{kind: store.KindCallFinished, desc: prometheus.NewDesc("cmdtrack_calls_finished_total",
			"Synchronous commands and property sets sent through cmdtrack (device_calls) that reached a final status, by product and that status; read from the database by the replica holding the metrics lease.",
			[]string{"product_id", "status"}, nil)},
	}
}

// labels are o's label values in c's series.
func (c *counter) labels(o *store.OutcomeTotal, productLabel bool) [2]string {
	switch {
	case c.changes:
		return [2]string{o.FromStatus, o.Status}
	case productLabel:
		return [2]string{o.ProductID, o.Status}
	}
	return [2]string{"", o.Status}
}

// LeaseName is the advisory lock whose holder exports the database's
// metrics (store.Lease): one replica, for as long as it lives.
var LeaseName = store.LockName("metrics")

// DBCollector exports what only the database knows, at scrape time: the
// commands, device messages and synchronous calls finished and final
// statuses changed (counters, whoever wrote them; see counters), the
// commands stuck now, by status, the device messages stuck now, and the age
// of the newest stored notification. Every replica would read the same numbers, so only one
// exports them: the one holding the metrics lease (leader says whether this
// replica does; Exporter keeps it); the others export nothing. The counters
// only grow in the database, so read by one process they never go back; when
// the lease moves, they continue as another instance's series.
//
// It reads the database at most once per DBReadInterval: scrapes in between
// (a second Prometheus, a person with curl, a benchmark polling for its end)
// get the last reading, the age still taken at the scrape. Counting the
// stuck commands reads every index entry of the open commands within the
// stuck horizon, and make bench's
// runner scrapes 50 times a second near the end of a drain.
type DBCollector struct {
	db           Database
	leader       func() bool
	stuckAfter   time.Duration
	productLabel bool
	timeout      time.Duration
	log          *slog.Logger
	now          func() time.Time

	mu            sync.Mutex
	readAt        time.Time // zero: the last read failed, or there was none
	counts        map[notification.Status]int64
	messagesStuck int64
	newestAt      time.Time
	totals        []store.OutcomeTotal

	stuck, stuckMessages, newest *prometheus.Desc
	counters                     []counter
}

// DBReadInterval is how often at most the collector reads the database,
// and how often the Exporter folds the outcome events (without webhooks)
// and keeps its lease.
const DBReadInterval = 10 * time.Second

// DispatchInterval is how often the Exporter folds the outcome events when
// it dispatches them to webhooks: an event waits about this long for its
// first attempt.
const DispatchInterval = time.Second

// NewDBCollector reads db when scraped on the leader. The stuck commands
// are stuck_commands(stuckAfter), as the console and reconcile count them,
// and the stuck messages stuck_messages(stuckAfter).
// Without productLabel, product_id is always empty, for fleets with too many
// products for one series each.
func NewDBCollector(db Database, leader func() bool, stuckAfter time.Duration, productLabel bool, log *slog.Logger) *DBCollector {
	return &DBCollector{
		db: db, leader: leader, stuckAfter: stuckAfter, productLabel: productLabel, timeout: 5 * time.Second, log: log, now: time.Now,
		stuck: prometheus.NewDesc("cmdtrack_commands_stuck",
			"Commands stuck (not final, quiet for longer than CMDTRACK_RECONCILE_THRESHOLD, moved within cmdtrack_settings.stuck_horizon: the view stuck_commands), by status; exported by the replica holding the metrics lease.",
			[]string{"status"}, nil),
		newest: prometheus.NewDesc("cmdtrack_newest_notification_age_seconds",
			"Age of the newest notification stored (its event time); exported by the replica holding the metrics lease.",
			nil, nil),
		stuckMessages: prometheus.NewDesc("cmdtrack_messages_stuck",
			"Device messages stuck (PENDING, quiet for longer than CMDTRACK_RECONCILE_THRESHOLD, moved within cmdtrack_settings.stuck_horizon: stuck_messages(quiet)); exported by the replica holding the metrics lease.",
			nil, nil),
		counters: counters(),
	}
}

// Describe implements prometheus.Collector.
func (c *DBCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.stuck
	ch <- c.stuckMessages
	ch <- c.newest
	for i := range c.counters {
		ch <- c.counters[i].desc
	}
}

// Collect implements prometheus.Collector. A failed read is logged and its
// series left out: a gap, rather than a wrong number.
func (c *DBCollector) Collect(ch chan<- prometheus.Metric) {
	if c.leader == nil || !c.leader() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.readAt.IsZero() || now.Sub(c.readAt) >= DBReadInterval || now.Before(c.readAt) {
		c.read(now)
	}
	if c.readAt.IsZero() {
		return
	}
	for _, s := range []notification.Status{notification.Pending, notification.Sent, notification.Delivered} {
		ch <- prometheus.MustNewConstMetric(c.stuck, prometheus.GaugeValue, float64(c.counts[s]), string(s))
	}
	ch <- prometheus.MustNewConstMetric(c.stuckMessages, prometheus.GaugeValue, float64(c.messagesStuck))
	if !c.newestAt.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.newest, prometheus.GaugeValue, max(0, now.Sub(c.newestAt).Seconds()))
	}
	for i := range c.counters {
		k := &c.counters[i]
		series := map[[2]string]int64{}
		for j := range c.totals {
			if o := &c.totals[j]; o.Kind == k.kind {
				series[k.labels(o, c.productLabel)] += o.Count
			}
		}
		for l, n := range series {
			ch <- prometheus.MustNewConstMetric(k.desc, prometheus.CounterValue, float64(n), l[0], l[1])
		}
	}
}

// read takes every reading, or none (readAt zero).
func (c *DBCollector) read(now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	c.readAt = time.Time{}
	totals, err := c.db.OutcomeTotals(ctx)
	if err != nil {
		c.log.Warn("could not read the outcome counters for /metrics", "err", err)
		return
	}
	stuck, err := c.db.Stuck(ctx, c.stuckAfter)
	if err != nil {
		c.log.Warn("could not count stuck commands for /metrics", "err", err)
		return
	}
	stuckMessages, err := c.db.MessagesStuck(ctx, c.stuckAfter)
	if err != nil {
		c.log.Warn("could not count stuck device messages for /metrics", "err", err)
		return
	}
	at, err := c.db.NewestEvent(ctx)
	if err != nil {
		c.log.Warn("could not read the newest notification's time for /metrics", "err", err)
		return
	}
	c.totals, c.counts, c.messagesStuck, c.newestAt, c.readAt = totals, stuck, stuckMessages, at, now
}

// Lease is the lock that makes one replica the exporter (a *store.Lease).
type Lease interface {
	Keep(ctx context.Context) (bool, error)
	Held() bool
	Release()
}

// Folder folds the outcome events into their totals, and dispatches them
// to the webhooks' routes, which the database holds (a *store.Store).
type Folder interface {
	FoldOutcomes(ctx context.Context) (int64, error)
}

// Exporter keeps this replica's claim to the metrics lease, and while it
// holds it, folds the outcome events into their totals so that the table
// the merge appends to stays small, whether /metrics is scraped or not,
// and dispatches them to the webhooks in the same statement: once across
// replicas. Without a lease (a replica that serves no /metrics must not
// take it from one that does) it folds on every tick: folds running at
// once are still exact, each adding and dispatching what it deletes.
type Exporter struct {
	lease    Lease
	db       Folder
	log      *slog.Logger
	routes   []store.WebhookRoute
	interval time.Duration
	// lost says the last Keep failed, so that a database away is logged
	// once, not every DBReadInterval.
	lost bool
}

// ExporterOptions are what an Exporter does besides folding.
type ExporterOptions struct {
	// Routes are this replica's webhook endpoints: with some, it folds
	// every DispatchInterval. The fold dispatches with the routes the
	// database holds (store.SetWebhookRoutes), whichever replica folds.
	Routes []store.WebhookRoute
	// Interval is how often it folds: zero for DispatchInterval with
	// Routes, DBReadInterval without.
	Interval time.Duration
}

// NewExporter returns an Exporter; its Loop does the work. lease may be
// nil: fold without one.
func NewExporter(lease Lease, db Folder, log *slog.Logger, opts ExporterOptions) *Exporter {
	e := &Exporter{lease: lease, db: db, log: log, routes: opts.Routes, interval: opts.Interval}
	if e.interval <= 0 {
		e.interval = DBReadInterval
		if len(e.routes) > 0 {
			e.interval = DispatchInterval
		}
	}
	return e
}

// Loop runs Tick at once and then folds every interval until ctx ends,
// then gives the lease up for another replica to take at once. It keeps
// the lease (Tick) every DBReadInterval, however often it folds: a replica
// without the lease would connect to try for it on every tick. Meanwhile
// it folds if the lease was held at the last Keep: a leader whose session
// has gone may fold beside the new one until its next Keep, which is
// still exact.
func (e *Exporter) Loop(ctx context.Context) {
	if e.lease != nil {
		defer e.lease.Release()
	}
	t := time.NewTicker(e.interval)
	defer t.Stop()
	keepEvery := max(1, int(DBReadInterval/e.interval))
	for i := 0; ; i++ {
		switch {
		case i%keepEvery == 0:
			e.Tick(ctx)
		case e.lease == nil || e.lease.Held():
			e.fold(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Tick takes or keeps the lease, and folds the events if it holds it.
func (e *Exporter) Tick(ctx context.Context) {
	if e.lease == nil {
		e.fold(ctx)
		return
	}
	held, err := e.lease.Keep(ctx)
	switch {
	case ctx.Err() != nil:
		return
	case err != nil:
		if !e.lost {
			e.log.Warn("could not take or keep the metrics lease; this replica exports no database metrics until it can", "err", err)
		}
		e.lost = true
		return
	}
	e.lost = false
	if held {
		e.fold(ctx)
	}
}

func (e *Exporter) fold(ctx context.Context) {
	if _, err := e.db.FoldOutcomes(ctx); err != nil && ctx.Err() == nil {
		e.log.Warn("could not fold the outcome events into their totals and the webhooks' outbox; trying again soon", "err", err)
	}
}
