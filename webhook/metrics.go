package webhook

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cmdtrack/cmdtrack/store"
)

// The results of an attempt, as cmdtrack_webhook_deliveries_total labels
// them.
const (
	resultDelivered = "delivered"
	resultRetried   = "retried"
	resultFailed    = "failed"
)

// Metrics are the deliveries' Prometheus series, registered on the
// Registerer given to NewMetrics, never on the global registry.
type Metrics struct {
	deliveries *prometheus.CounterVec
	attempt    *prometheus.HistogramVec
	// lagging reads lags at each scrape: whether the deliverer's claims
	// wait for a backlog now, not when its last claim ran (a slow
	// endpoint's claims wait for its workers).
	lagging prometheus.GaugeFunc
	lags    atomic.Pointer[func() bool]
}

// NewMetrics creates the series and registers them on reg (nil:
// unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_webhook_deliveries_total",
			Help: "Webhook delivery attempts by this replica, by endpoint and result: delivered (a 2xx), retried (anything else; tried again later), failed (the last attempt within CMDTRACK_WEBHOOK_RETRY_FOR; kept for cmdtrack webhooks replay).",
		}, []string{"endpoint", "result"}),
		attempt: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cmdtrack_webhook_attempt_seconds",
			Help:    "Time from a webhook request's start to its answer (or its failure), by endpoint.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
	}
	m.lagging = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cmdtrack_webhook_lagging",
		Help: "1 while this replica's webhook claims take only the events due for CMDTRACK_WEBHOOK_BACKLOG_LAG, because its data path is draining a backlog (full batches); else 0.",
	}, func() float64 {
		if f := m.lags.Load(); f != nil && (*f)() {
			return 1
		}
		return 0
	})
	if reg != nil {
		reg.MustRegister(m.deliveries, m.attempt, m.lagging)
	}
	return m
}

// endpoint makes endpoint's series exist at zero, for rate() to see the
// first one.
func (m *Metrics) endpoint(name string) {
	for _, r := range []string{resultDelivered, resultRetried, resultFailed} {
		m.deliveries.WithLabelValues(name, r)
	}
	m.attempt.WithLabelValues(name)
}

// Backlogs reads the outboxes' state (a *store.Store).
type Backlogs interface {
	WebhookBacklogs(ctx context.Context) ([]store.WebhookBacklog, error)
}

// BacklogReadInterval is how often at most the BacklogCollector reads the
// database.
const BacklogReadInterval = 10 * time.Second

// BacklogCollector exports the outboxes' size and age, read from the
// database: cmdtrack_webhook_outbox_events{endpoint,state} and
// cmdtrack_webhook_outbox_oldest_seconds{endpoint}. Like outcome's
// DBCollector, it reads at most once per BacklogReadInterval (scrapes in
// between get the last reading, the age still taken at the scrape), and
// only on the replica leader says exports the database's metrics: every
// replica would read the same.
type BacklogCollector struct {
	db        Backlogs
	endpoints []string
	leader    func() bool
	log       *slog.Logger
	timeout   time.Duration
	now       func() time.Time

	mu     sync.Mutex
	readAt time.Time // zero: the last read failed, or there was none
	rows   map[string]store.WebhookBacklog

	events, oldest *prometheus.Desc
}

// NewBacklogCollector reads db when scraped on the leader (leader nil:
// always). Each of endpoints has its series, zero when it has no backlog.
func NewBacklogCollector(db Backlogs, endpoints []string, leader func() bool, log *slog.Logger) *BacklogCollector {
	return &BacklogCollector{
		db: db, endpoints: endpoints, leader: leader, log: log, timeout: 5 * time.Second, now: time.Now,
		events: prometheus.NewDesc("cmdtrack_webhook_outbox_events",
			"Webhook events in the outbox, by endpoint and state: pending (to deliver, or being retried) or failed (given up after CMDTRACK_WEBHOOK_RETRY_FOR; cmdtrack webhooks replay sends them again); exported by the replica holding the metrics lease.",
			[]string{"endpoint", "state"}, nil),
		oldest: prometheus.NewDesc("cmdtrack_webhook_outbox_oldest_seconds",
			"Age of the oldest pending webhook event (since its outcome), by endpoint; 0 when none is pending; exported by the replica holding the metrics lease.",
			[]string{"endpoint"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *BacklogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.events
	ch <- c.oldest
}

// Collect implements prometheus.Collector. A failed read is logged and the
// series left out: a gap, rather than a wrong number.
func (c *BacklogCollector) Collect(ch chan<- prometheus.Metric) {
	if c.leader != nil && !c.leader() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.readAt.IsZero() || now.Sub(c.readAt) >= BacklogReadInterval || now.Before(c.readAt) {
		c.read(now)
	}
	if c.readAt.IsZero() {
		return
	}
	names := map[string]bool{}
	emit := func(name string) {
		if names[name] {
			return
		}
		names[name] = true
		b := c.rows[name]
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.GaugeValue, float64(b.Pending), name, "pending")
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.GaugeValue, float64(b.Failed), name, "failed")
		age := 0.0
		if !b.OldestPending.IsZero() {
			age = max(0, now.Sub(b.OldestPending).Seconds())
		}
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age, name)
	}
	for _, name := range c.endpoints {
		emit(name)
	}
	// An endpoint no longer configured still has its events shown until
	// they are replayed elsewhere or pruned.
	for name := range c.rows {
		emit(name)
	}
}

func (c *BacklogCollector) read(now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	c.readAt = time.Time{}
	rows, err := c.db.WebhookBacklogs(ctx)
	if err != nil {
		c.log.Warn("could not read the webhook outbox for /metrics", "err", err)
		return
	}
	c.rows = make(map[string]store.WebhookBacklog, len(rows))
	for _, b := range rows {
		c.rows[b.Endpoint] = b
	}
	c.readAt = now
}
