package reconcile

import "github.com/prometheus/client_golang/prometheus"

// Metrics are reconcile's Prometheus series, registered on the Registerer
// given to NewMetrics, never on the global registry.
type Metrics struct {
	runs      prometheus.Counter
	checked   prometheus.Counter
	outcomes  *prometheus.CounterVec
	messages  *prometheus.CounterVec
	apiErrors *prometheus.CounterVec
}

// NewMetrics creates the series and registers them on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		runs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cmdtrack_reconcile_runs_total", Help: "Reconcile runs started (with the lock held).",
		}),
		checked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cmdtrack_reconcile_checked_total", Help: "Commands and device messages checked against IoTDA's API.",
		}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_reconcile_commands_total", Help: "Checked commands by outcome: updated, unchanged, unknown (the API does not know it), failed.",
		}, []string{"outcome"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_reconcile_messages_total", Help: "Checked device messages by outcome: updated, unchanged, unknown (the API does not know it), failed.",
		}, []string{"outcome"}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cmdtrack_reconcile_api_errors_total", Help: "Failed API calls (retries included), by class: auth, rate_limited, unavailable, bad_response, endpoint, rejected.",
		}, []string{"class"}),
	}
	for _, o := range []Outcome{Updated, Unchanged, Unknown, Failed} {
		m.outcomes.WithLabelValues(string(o))
		m.messages.WithLabelValues(string(o))
	}
	if reg != nil {
		reg.MustRegister(m.runs, m.checked, m.outcomes, m.messages, m.apiErrors)
	}
	return m
}

func (m *Metrics) count(o Outcome) {
	m.checked.Inc()
	m.outcomes.WithLabelValues(string(o)).Inc()
}

func (m *Metrics) countMessage(o Outcome) {
	m.checked.Inc()
	m.messages.WithLabelValues(string(o)).Inc()
}
