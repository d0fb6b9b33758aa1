package outcome

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cmdtrack/cmdtrack/notification"
)

// Database is what the database gauges read.
type Database interface {
	Stuck(ctx context.Context, before time.Time) (map[notification.Status]int64, error)
	NewestEvent(ctx context.Context) (time.Time, error)
}

// DBCollector exports what only the database knows, at scrape time: the
// commands stuck now, by status, and the age of the newest stored
// notification. Every replica would read the same numbers, so only one
// exports them: the one holding upkeep's lock (leader says whether this
// replica does); the others export nothing.
//
// It reads the database at most once per DBReadInterval: scrapes in between
// (a second Prometheus, a person with curl, a benchmark polling for its end)
// get the last reading, the age still taken at the scrape. Counting the
// stuck commands reads every open command's index entry, and make bench's
// runner scrapes 50 times a second near the end of a drain.
type DBCollector struct {
	db         Database
	leader     func() bool
	stuckAfter time.Duration
	timeout    time.Duration
	log        *slog.Logger
	now        func() time.Time

	mu       sync.Mutex
	readAt   time.Time // zero: the last read failed, or there was none
	counts   map[notification.Status]int64
	newestAt time.Time

	stuck, newest *prometheus.Desc
}

// DBReadInterval is how often at most the collector reads the database.
const DBReadInterval = 10 * time.Second

// NewDBCollector reads db when scraped on the leader. A command is stuck
// when it is not final and its last notification is older than stuckAfter.
func NewDBCollector(db Database, leader func() bool, stuckAfter time.Duration, log *slog.Logger) *DBCollector {
	return &DBCollector{
		db: db, leader: leader, stuckAfter: stuckAfter, timeout: 5 * time.Second, log: log, now: time.Now,
		stuck: prometheus.NewDesc("cmdtrack_commands_stuck",
			"Commands not final (PENDING, SENT, DELIVERED) whose last notification is older than CMDTRACK_RECONCILE_THRESHOLD, by status; exported by the replica holding upkeep's lock.",
			[]string{"status"}, nil),
		newest: prometheus.NewDesc("cmdtrack_newest_notification_age_seconds",
			"Age of the newest notification stored (its event time); exported by the replica holding upkeep's lock.",
			nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *DBCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.stuck
	ch <- c.newest
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
}

// read takes both readings, or none (readAt zero).
func (c *DBCollector) read(now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	c.readAt = time.Time{}
	stuck, err := c.db.Stuck(ctx, now.Add(-c.stuckAfter))
	if err != nil {
		c.log.Warn("could not count stuck commands for /metrics", "err", err)
		return
	}
	at, err := c.db.NewestEvent(ctx)
	if err != nil {
		c.log.Warn("could not read the newest notification's time for /metrics", "err", err)
		return
	}
	c.counts, c.newestAt, c.readAt = stuck, at, now
}
