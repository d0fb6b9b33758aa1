// Package outcome turns what the store changed into metrics about the
// commands themselves (and the device messages and synchronous calls): how
// many finished, and how, how long each stage of a command's lifecycle
// took, and, from the database, how many are stuck.
//
// The counts of finished commands, messages and calls are the database's
// (store.OutcomeTotals):
// the merge writes them in the statement that changes the row, whoever runs
// it (a worker, cmdtrack replay, cmdtrack reconcile), and one replica
// exports them (DBCollector). The stage histograms are this process's, fed
// by store.Options.OnChange, which only the transaction that changed a row
// is told of, after its commit: a redelivered or late notification that
// changes nothing observes nothing, a batch rolled back observes nothing,
// and two replicas never observe the same change; the repairs of the
// command-line tools observe none.
package outcome

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cmdtrack/cmdtrack/store"
)

// StageBuckets fit IoTDA's scale: a command answered in a second, and one a
// sleeping device picks up after days (send strategies allow up to 48 h).
var StageBuckets = []float64{
	0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
	2 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 48 * 3600, 7 * 24 * 3600,
}

// The stages of a command's life, as cmdtrack_command_stage_seconds labels them.
const (
	StageCreatedSent       = "created_sent"
	StageSentDelivered     = "sent_delivered"
	StageDeliveredResponse = "delivered_response"
	StageCreatedFinal      = "created_final"
)

// Metrics are the stage histograms.
type Metrics struct {
	stages [4]prometheus.Observer
}

// NewMetrics creates the series and registers them on reg (nil:
// unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{}
	stage := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "cmdtrack_command_stage_seconds",
		Help:    "Time a command took for a stage of its life (created_sent, sent_delivered, delivered_response, created_final), observed once per command, when both ends are first known, by the worker that wrote it.",
		Buckets: StageBuckets,
	}, []string{"stage"})
	for i, s := range []string{StageCreatedSent, StageSentDelivered, StageDeliveredResponse, StageCreatedFinal} {
		m.stages[i] = stage.WithLabelValues(s)
	}
	if reg != nil {
		reg.MustRegister(stage)
	}
	return m
}

// Record observes what one committed batch changed. It is a store.ChangeFunc.
func (m *Metrics) Record(changes []store.Change) {
	for i := range changes {
		c := &changes[i]
		before, after := &c.Before, &c.After
		wasFinal := c.Existed && before.Final()
		m.stage(0, before.Created && before.Sent, after.Created, after.Sent)
		m.stage(1, before.Sent && before.Delivered, after.Sent, after.Delivered)
		m.stage(2, before.Delivered && before.Response, after.Delivered, after.Response)
		var finalAfter time.Time
		if after.Final() {
			finalAfter = after.LastEvent
		}
		m.stage(3, before.Created && wasFinal, after.Created, finalAfter)
	}
}

// stage observes a stage the first time both its ends are known: known
// says whether they both were before the change.
func (m *Metrics) stage(i int, known bool, from, to time.Time) {
	if known || from.IsZero() || to.IsZero() {
		return
	}
	m.stages[i].Observe(max(0, to.Sub(from).Seconds()))
}
