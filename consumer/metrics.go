package consumer

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the AMQP source's Prometheus series. They are registered on the
// Registerer given to NewMetrics, never on the global registry.
type Metrics struct {
	received   *prometheus.CounterVec
	unsettled  prometheus.Gauge
	connected  prometheus.Gauge
	reconnects prometheus.Counter
	outages    prometheus.Counter

	heldBytes      prometheus.Gauge
	queueAttached  *prometheus.GaugeVec
	attachFailures *prometheus.CounterVec
	presettled     *prometheus.CounterVec
	backlogGaps    *prometheus.CounterVec
}

// NewMetrics creates the series and registers them on reg (nil: unregistered,
// as tests that do not look at metrics want).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_messages_received_total", Help: "Messages received from the broker, by queue.",
		}, []string{"queue"}),
		unsettled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cmdtrack_messages_unsettled", Help: "Messages received and not yet settled or given back.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cmdtrack_broker_connected", Help: "1 while receiver links are attached.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cmdtrack_broker_reconnects_total", Help: "Broker connections lost or failed to open.",
		}),
		outages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cmdtrack_broker_outages_total", Help: "Times the broker connection was lost (one per outage, however many re-dials it took).",
		}),
		heldBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cmdtrack_messages_held_bytes", Help: "Bytes of the messages received and not yet settled or given back.",
		}),
		queueAttached: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cmdtrack_queue_attached", Help: "1 while the queue's receiver link is attached, by queue.",
		}, []string{"queue"}),
		attachFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_queue_failures_total", Help: "Failed attaches and lost links, by queue.",
		}, []string{"queue"}),
		presettled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_messages_presettled_total", Help: "Messages the broker sent already settled (delivered at most once), by queue.",
		}, []string{"queue"}),
		backlogGaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_backlog_gaps_total",
			Help: "Times a queue went unconsumed longer than the platform keeps its backlog (CMDTRACK_AMQP_BACKLOG_RETENTION): notifications may have been lost; by queue and when it was seen (lost: on attaching again, at_risk: while messages were held).",
		}, []string{"queue", "when"}),
	}
	if reg != nil {
		reg.MustRegister(m.received, m.unsettled, m.connected, m.reconnects, m.outages,
			m.heldBytes, m.queueAttached, m.attachFailures, m.presettled, m.backlogGaps)
	}
	return m
}
