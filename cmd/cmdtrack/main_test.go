package main_test

// These tests drive the real cmdtrack binary as a separate process against
// the real PostgreSQL and RabbitMQ: they kill it, cut its connections and
// run several at once, then check the database against the stream's
// expected final state.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/consumer"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/pipeline"
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
		return metric(t, w, "cmdtrack_messages_applied_total")+metric(t, w, "cmdtrack_messages_skipped_total") >=
			float64(len(s.Messages)-s.Poison*2) // duplicates of poison count once or twice
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, float64(1), metric(t, w, "cmdtrack_broker_connected"))

	w.Signal(syscall.SIGTERM)
	require.Equal(t, 0, w.Wait(20*time.Second), w.Output()) // 0: stopped cleanly
	require.Empty(t, w.LogsAtLeast(slog.LevelError))
	f.verify(t, s)
}

// TestCrashKill9 kills the worker with SIGKILL at random moments while a
// stream is flowing, five times, restarting it each time. Nothing may be
// lost (a message settled but not stored would be missing for good) and
// nothing duplicated.
func TestCrashKill9(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s := simulate.Generate(simulate.Config{Commands: 1500, Seed: 13, OutOfOrder: 0.3, Duplicate: 0.05, Poison: 0.01})
	published := make(chan struct{})
	go func() {
		defer close(published)
		// Publish in slices so that messages keep arriving across the kills.
		msgs := bodies(s.Messages)
		for len(msgs) > 0 {
			n := min(500, len(msgs))
			f.pub.SendAll(t, msgs[:n])
			msgs = msgs[n:]
			time.Sleep(100 * time.Millisecond)
		}
	}()
	rng := rand.New(rand.NewPCG(13, 1))
	for i := range 5 {
		w := testenv.StartWorker(t, f.env("CMDTRACK_BATCH_SIZE", "64"))
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond)
		w.Signal(syscall.SIGKILL)
		w.Wait(10 * time.Second)
		t.Logf("kill %d: %d history rows so far", i+1, f.count(t, `SELECT count(*) FROM device_command_events`))
	}
	<-published
	w := testenv.StartWorker(t, f.env())
	w.WaitReady(30 * time.Second)
	f.waitStored(t, s, 2*time.Minute)
	w.Signal(syscall.SIGTERM)
	require.Equal(t, 0, w.Wait(20*time.Second))
	f.verify(t, s)
}

// TestBrokerConnectionCut resets the worker's broker connection (as a
// broker restart or a dead network would) and refuses it for a while: the
// worker reports not-ready, re-dials with backoff, logs the outage once and
// its recovery once, and loses nothing.
func TestBrokerConnectionCut(t *testing.T) {
	t.Parallel()
	f := setup(t)
	proxy, viaProxy := testenv.NewProxy(t, f.amqpURL)
	s := simulate.Generate(simulate.Config{Commands: 600, Seed: 17, OutOfOrder: 1, Duplicate: 0.1})
	half := len(s.Messages) / 2
	f.pub.SendAll(t, bodies(s.Messages[:half]))

	w := testenv.StartWorker(t, f.env("CMDTRACK_AMQP_URL", viaProxy, "CMDTRACK_BATCH_SIZE", "32",
		"CMDTRACK_AMQP_BACKLOG_RETENTION", "2s"))
	w.WaitReady(30 * time.Second)
	require.Eventually(t, func() bool { return f.count(t, `SELECT count(*) FROM device_command_events`) > 0 },
		30*time.Second, 20*time.Millisecond)

	proxy.Cut()
	require.Eventually(t, func() bool {
		code, body := w.Get("/readyz")
		return code == 503 && strings.Contains(body, "broker")
	}, 10*time.Second, 50*time.Millisecond, "readiness must report the lost broker")
	f.pub.SendAll(t, bodies(s.Messages[half:]))
	time.Sleep(3 * time.Second) // several failed re-dials
	proxy.Restore(t)

	w.WaitReady(30 * time.Second)
	f.waitStored(t, s, time.Minute)
	require.Equal(t, float64(1), metric(t, w, "cmdtrack_broker_outages_total"), "one outage")
	require.Greater(t, metric(t, w, "cmdtrack_broker_reconnects_total"), float64(1), "re-dialled while it was refused")
	require.Equal(t, float64(1), metric(t, w, "cmdtrack_broker_connected"))
	w.Signal(syscall.SIGTERM)
	require.Equal(t, 0, w.Wait(20*time.Second))
	// The outage outlasted what the platform would keep (2 s here): the
	// worker says notifications may be lost, and how to repair the window.
	require.Equal(t, 1, w.LogCount(consumer.LogBacklogLost))
	f.verify(t, s)
}

