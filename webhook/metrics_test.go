package webhook_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/store"
	"github.com/cmdtrack/cmdtrack/webhook"
)

func TestDeliveryMetrics(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	var once sync.Once
	rc.setAnswer(func(w http.ResponseWriter, _ *http.Request, _ delivery) {
		code := http.StatusNoContent
		once.Do(func() { code = http.StatusInternalServerError })
		w.WriteHeader(code)
	})
	f := newFakeOutbox()
	f.add("hooks", store.KindFinished, "c1", time.Now())
	f.add("hooks", store.KindFinished, "c2", time.Now().Add(-48*time.Hour)) // fails for good if first
	reg := prometheus.NewRegistry()
	d, err := webhook.New(f, rows, webhook.Config{
		Endpoints:    []webhook.Endpoint{{Name: "hooks", URL: rc.srv.URL, Secrets: []string{secret}}},
		PollInterval: 5 * time.Millisecond, BackoffMin: time.Millisecond, BackoffMax: time.Millisecond, UserAgent: "cmdtrack/test",
	}, slog.New(slog.DiscardHandler), webhook.NewMetrics(reg))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	waitFor(t, f, "both settled", func() bool {
		rs := f.snapshot()
		return len(rs) == 0 || len(rs) == 1 && rs[0].state == "failed"
	})
	cancel()
	<-done
	rc.check()
	delivered := testutil.ToFloat64(webhookCounter(t, reg, "delivered"))
	retried := testutil.ToFloat64(webhookCounter(t, reg, "retried"))
	failed := testutil.ToFloat64(webhookCounter(t, reg, "failed"))
	require.Equal(t, 1.0, retried+failed, "the one 500")
	require.Equal(t, 2.0-failed, delivered)
	require.Equal(t, 3, testutil.CollectAndCount(reg, "cmdtrack_webhook_deliveries_total"))
	require.Equal(t, 1, testutil.CollectAndCount(reg, "cmdtrack_webhook_attempt_seconds"))
}

// webhookCounter is the deliveries counter of endpoint "hooks" with result.
func webhookCounter(t *testing.T, reg *prometheus.Registry, result string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "cmdtrack_webhook_deliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["endpoint"] == "hooks" && labels["result"] == result {
				c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
				c.Add(m.GetCounter().GetValue())
				return c
			}
		}
	}
	t.Fatalf("no series for %s", result)
	return nil
}

type fakeBacklogs struct {
	mu    sync.Mutex
	reads int
	rows  []store.WebhookBacklog
	err   error
}

func (f *fakeBacklogs) WebhookBacklogs(context.Context) ([]store.WebhookBacklog, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return f.rows, f.err
}

func TestBacklogCollector(t *testing.T) {
	db := &fakeBacklogs{rows: []store.WebhookBacklog{
		{Endpoint: "billing", Pending: 12, OldestPending: time.Now().Add(-90 * time.Second), Failed: 3},
		{Endpoint: "gone", Failed: 1}, // no longer configured: still shown
	}}
	leader := true
	c := webhook.NewBacklogCollector(db, []string{"billing", "idle"}, func() bool { return leader }, slog.New(slog.DiscardHandler))
	now := time.Now()
	webhook.SetBacklogClock(c, func() time.Time { return now })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP cmdtrack_webhook_outbox_events Webhook events in the outbox, by endpoint and state: pending (to deliver, or being retried) or failed (given up after CMDTRACK_WEBHOOK_RETRY_FOR; cmdtrack webhooks replay sends them again); exported by the replica holding the metrics lease.
# TYPE cmdtrack_webhook_outbox_events gauge
cmdtrack_webhook_outbox_events{endpoint="billing",state="failed"} 3
cmdtrack_webhook_outbox_events{endpoint="billing",state="pending"} 12
cmdtrack_webhook_outbox_events{endpoint="gone",state="failed"} 1
cmdtrack_webhook_outbox_events{endpoint="gone",state="pending"} 0
cmdtrack_webhook_outbox_events{endpoint="idle",state="failed"} 0
cmdtrack_webhook_outbox_events{endpoint="idle",state="pending"} 0
`), "cmdtrack_webhook_outbox_events"))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	ages := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "cmdtrack_webhook_outbox_oldest_seconds" {
			for _, m := range mf.GetMetric() {
				ages[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	require.InDelta(t, 90, ages["billing"], 60, "the age, taken at the scrape")
	require.Zero(t, ages["idle"])
	require.Zero(t, ages["gone"])
	require.Equal(t, 1, db.reads, "two scrapes within the interval read the database once")

	leader = false
	require.Zero(t, testutil.CollectAndCount(c), "only the leader exports")

	leader = true
	db.err = errors.New("connection refused")
	require.Equal(t, 9, testutil.CollectAndCount(c), "the last reading, within the interval")
	now = now.Add(webhook.BacklogReadInterval)
	require.Zero(t, testutil.CollectAndCount(c), "a failed read is a gap")
	require.Equal(t, 2, db.reads)
}

// cmdtrack_webhook_lagging says, at each scrape, whether the claims wait
// for a backlog now: it does not wait for a claim to run (a slow
// endpoint's claims wait for its workers).
func TestLaggingGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := webhook.NewMetrics(reg)
	lagging := func() float64 {
		t.Helper()
		fams, err := reg.Gather()
		require.NoError(t, err)
		for _, f := range fams {
			if f.GetName() == "cmdtrack_webhook_lagging" {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("cmdtrack_webhook_lagging not exported")
		return 0
	}
	require.Zero(t, lagging(), "no deliverer yet")
	var busy atomic.Bool
	cfg := webhook.Config{Endpoints: []webhook.Endpoint{{Name: "hooks", URL: "http://127.0.0.1:1/", Secrets: []string{newSecret(t)}}},
		Busy: busy.Load, BacklogLag: time.Minute}
	_, err := webhook.New(newFakeOutbox(), rows, cfg, nil, m)
	require.NoError(t, err)
	require.Zero(t, lagging())
	busy.Store(true)
	require.Equal(t, 1.0, lagging(), "busy: the claims wait, whether or not one ran")
	busy.Store(false)
	require.Zero(t, lagging())

	cfg.BacklogLag = 0
	_, err = webhook.New(newFakeOutbox(), rows, cfg, nil, m)
	require.NoError(t, err)
	busy.Store(true)
	require.Zero(t, lagging(), "a lag of 0 never waits")
}
