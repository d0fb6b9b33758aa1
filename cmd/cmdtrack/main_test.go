package main_test

// These tests drive the real cmdtrack binary as a separate process against
// the real PostgreSQL and RabbitMQ: they kill it, cut its connections and
// run several at once, then check the database against the stream's
// expected final state.

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/store"
)

type fixture struct {
	st      *store.Store
	dbURL   string
	amqpURL string
	queue   string
	pub     *testenv.Publisher
}

func setup(t *testing.T) *fixture {
	t.Helper()
	st, _, dbURL := testenv.Schema(t)
	q := testenv.Queue(t)
	return &fixture{st: st, dbURL: dbURL, amqpURL: testenv.AMQPURL(t), queue: q, pub: testenv.NewPublisher(t, q)}
}

// env is the worker's environment; overrides replace or add variables.
func (f *fixture) env(overrides ...string) map[string]string {
	e := map[string]string{
		"CMDTRACK_DATABASE_URL":       f.dbURL,
		"CMDTRACK_AMQP_URL":           f.amqpURL,
		"CMDTRACK_AMQP_QUEUE":         f.queue,
		"CMDTRACK_AMQP_RECONNECT_MIN": "100ms",
		"CMDTRACK_AMQP_RECONNECT_MAX": "2s",
		"CMDTRACK_DB_RETRY_MIN":       "100ms",
		"CMDTRACK_DB_RETRY_MAX":       "3s",
		"CMDTRACK_SHUTDOWN_GRACE":     "10s",
	}
	for i := 0; i+1 < len(overrides); i += 2 {
		e[overrides[i]] = overrides[i+1]
	}
	return e
}

func (f *fixture) count(t *testing.T, query string) int {
	t.Helper()
	return testenv.Count(t, f.st.Pool(), query)
}

func (f *fixture) waitStored(t *testing.T, s *simulate.Stream, within time.Duration) {
	t.Helper()
	testenv.WaitStored(t, f.st.Pool(), s, within)
}

func (f *fixture) verify(t *testing.T, s *simulate.Stream) {
	t.Helper()
	testenv.VerifyStream(t, f.st.Pool(), s, f.queue)
}

func bodies(msgs []simulate.Message) [][]byte { return simulate.Bodies(msgs) }

// waitConsumed waits until the workers between them have received at least
// published messages and hold none unsettled. waitStored alone returns once
// every distinct notification is in the database, which can be before the
// stream's last duplicates have left the queue: stopping the workers then
// leaves them there for VerifyStream's empty-queue check (TestReplicas
// failed so in CI).
func waitConsumed(t *testing.T, published int, within time.Duration, workers ...*testenv.Worker) {
	t.Helper()
	require.Eventually(t, func() bool {
		var received, unsettled float64
		for _, w := range workers {
			received += metricSum(t, w, "cmdtrack_messages_received_total")
			unsettled += metric(t, w, "cmdtrack_messages_unsettled")
		}
		return received >= float64(published) && unsettled == 0
	}, within, 50*time.Millisecond, "%d messages published, not all received and settled", published)
}

// metricSum adds up every sample of a series (all label values).
func metricSum(t *testing.T, w *testenv.Worker, name string) float64 {
	t.Helper()
	code, body := w.Get("/metrics")
	require.Equal(t, 200, code)
	var sum float64
	for _, m := range regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(name)+`(?:\{[^}]*\})? (\S+)$`).FindAllStringSubmatch(body, -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		require.NoError(t, err)
		sum += v
	}
	return sum
}

// metric reads one sample from the worker's /metrics (0 if absent).
func metric(t *testing.T, w *testenv.Worker, series string) float64 {
	t.Helper()
	code, body := w.Get("/metrics")
	require.Equal(t, 200, code)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

// TestWorkerStoresStreamAndStopsOnSIGTERM is the plain path: a backlog with
// disorder, duplicates, poison and foreign messages; health endpoints and
// metrics; a clean exit 0 on SIGTERM with nothing left unsettled.
func TestWorkerStoresStreamAndStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s := simulate.Generate(simulate.Config{Commands: 600, Seed: 11, OutOfOrder: 1, Duplicate: 0.1, Poison: 0.02, Foreign: 0.02})
	f.pub.SendAll(t, bodies(s.Messages))

	w := testenv.StartWorker(t, f.env())
	w.WaitReady(30 * time.Second)
	code, _ := w.Get("/healthz")
	require.Equal(t, 200, code)
	f.waitStored(t, s, time.Minute)
	require.Eventually(t, func() bool {
		return metricSum(t, w, "cmdtrack_messages_applied_total")+metric(t, w, "cmdtrack_messages_skipped_total") >=
			float64(len(s.Messages)-s.Poison*2) // duplicates of poison count once or twice
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, float64(1), metric(t, w, "cmdtrack_broker_connected"))

	stopCleanly(t, w)
	require.Empty(t, w.LogsAtLeast(slog.LevelError))
	f.verify(t, s)
}

// TestSystemdNotify gives the worker a real NOTIFY_SOCKET (a unix datagram
// socket) and a watchdog, and reads what it says: READY=1 once it works,
// WATCHDOG=1 pings, STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	t.Parallel()
	f := setup(t)
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	defer conn.Close()
	got := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- string(buf[:n])
		}
	}()
	w := testenv.StartWorker(t, f.env("NOTIFY_SOCKET", sock, "WATCHDOG_USEC", "300000"))
	next := func() string {
		select {
		case m := <-got:
			return m
		case <-time.After(20 * time.Second):
			t.Fatal("no notify message within 20s")
			return ""
		}
	}
	require.Equal(t, "READY=1", next())
	pings := 0
	for pings < 3 {
		require.Equal(t, "WATCHDOG=1", next())
		pings++
	}
	w.Signal(syscall.SIGTERM)
	for {
		m := next()
		if m == "WATCHDOG=1" {
			continue
		}
		require.Equal(t, "STOPPING=1", m)
		break
	}
	require.Equal(t, 0, w.Wait(20*time.Second))
}

// TestSeveralQueues consumes two queues at once, one link each, and stores
// a stream spread over both.
func TestSeveralQueues(t *testing.T) {
	t.Parallel()
	f := setup(t)
	q2 := testenv.Queue(t)
	pub2 := testenv.NewPublisher(t, q2)
	s := simulate.Generate(simulate.Config{Commands: 300, Seed: 37, OutOfOrder: 1, Duplicate: 0.1})
	half := len(s.Messages) / 2
	f.pub.SendAll(t, bodies(s.Messages[:half]))
	pub2.SendAll(t, bodies(s.Messages[half:]))
	w := testenv.StartWorker(t, f.env("CMDTRACK_AMQP_QUEUE", f.queue+","+q2))
	w.WaitReady(30 * time.Second)
	f.waitStored(t, s, time.Minute)
	require.Greater(t, metric(t, w, fmt.Sprintf(`cmdtrack_messages_received_total{queue=%q}`, q2)), float64(0))
	stopCleanly(t, w)
	f.verify(t, s)
	testenv.RequireQueueEmpty(t, q2)
}
