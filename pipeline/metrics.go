package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cmdtrack/cmdtrack/ingest"
)

// Metrics are the pipeline's Prometheus series. They are registered on the
// Registerer given to NewMetrics, never on the global registry.
type Metrics struct {
	applied *prometheus.CounterVec
	// appliedKind is applied's counter for each kind, looked up once: the
	// pipeline counts every message.
	appliedKind    map[string]prometheus.Counter
	skipped        prometheus.Counter
	deadLettered   *prometheus.CounterVec
	batches        prometheus.Counter
	batchSize      prometheus.Histogram
	applySeconds   prometheus.Histogram
	lag            prometheus.Histogram
	dbErrors       *prometheus.CounterVec
	settleFailures prometheus.Counter
	dropped        prometheus.Counter
}

// NewMetrics creates the series and registers them on reg (nil: unregistered,
// as tests that do not look at metrics want).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_messages_applied_total", Help: "Notifications stored and settled, by kind (command, presence, ...).",
		}, []string{"kind"}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cmdtrack_messages_skipped_total", Help: "Notifications of other resources, settled without storing.",
		}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_messages_dead_lettered_total", Help: "Messages stored as dead letters and settled, by reason class.",
		}, []string{"class"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cmdtrack_batches_total", Help: "Batches committed and settled.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cmdtrack_batch_size", Help: "Messages per committed batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cmdtrack_apply_duration_seconds", Help: "Time to write one batch to PostgreSQL (successful attempts).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cmdtrack_event_lag_seconds", Help: "Time from a notification's event_time to its settlement.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 12),
		}),
		dbErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_database_errors_total", Help: "Failed batch writes, by error class.",
		}, []string{"class"}),
		settleFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cmdtrack_settle_failures_total", Help: "Stored messages whose accept could not be sent (they are redelivered).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cmdtrack_messages_dropped_total",
			Help: "HTTP pushes dropped unwritten because their sender stopped waiting (answered 503 or gone; the platform pushes them again).",
		}),
	}
	// Every kind's series exists from the start, at 0, so that a rate over
	// a kind that has not been seen yet is 0, not absent.
	m.appliedKind = make(map[string]prometheus.Counter)
	for _, kind := range ingest.ReceivedKinds() {
		m.appliedKind[kind] = m.applied.WithLabelValues(kind)
	}
	if reg != nil {
		reg.MustRegister(m.applied, m.skipped, m.deadLettered, m.batches, m.batchSize,
			m.applySeconds, m.lag, m.dbErrors, m.settleFailures, m.dropped)
	}
	return m
}
