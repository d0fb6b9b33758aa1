package upkeep

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cmdtrack/cmdtrack/store"
)

// Metrics are upkeep's Prometheus series, registered on the Registerer given
// to NewMetrics, never on the global registry.
type Metrics struct {
	runs     *prometheus.CounterVec
	created  prometheus.Counter
	dropped  prometheus.Counter
	failures *prometheus.CounterVec
	later    prometheus.Gauge
	timeouts prometheus.Counter
}

// NewMetrics creates the series and registers them on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_upkeep_runs_total", Help: "Upkeep runs done with the lock held, by task: partitions (with retention), rollup.",
		}, []string{"task"}),
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cmdtrack_upkeep_partitions_created_total", Help: "History partitions made.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cmdtrack_upkeep_partitions_dropped_total", Help: "History partitions dropped by retention.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_upkeep_failures_total", Help: "Failed upkeep runs, by task and class (store's error classes: privilege, connection, ...).",
		}, []string{"task", "class"}),
		later: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cmdtrack_upkeep_partitions_left_for_later", Help: "History partitions the last run could not make or drop for want of a lock (a long reader); tried again within a minute.",
		}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cmdtrack_upkeep_lock_timeouts_total",
			Help: "Waits for the history's own lock that upkeep gave up (each held the history's writers off for 200 ms): a session holds the history. After one, a run leaves the partitions to drop for later.",
		}),
	}
	for _, task := range []string{taskPartitions, taskRollup} {
		m.runs.WithLabelValues(task)
	}
	if reg != nil {
		reg.MustRegister(m.runs, m.created, m.dropped, m.failures, m.later, m.timeouts)
	}
	return m
}

func (m *Metrics) fail(task string, err error) {
	m.failures.WithLabelValues(task, string(store.ClassifyError(err))).Inc()
}
