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
	NewestEvent(ctx context.Context) (time.Time, error)
	OutcomeTotals(ctx context.Context) ([]store.OutcomeTotal, error)
}

// LeaseName is the advisory lock whose holder exports the database's
// metrics (store.Lease): one replica, for as long as it lives.
var LeaseName = store.LockName("metrics")

// DBCollector exports what only the database knows, at scrape time: the
// commands finished and final statuses changed (counters, whoever wrote
// them), the commands stuck now, by status, and the age of the newest stored
// notification. Every replica would read the same numbers, so only one
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

	mu       sync.Mutex
	readAt   time.Time // zero: the last read failed, or there was none
	counts   map[notification.Status]int64
	newestAt time.Time
	totals   []store.OutcomeTotal

	stuck, newest, finished, finalChanged *prometheus.Desc
}

// DBReadInterval is how often at most the collector reads the database,
// and how often the Exporter folds the outcome events.
const DBReadInterval = 10 * time.Second

// NewDBCollector reads db when scraped on the leader. The stuck commands
// are stuck_commands(stuckAfter), as the console and reconcile count them.
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
		finished: prometheus.NewDesc("cmdtrack_commands_finished_total",
			"Commands whose stored status became final (SUCCESSFUL, FAILED, TIMEOUT, EXPIRED, CANCELED) for the first time, by product and that status, whoever wrote it; read from the database by the replica holding the metrics lease.",
			[]string{"product_id", "status"}, nil),
		finalChanged: prometheus.NewDesc("cmdtrack_commands_final_changed_total",
			"Final statuses replaced by a later final status (a TIMEOUT, then a late SUCCESSFUL), by the status before and after; read from the database by the replica holding the metrics lease.",
			[]string{"from", "to"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *DBCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.stuck
	ch <- c.newest
	ch <- c.finished
	ch <- c.finalChanged
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
	if !c.newestAt.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.newest, prometheus.GaugeValue, max(0, now.Sub(c.newestAt).Seconds()))
	}
	type key struct{ a, b string }
	finished, changed := map[key]int64{}, map[key]int64{}
	for _, o := range c.totals {
		switch o.Kind {
		case store.KindFinished:
			product := ""
			if c.productLabel {
				product = o.ProductID
			}
			finished[key{product, o.Status}] += o.Commands
		case store.KindFinalChanged:
			changed[key{o.FromStatus, o.Status}] += o.Commands
		}
	}
	for k, n := range finished {
		ch <- prometheus.MustNewConstMetric(c.finished, prometheus.CounterValue, float64(n), k.a, k.b)
	}
	for k, n := range changed {
		ch <- prometheus.MustNewConstMetric(c.finalChanged, prometheus.CounterValue, float64(n), k.a, k.b)
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
	at, err := c.db.NewestEvent(ctx)
	if err != nil {
		c.log.Warn("could not read the newest notification's time for /metrics", "err", err)
		return
	}
	c.totals, c.counts, c.newestAt, c.readAt = totals, stuck, at, now
}

// Lease is the lock that makes one replica the exporter (a *store.Lease).
type Lease interface {
	Keep(ctx context.Context) (bool, error)
	Held() bool
	Release()
}

// Folder folds the outcome events into their totals (a *store.Store).
type Folder interface {
	FoldOutcomes(ctx context.Context) (int64, error)
}

// Exporter keeps this replica's claim to the metrics lease, and while it
// holds it, folds the outcome events into their totals so that the table
// the merge appends to stays small, whether /metrics is scraped or not.
// Without a lease (a replica that serves no /metrics must not take it from
// one that does) it folds on every tick: folds running at once are still
// exact, each adding what it deletes.
type Exporter struct {
	lease Lease
	db    Folder
	log   *slog.Logger
	// lost says the last Keep failed, so that a database away is logged
	// once, not every DBReadInterval.
	lost bool
}

// NewExporter returns an Exporter; its Loop does the work. lease may be
// nil: fold without one.
func NewExporter(lease Lease, db Folder, log *slog.Logger) *Exporter {
	return &Exporter{lease: lease, db: db, log: log}
}

// Loop runs Tick at once and every DBReadInterval until ctx ends, then
// gives the lease up for another replica to take at once.
func (e *Exporter) Loop(ctx context.Context) {
	if e.lease != nil {
		defer e.lease.Release()
	}
	t := time.NewTicker(DBReadInterval)
	defer t.Stop()
	for {
		e.Tick(ctx)
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
		e.log.Warn("could not fold the outcome events into their totals; trying again soon", "err", err)
	}
}