// TestDatabaseOutage takes PostgreSQL away from the worker for 30 s while
// notifications keep arriving. The worker must not exit, not spin, not
// dead-letter good messages and not settle what it could not store; it
// catches up by itself when the database is back.
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	f := setup(t)
	proxy, viaProxy := testenv.NewProxy(t, f.dbURL)
	s := simulate.Generate(simulate.Config{Commands: 800, Seed: 19, OutOfOrder: 1, Duplicate: 0.1, Poison: 0.01})
	third := len(s.Messages) / 3
	f.pub.SendAll(t, bodies(s.Messages[:third]))

	w := testenv.StartWorker(t, f.env("CMDTRACK_DATABASE_URL", viaProxy))
	w.WaitReady(30 * time.Second)
	require.Eventually(t, func() bool { return f.count(t, `SELECT count(*) FROM device_command_events`) > 0 },
		30*time.Second, 20*time.Millisecond)

	proxy.Cut()
	outage := time.Now()
	f.pub.SendAll(t, bodies(s.Messages[third:]))
	require.Eventually(t, func() bool { code, _ := w.Get("/readyz"); return code == 503 },
		15*time.Second, 100*time.Millisecond, "readiness must report the lost database")
	// Credit holds the flow: no more than the link's credit is in hand.
	require.Eventually(t, func() bool { return metric(t, w, "cmdtrack_messages_unsettled") > 0 }, 10*time.Second, 50*time.Millisecond)
	require.LessOrEqual(t, metric(t, w, "cmdtrack_messages_unsettled"), float64(1024))
	time.Sleep(time.Until(outage.Add(30 * time.Second)))
	require.False(t, w.Exited(), "the worker exited during the database outage")
	attempts := metric(t, w, `cmdtrack_database_errors_total{class="connection"}`)
	require.Greater(t, attempts, float64(0))
	require.Less(t, attempts, float64(40), "backoff must keep the retries few, not spin")
	proxy.Restore(t)

	f.waitStored(t, s, time.Minute)
	w.WaitReady(15 * time.Second) // writes recovered
	w.Signal(syscall.SIGTERM)
	require.Equal(t, 0, w.Wait(20*time.Second))
	f.verify(t, s) // includes: no good message was dead-lettered
}

// TestReplicas runs three workers on one queue; notifications of the same
// command are spread over them. Rows converge, with no deadlock.
func TestReplicas(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s := simulate.Generate(simulate.Config{Commands: 1500, Seed: 23, OutOfOrder: 1, Duplicate: 0.2, Poison: 0.01})
	var workers []*testenv.Worker
	for range 3 {
		w := testenv.StartWorker(t, f.env("CMDTRACK_BATCH_SIZE", "50", "CMDTRACK_AMQP_CREDIT", "100"))
		workers = append(workers, w)
	}
	for _, w := range workers {
		w.WaitReady(30 * time.Second)
	}
	f.pub.SendAll(t, bodies(s.Messages))
	f.waitStored(t, s, 2*time.Minute)
	for i, w := range workers {
		require.Zero(t, metric(t, w, `cmdtrack_database_errors_total{class="`+string(store.DeadlockError)+`"}`), "worker %d", i)
		require.Zero(t, metricSum(t, w, "cmdtrack_database_errors_total"), "worker %d: no write failed", i)
		w.Signal(syscall.SIGTERM)
	}
	for _, w := range workers {
		require.Equal(t, 0, w.Wait(20*time.Second))
	}
	f.verify(t, s)
}

