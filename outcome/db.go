package outcome

import (
	"context"
	"log/slog"
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
type DBCollector struct {
	db         Database
	leader     func() bool
	stuckAfter time.Duration
	timeout    time.Duration
	log        *slog.Logger
	now        func() time.Time

	stuck, newest *prometheus.Desc
}

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
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	now := c.now()
	if stuck, err := c.db.Stuck(ctx, now.Add(-c.stuckAfter)); err != nil {
		c.log.Warn("could not count stuck commands for /metrics", "err", err)
	} else {
		for _, s := range []notification.Status{notification.Pending, notification.Sent, notification.Delivered} {
			ch <- prometheus.MustNewConstMetric(c.stuck, prometheus.GaugeValue, float64(stuck[s]), string(s))
		}
	}
	if at, err := c.db.NewestEvent(ctx); err != nil {
		c.log.Warn("could not read the newest notification's time for /metrics", "err", err)
	} else if !at.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.newest, prometheus.GaugeValue, max(0, now.Sub(at).Seconds()))
	}
}
