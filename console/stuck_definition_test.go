package console_test

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/console"
	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/iotdafake"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/iotdaapi"
	n11n "github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/outcome"
	"github.com/cmdtrack/cmdtrack/reconcile"
	"github.com/cmdtrack/cmdtrack/store"
)

// "Stuck" has one meaning (README, "Schema and queries"): the console's
// overview and /stuck, the gauge cmdtrack_commands_stuck and reconcile's
// threshold run all read stuck_commands with the same quiet time, so they
// name the same commands. The fixture puts commands on each edge of it.
func TestStuckHasOneDefinition(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, schema, u := testenv.Schema(t)
	// The default quiet time everywhere: CMDTRACK_RECONCILE_THRESHOLD's.
	const quiet = time.Hour
	// The edges are minutes apart, so that the test may take that long on
	// a busy machine and still see each command on its side.
	const margin = 5 * time.Minute
	now := time.Now().UTC().Truncate(time.Second)
	var horizon time.Duration
	horizon, err := st.StuckHorizon(ctx)
	require.NoError(t, err)

	var items []ingest.Item
	add := func(id, device string, status n11n.Status, quietFor time.Duration) {
		at := now.Add(-quietFor)
		n := &n11n.Notification{CommandID: id, DeviceID: device, Status: status, EventTime: at, Payload: []byte(`{}`)}
		switch status {
		case n11n.Sent:
			n.SentTime = at
		case n11n.Delivered:
			n.DeliveredTime = at
		case n11n.Successful:
			n.ResponseTime = at
		}
		items = append(items, ingest.Item{Source: "amqp:test", Record: n})
	}
	stuck := []string{"sent-past-quiet", "delivered-past-quiet", "pending-past-quiet", "sent-in-horizon", "offline-device"}
	add("sent-past-quiet", "dev-1", n11n.Sent, quiet+margin)
	add("delivered-past-quiet", "dev-1", n11n.Delivered, 5*quiet)
	add("pending-past-quiet", "dev-2", n11n.Pending, 2*quiet)
	add("sent-in-horizon", "dev-1", n11n.Sent, horizon-margin)
	// An offline device explains its command, but the command is stuck all
	// the same: presence is shown beside it, not part of the definition.
	add("offline-device", "dev-off", n11n.Delivered, 2*quiet)
	// Not stuck: quiet too short (the console's old ten minutes took the
	// first), beyond the horizon, final.
	add("sent-within-quiet", "dev-1", n11n.Sent, quiet-margin)
	add("sent-quiet-half-hour", "dev-1", n11n.Sent, 30*time.Minute)
	add("pending-within-quiet", "dev-2", n11n.Pending, quiet-margin)
	add("delivered-past-horizon", "dev-1", n11n.Delivered, horizon+margin)
	add("pending-past-horizon", "dev-2", n11n.Pending, 30*24*time.Hour)
	add("successful", "dev-1", n11n.Successful, 2*quiet)
	add("timed-out", "dev-1", n11n.Timeout, 2*quiet)
	_, err = st.Apply(ctx, items)
	require.NoError(t, err)
	_, err = st.Pool().Exec(ctx, `INSERT INTO device_presence (device_id, status, status_since, last_event_key, last_event_time)
		VALUES ('dev-off', 'OFFLINE', $1, '\x00', $1)`, now.Add(-3*quiet))
	require.NoError(t, err)
	slices.Sort(stuck)

	// The console, as the reader role.
	reader, err := store.Open(ctx, readerURL(t, st, schema, u), store.Options{MaxConns: 4, ReadOnly: true})
	require.NoError(t, err)
	t.Cleanup(reader.Close)
	h, err := console.NewHandler(reader.Pool(), console.Config{Addr: console.DefaultAddr}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	base := newServer(t, h)
	var o struct {
		StuckNow int64 `json:"stuck_now"`
	}
	getJSON(t, base, "/", &o)
	var page struct {
		Count    int64 `json:"count"`
		Commands []struct {
			CommandID string `json:"command_id"`
		} `json:"commands"`
	}
	getJSON(t, base, "/stuck", &page)
	var listed []string
	for _, c := range page.Commands {
		listed = append(listed, c.CommandID)
	}
	slices.Sort(listed)

	// The gauge, as the replica holding the metrics lease exports it.
	reg := prometheus.NewRegistry()
	reg.MustRegister(outcome.NewDBCollector(st, func() bool { return true }, quiet, false, slog.New(slog.DiscardHandler)))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var gauge float64
	for _, mf := range mfs {
		if mf.GetName() == "cmdtrack_commands_stuck" {
			for _, m := range mf.GetMetric() {
				gauge += m.GetGauge().GetValue()
			}
		}
	}

	// Reconcile's threshold run: the commands it asks the API about (the
	// fake knows none of them, so nothing is written).
	api := iotdafake.Start(t)
	client, err := iotdaapi.New(iotdaapi.Config{Endpoint: api.URL, ProjectID: iotdafake.Project, Token: iotdafake.Token, CAFile: api.CAFile})
	require.NoError(t, err)
	r := reconcile.New(client, st, reconcile.Config{Rate: 1000}, slog.New(slog.DiscardHandler),
		reconcile.NewMetrics(prometheus.NewRegistry()))
	_, err = r.Run(ctx, reconcile.Selection{Threshold: quiet}, nil)
	require.NoError(t, err)
	asked := slices.Sorted(maps.Keys(api.AllCalls()))

	got := map[string]any{"overview": o.StuckNow, "/stuck count": page.Count, "/stuck list": listed,
		"gauge": int64(gauge), "reconcile": asked}
	want := map[string]any{"overview": int64(len(stuck)), "/stuck count": int64(len(stuck)), "/stuck list": stuck,
		"gauge": int64(len(stuck)), "reconcile": stuck}
	require.Equal(t, want, got)
}