// TestShutdownDuringDatabaseOutage sends SIGTERM while PostgreSQL is away:
// the worker exits within its grace period, reports that it could not store
// what it held, and settles none of it; a later worker stores everything.
func TestShutdownDuringDatabaseOutage(t *testing.T) {
	t.Parallel()
	f := setup(t)
	proxy, viaProxy := testenv.NewProxy(t, f.dbURL)
	s := simulate.Generate(simulate.Config{Commands: 200, Seed: 29})

	w := testenv.StartWorker(t, f.env("CMDTRACK_DATABASE_URL", viaProxy, "CMDTRACK_SHUTDOWN_GRACE", "2s"))
	w.WaitReady(30 * time.Second)
	proxy.Cut()
	f.pub.SendAll(t, bodies(s.Messages))
	require.Eventually(t, func() bool { return metric(t, w, "cmdtrack_messages_unsettled") > 0 }, 10*time.Second, 50*time.Millisecond)

	start := time.Now()
	w.Signal(syscall.SIGTERM)
	code := w.Wait(15 * time.Second)
	took := time.Since(start)
	require.Equal(t, 1, code, "an incomplete drain is a failure")
	require.Less(t, took, 8*time.Second, "grace 2s, plus closing")
	require.Contains(t, w.Output(), pipeline.ErrGraceRanOut.Error()+" (2s)")
	require.Zero(t, f.count(t, `SELECT count(*) FROM device_command_events`))

	proxy.Restore(t)
	w2 := testenv.StartWorker(t, f.env())
	w2.WaitReady(30 * time.Second)
	f.waitStored(t, s, time.Minute)
	w2.Signal(syscall.SIGTERM)
	require.Equal(t, 0, w2.Wait(20*time.Second))
	f.verify(t, s)
}

// TestReplay puts dead letters in the table as an older, stricter decoder
// would have left them, and runs `cmdtrack replay` while a worker runs.
func TestReplay(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s := simulate.Generate(simulate.Config{Commands: 20, Seed: 31})
	ctx := context.Background()
	for i, m := range s.Messages {
		_, err := f.st.Pool().Exec(ctx, `INSERT INTO dead_letters (source, reason_class, reason, body, body_sha256)
			VALUES ('amqp:old', 'unknown_status', 'older decoder', $1, sha256($1))`, m.Body)
		require.NoError(t, err, "message %d", i)
	}
	stillBad := []string{`{"resource":"device.command.status","event":"update"}`, `not json`,
		`{"resource":"device.property","event":"report","notify_data":{}}`}
	for _, b := range stillBad {
		_, err := f.st.Pool().Exec(ctx, `INSERT INTO dead_letters (source, reason_class, reason, body, body_sha256)
			VALUES ('amqp:old', 'x', 'x', $1::bytea, sha256($1::bytea))`, []byte(b))
		require.NoError(t, err)
	}
	w := testenv.StartWorker(t, f.env())
	w.WaitReady(30 * time.Second)

	out, err := exec.Command(testenv.Binary(t)).CombinedOutput()
	require.Error(t, err, "without configuration the worker refuses to start: %s", out)

	cmd := exec.Command(testenv.Binary(t), "replay")
	cmd.Env = append(cmd.Environ(), "CMDTRACK_DATABASE_URL="+f.dbURL, "CMDTRACK_AMQP_URL=amqp://unused", "CMDTRACK_LOG_FORMAT=text")
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), fmt.Sprintf("%d applied, 1 skipped (other resources), 2 still failing", len(s.Messages)))

	bad, err := simulate.Verify(ctx, f.st.Pool(), s.Commands)
	require.NoError(t, err)
	require.Empty(t, bad)
	require.Equal(t, 2, f.count(t, `SELECT count(*) FROM dead_letters`))
	require.Equal(t, 2, f.count(t, `SELECT count(*) FROM dead_letters WHERE replay_count = 1 AND reason_class <> 'x'`))
	w.Signal(syscall.SIGTERM)
	require.Equal(t, 0, w.Wait(20*time.Second))
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
	w.Signal(syscall.SIGTERM)
	require.Equal(t, 0, w.Wait(20*time.Second))
	f.verify(t, s)
	testenv.RequireQueueEmpty(t, q2)
}

