package upkeep

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cmdtrack/cmdtrack/store"
)

// Metrics are upkeep's Prometheus series, registered on the Registerer given
// to NewMetrics, never on the global registry.
type Metrics struct {
	runs     *prometheus.CounterVec
	created  *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	failures *prometheus.CounterVec
	later    *prometheus.GaugeVec
	timeouts *prometheus.CounterVec
}

// NewMetrics creates the series and registers them on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_upkeep_runs_total", Help: "Upkeep runs done with the lock held, by task: partitions (with retention), rollup.",
		}, []string{"task"}),
		created: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_upkeep_partitions_created_total", Help: "History partitions made, by history: command, message.",
		}, []string{"history"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_upkeep_partitions_dropped_total", Help: "History partitions dropped by retention, by history: command, message.",
		}, []string{"history"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_upkeep_failures_total", Help: "Failed upkeep runs, by task and class (store's error classes: privilege, connection, ...).",
		}, []string{"task", "class"}),
		later: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cmdtrack_upkeep_partitions_left_for_later", Help: "History partitions the last run could not make or drop for want of a lock (a long reader), by history; tried again within a minute.",
		}, []string{"history"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_upkeep_lock_timeouts_total",
			Help: "Waits for a history's own lock that upkeep gave up (each held that history's writers off for 200 ms), by history: a session holds the history. After one, a run leaves that history's partitions to drop for later.",
		}, []string{"history"}),
	}
	for _, task := range []string{taskPartitions, taskRollup} {
		m.runs.WithLabelValues(task)
	}
	for _, h := range store.HistoryNames() {
		m.created.WithLabelValues(h)
		m.dropped.WithLabelValues(h)
		m.later.WithLabelValues(h)
		m.timeouts.WithLabelValues(h)
	}
	if reg != nil {
		reg.MustRegister(m.runs, m.created, m.dropped, m.failures, m.later, m.timeouts)
	}
	return m
}

func (m *Metrics) fail(task string, err error) {
	m.failures.WithLabelValues(task, string(store.ClassifyError(err))).Inc()
}
