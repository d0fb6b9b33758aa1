//go:build restart

package main_test

// The failover tests drive the highly available PostgreSQL of
// scripts/testenv.sh (ha-up: a pg_auto_failover monitor and two nodes with
// synchronous replication, apart from the shared cluster), failing it over
// and killing its primary, so they run in `make test`'s serial step too.

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/store"
)

// TestRestartFailover streams ~300 notifications a second to a worker whose
// CMDTRACK_DATABASE_URL lists both nodes with
// target_session_attrs=read-write, performs a planned failover and then
// kills the new primary node mid-stream (its keeper and its PostgreSQL, so
// that the monitor must promote the other; the dead node then rejoins as the
// standby): each moves the primary to the other node, every notification is
// stored exactly, nothing is dead-lettered, every failed write was
// classified (none "other"), and the worker is ready again.
func TestRestartFailover(t *testing.T) {
	started := time.Now()
	haURL, _ := testenv.HA(t)
	first, err := testenv.HAPrimary(t.Context(), haURL)
	require.NoError(t, err)
	_, schema, dbURL := testenv.SchemaAt(t, haURL)
	q := testenv.Queue(t)
	pub := testenv.NewPublisher(t, q)
	s := simulate.Generate(simulate.Config{Commands: 2200, Seed: 53, OutOfOrder: 1, Duplicate: 0.1})
	f := &fixture{dbURL: dbURL, amqpURL: testenv.AMQPURL(t), queue: q}
	// The worker's own retry bounds, as shipped: the failover must not
	// depend on a test's tuning.
	w := testenv.StartWorker(t, f.env("CMDTRACK_DB_RETRY_MIN", "200ms", "CMDTRACK_DB_RETRY_MAX", "10s"))
	w.WaitReady(30 * time.Second)

	// The failover and the kill happen while the stream flows; this
	// goroutine may not fail the test itself, so it reports.
	type step struct {
		name    string
		took    time.Duration
		out     string
		primary string // after the step, asked of the nodes
		err     error
	}
	steps := make(chan step, 2)
	go func() {
		defer close(steps)
		time.Sleep(5 * time.Second) // the stream is flowing and being stored
		for _, cmd := range []string{"ha-failover", "ha-kill-primary"} {
			start := time.Now()
			out, err := testenv.HAScript(cmd)
			s := step{name: cmd, took: time.Since(start), out: strings.TrimSpace(out), err: err}
			if err == nil {
				s.primary, s.err = testenv.HAPrimary(context.Background(), haURL)
			}
			steps <- s
			if s.err != nil {
				return
			}
			time.Sleep(5 * time.Second) // a stretch of quiet between the two
		}
	}()

	// 30 messages every 100 ms: about 300 a second, for about 30 s.
	const chunk = 30
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < len(s.Messages); i += chunk {
		<-tick.C
		pub.SendAll(t, bodies(s.Messages[i:min(i+chunk, len(s.Messages))]))
	}
	streamed := time.Since(started)
	primary := first
	for st := range steps {
		require.NoError(t, st.err, st.name)
		t.Logf("%s took %s: primary %s, then %s %s", st.name, st.took.Round(100*time.Millisecond), primary, st.primary, st.out)
		require.NotEqual(t, primary, st.primary, "%s left the primary where it was", st.name)
		if st.name == "ha-kill-primary" {
			// The script's own account agrees: the node it killed was the
			// primary, and the monitor promoted the other.
			require.Contains(t, st.out, "killed="+primary+" promoted="+st.primary+" ")
		}
		primary = st.primary
	}

	// The verifying pool is opened after the chaos, so that it has no
	// connection to a node that went away.
	st, err := store.Open(context.Background(), haURL, store.Options{MaxConns: 4, Schema: schema})
	require.NoError(t, err)
	defer st.Close()
	testenv.WaitStored(t, st.Pool(), s, 2*time.Minute)
	w.WaitReady(60 * time.Second)
	require.Positive(t, metricSum(t, w, "cmdtrack_database_errors_total"), "the worker's writes failed over")
	require.Zero(t, metric(t, w, `cmdtrack_database_errors_total{class="other"}`), "every failed write was classified")
	require.Zero(t, metricSum(t, w, "cmdtrack_messages_dead_lettered_total"))
	stopCleanly(t, w)
	testenv.VerifyStream(t, st.Pool(), s, q)
	for _, r := range w.Logs() {
		if r["msg"] == "database writes recovered" {
			t.Logf("the worker's writes failed for %s (%v writes)", time.Duration(r["failing_for"].(float64)).Round(100*time.Millisecond), r["failed_writes"])
		}
	}
	t.Logf("%d messages streamed in %s; the test took %s", len(s.Messages), streamed.Round(time.Second), time.Since(started).Round(time.Second))
}

// TestRestartFailoverConsoleOnStandby serves the console from the HA
// pair's standby (target_session_attrs=prefer-standby): its read-only
// transactions work there, and it is on the standby.
func TestRestartFailoverConsoleOnStandby(t *testing.T) {
	haURL, standbyURL := testenv.HA(t)
	st, schema, _ := testenv.SchemaAt(t, haURL)
	s := simulate.Generate(simulate.Config{Commands: 20, Seed: 59})
	var items []ingest.Item
	for _, b := range bodies(s.Messages) {
		items = append(items, ingest.Classify(b, "test", time.Now(), ingest.Limits{MaxBodyBytes: 1 << 20}))
	}
	_, err := st.Apply(context.Background(), items)
	require.NoError(t, err)
	require.Equal(t, len(s.Commands), testenv.Count(t, st.Pool(), `SELECT count(*) FROM device_commands`))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	app := testenv.Name("console_")
	testenv.StartWorker(t, map[string]string{
		"CMDTRACK_DATABASE_URL": standbyURL + "&search_path=" + schema + "&application_name=" + app,
		"CMDTRACK_CONSOLE_ADDR": addr,
	}, "console")

	id := s.Commands[0].ID
	var body string
	shown := assert.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/commands/" + id)
		if err != nil {
			body = err.Error()
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = resp.Status + ": " + string(b)
		// 404 until the standby has replayed the rows.
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond)
	require.True(t, shown, "the console on the standby never showed %s: %s", id, body)
	require.Contains(t, body, id)

	// target_session_attrs=standby finds the standby, wherever it is.
	standby, err := store.Open(context.Background(), strings.Replace(standbyURL, "prefer-standby", "standby", 1), store.Options{MaxConns: 1})
	require.NoError(t, err)
	defer standby.Close()
	require.Positive(t, testenv.Count(t, standby.Pool(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app),
		"the console's connections are on the standby")
}