// TestHTTPPush runs the HTTPS push receiver with a token: v5 and legacy
// notifications are stored and answered 200 after the commit, malformed ones
// dead-lettered and answered 400, oversized ones 413, and requests without
// the token 401.
func TestHTTPPush(t *testing.T) {
	t.Parallel()
	f := setup(t)
	certFile, keyFile, pool := selfSignedCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	w := testenv.StartWorker(t, f.env("CMDTRACK_HTTP_ADDR", addr, "CMDTRACK_HTTP_TLS_CERT", certFile,
		"CMDTRACK_HTTP_TLS_KEY", keyFile, "CMDTRACK_HTTP_TOKEN", "s3cret", "CMDTRACK_MAX_BODY_BYTES", "4096"))
	w.WaitReady(30 * time.Second)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	post := func(body string, token string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, "https://"+addr+"/v1.0.0/messageReceiver/cmd", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	seed := func(name string) string {
		b, err := os.ReadFile(filepath.Join("..", "..", "notification", "testdata", name))
		require.NoError(t, err)
		return string(b)
	}
	code, _ := post(seed("seed000.json"), "s3cret")
	require.Equal(t, 200, code)
	code, _ = post(seed("seed001_legacy_cmd_status.json"), "s3cret")
	require.Equal(t, 200, code)
	code, _ = post(`{"notifyType":"messageConfirm","header":{"requestId":"108a9c71462a48e09426e06e844d47ba","from":"/devices/92d3f8da-200a-4143-8d0d-591a7e11de6c","to":"app","status":"executed","timestamp":"20261122T101010Z"},"body":{}}`, "s3cret")
	require.Equal(t, 200, code)
	code, body := post(`{"resource":"device.command.status","event":"update"`, "s3cret")
	require.Equal(t, 400, code)
	require.Contains(t, body, "invalid_json")
	code, _ = post(`{"pad":"`+strings.Repeat("x", 5000)+`"}`, "s3cret")
	require.Equal(t, 413, code)
	code, _ = post(seed("seed000.json"), "")
	require.Equal(t, 401, code)
	code, _ = post(seed("seed000.json"), "wrong")
	require.Equal(t, 401, code)
	resp, err := client.Get("https://" + addr + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 405, resp.StatusCode)

	var status string
	require.NoError(t, f.st.Pool().QueryRow(context.Background(), `SELECT status FROM device_commands WHERE command_id = 'id'`).Scan(&status))
	require.Equal(t, "SUCCESSFUL", status)
	// The v1 callback said SENT, the later acknowledgment "executed".
	require.NoError(t, f.st.Pool().QueryRow(context.Background(),
		`SELECT status FROM device_commands WHERE command_id = '108a9c71462a48e09426e06e844d47ba'`).Scan(&status))
	require.Equal(t, "SUCCESSFUL", status)
	require.Equal(t, 3, f.count(t, `SELECT count(*) FROM device_command_events WHERE source = 'http'`))
	require.Equal(t, 1, f.count(t, `SELECT count(*) FROM dead_letters WHERE source = 'http'`))
	w.Signal(syscall.SIGTERM)
	require.Equal(t, 0, w.Wait(20*time.Second))
	require.NotContains(t, w.Output(), "s3cret")
}

func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestSendCommandLifecycle sends a command with `cmdtrack send` against a
// local server that plays IoTDA's API, then lets status notifications
// complete the same row, arriving before and after the creation record.
func TestSendCommandLifecycle(t *testing.T) {
	t.Parallel()
	f := setup(t)
	var mu sync.Mutex
	var gotPath, gotInstance, gotToken string
	var gotBody map[string]any
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		gotPath, gotInstance, gotToken = r.URL.Path, r.Header.Get("Instance-Id"), r.Header.Get("X-Auth-Token")
		_ = json.NewDecoder(r.Body).Decode(&gotBody)
		if strings.Contains(r.URL.Path, "/devices/nul/") {
			// Paras PostgreSQL cannot store: the command exists, its record cannot.
			_, _ = w.Write([]byte(`{"device_id":"nul","command_id":"cmd-nul","paras":{"v":"\u0000"},"status":"SENT","created_time":"20261122T101010Z","send_strategy":"immediately"}`))
			return
		}
		if strings.Contains(r.URL.Path, "/devices/missing/") {
			w.WriteHeader(404)
			_, _ = w.Write([]byte(`{"error_code":"IOTDA.014000","error_msg":"The device does not exist."}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"device_id":"dev-1","command_id":"cmd-sent-1","service_id":"Switch","command_name":"ON_OFF",
			"send_strategy":"immediately","paras":{"value":"ON"},"expire_time":0,"status":"SENT","created_time":"20261122T101010Z"}`))
	}))
	defer api.Close()

	// A notification that overtakes the creation record.
	note := func(status, at string, extra string) []byte {
		return []byte(`{"resource":"device.command.status","event":"update","event_time":"` + at + `",
			"notify_data":{"header":{"device_id":"dev-1","product_id":"prod-9"},"body":{"command_id":"cmd-sent-1",
			"status":"` + status + `","created_time":"20261122T101010Z"` + extra + `}}}`)
	}
	f.pub.Send(t, note("DELIVERED", "20261122T101012Z", `,"sent_time":"20261122T101011Z","delivered_time":"20261122T101012Z"`))
	w := testenv.StartWorker(t, f.env())
	w.WaitReady(30 * time.Second)
	require.Eventually(t, func() bool { return f.count(t, `SELECT count(*) FROM device_commands`) == 1 }, 20*time.Second, 20*time.Millisecond)

	run := func(args ...string) (string, int) {
		cmd := exec.Command(testenv.Binary(t), append([]string{"send"}, args...)...)
		cmd.Env = append(cmd.Environ(), "CMDTRACK_DATABASE_URL="+f.dbURL, "CMDTRACK_API_ENDPOINT="+api.URL,
			"CMDTRACK_API_PROJECT_ID=proj1", "CMDTRACK_API_INSTANCE_ID=inst1", "CMDTRACK_API_TOKEN=tok", "CMDTRACK_LOG_FORMAT=text")
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := run("-device", "dev-1", "-service", "Switch", "-command", "ON_OFF", "-paras", `{"value":"ON"}`)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "command cmd-sent-1 SENT on device dev-1")
	mu.Lock()
	require.Equal(t, "/v5/iot/proj1/devices/dev-1/async-commands", gotPath)
	require.Equal(t, "inst1", gotInstance)
	require.Equal(t, "tok", gotToken)
	require.Equal(t, "immediately", gotBody["send_strategy"])
	mu.Unlock()

	out, code = run("-device", "missing", "-paras", `{"value":"ON"}`)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "404")
	out, code = run("-device", "nul", "-paras", `{"value":"ON"}`)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "refused to record")
	out, code = run("-device", "bad id!", "-paras", `{"value":"ON"}`)
	require.Equal(t, 2, code, out)
	out, code = run("-device", "dev-1")
	require.Equal(t, 2, code, out)

	f.pub.Send(t, note("SUCCESSFUL", "20261122T101015Z", `,"response_time":"20261122T101015Z","result":{"ok":true}`))
	require.Eventually(t, func() bool {
		return f.count(t, `SELECT count(*) FROM device_commands WHERE status = 'SUCCESSFUL'`) == 1
	}, 20*time.Second, 20*time.Millisecond)
	var service, name, strategy, product string
	var paras string
	var sent, delivered time.Time
	require.NoError(t, f.st.Pool().QueryRow(context.Background(), `SELECT service_id, command_name, send_strategy, paras::text,
		product_id, sent_time, delivered_time FROM device_commands WHERE command_id = 'cmd-sent-1'`).
		Scan(&service, &name, &strategy, &paras, &product, &sent, &delivered))
	require.Equal(t, []string{"Switch", "ON_OFF", "immediately", `{"value": "ON"}`, "prod-9"}, []string{service, name, strategy, paras, product})
	require.Equal(t, time.Date(2026, 11, 22, 10, 10, 11, 0, time.UTC), sent.UTC())
	require.Equal(t, 3, f.count(t, `SELECT count(*) FROM device_command_events WHERE command_id = 'cmd-sent-1'`))
	w.Signal(syscall.SIGTERM)
	require.Equal(t, 0, w.Wait(20*time.Second))
}

// TestHTTPPushClientCertificate requires client certificates signed by a
// configured CA: a client without one cannot even complete the handshake.
func TestHTTPPushClientCertificate(t *testing.T) {
	t.Parallel()
	f := setup(t)
	certFile, keyFile, serverPool := selfSignedCert(t)
	clientCert, clientKey, _ := selfSignedCert(t) // its own CA: the client certificate is self-signed
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	w := testenv.StartWorker(t, f.env("CMDTRACK_HTTP_ADDR", addr, "CMDTRACK_HTTP_TLS_CERT", certFile,
		"CMDTRACK_HTTP_TLS_KEY", keyFile, "CMDTRACK_HTTP_CLIENT_CA", clientCert))
	w.WaitReady(30 * time.Second)
	body, err := os.ReadFile(filepath.Join("..", "..", "notification", "testdata", "seed000.json"))
	require.NoError(t, err)

	anonymous := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: serverPool}}}
	_, err = anonymous.Post("https://"+addr+"/", "application/json", strings.NewReader(string(body)))
	require.Error(t, err, "a client without a certificate must be refused")

	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	require.NoError(t, err)
	withCert := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: serverPool, Certificates: []tls.Certificate{pair}}}}
	resp, err := withCert.Post("https://"+addr+"/", "application/json", strings.NewReader(string(body)))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, 1, f.count(t, `SELECT count(*) FROM device_commands WHERE command_id = 'id'`))
	w.Signal(syscall.SIGTERM)
	require.Equal(t, 0, w.Wait(20*time.Second))
}
