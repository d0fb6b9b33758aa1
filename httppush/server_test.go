package httppush_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/httppush"
	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/pipeline"
)

// gate is a Submitter that holds every submission until released; the
// pipeline behind it is tested end to end in cmd/cmdtrack.
type gate struct{ entered, release chan struct{} }

func (g gate) Submit(ctx context.Context, it ingest.Item, release func()) (ingest.Result, error) {
	defer release()
	select {
	case g.entered <- struct{}{}:
	default:
	}
	select {
	case <-g.release:
		return it.Result(), nil
	case <-ctx.Done():
		return ingest.Result{}, ctx.Err()
	}
}

// TestInFlightBound: with one push waiting for its commit, a second is
// answered 503 at once instead of piling up; the first still gets its 200.
func TestInFlightBound(t *testing.T) {
	t.Parallel()
	g := gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv, err := httppush.Listen(httppush.Config{
		Addr: "127.0.0.1:0", Token: testToken, Limits: ingest.Limits{MaxBodyBytes: 1024}, Wait: 10 * time.Second, MaxInFlight: 1,
	}, g, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Serve(ctx, time.Second) }()

	post := func(auth string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+"/", strings.NewReader(`{"resource":"device.property","event":"report"}`))
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	first := make(chan int, 1)
	go func() { first <- post("Bearer " + testToken) }()
	<-g.entered // the first push holds the only place
	require.Equal(t, http.StatusServiceUnavailable, post("bearer "+testToken), "the second push must be refused while the first waits")
	close(g.release)
	require.Equal(t, http.StatusOK, <-first)
	require.Equal(t, http.StatusOK, post("BEARER "+testToken), "the scheme is case-insensitive")
	require.Equal(t, http.StatusUnauthorized, post("Bearer nope"))
	require.Equal(t, http.StatusUnauthorized, post("Bearer "+testToken[:len(testToken)-1]), "a prefix of the token")
	require.Equal(t, http.StatusUnauthorized, post("Bearer "+testToken+"x"), "the token and more")
	require.Equal(t, http.StatusUnauthorized, post("Basic "+base64.StdEncoding.EncodeToString([]byte(testToken))))
}

// The server keeps, and compares, only the token's SHA-256 digest: digests
// of a fixed size, so that the comparison's time tells nothing of the
// token's length (subtle.ConstantTimeCompare returns at once on a difference
// in length).
func TestTokenComparedByDigest(t *testing.T) {
	t.Parallel()
	digest := sha256.Sum256([]byte(testToken))
	require.True(t, httppush.TokenMatches(digest, testToken))
	for _, wrong := range []string{"", "x", testToken[:len(testToken)-1], testToken + "x", strings.ToUpper(testToken)} {
		require.False(t, httppush.TokenMatches(digest, wrong), "%q", wrong)
	}
	srv, err := httppush.Listen(httppush.Config{Addr: "127.0.0.1:0", Token: testToken, Limits: ingest.Limits{MaxBodyBytes: 1024},
		Wait: time.Second, MaxInFlight: 1}, gate{}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Equal(t, digest, httppush.TokenDigest(srv))
	require.Empty(t, httppush.ConfiguredToken(srv), "the token itself is not kept")
}

// A token short enough to guess is refused at start, in one line naming
// the setting.
func TestShortTokenRefused(t *testing.T) {
	t.Parallel()
	cfg := httppush.Config{Addr: "127.0.0.1:0", Token: "x", Limits: ingest.Limits{MaxBodyBytes: 1024}, Wait: time.Second, MaxInFlight: 1}
	_, err := httppush.Listen(cfg, gate{}, slog.New(slog.DiscardHandler))
	require.ErrorIs(t, err, httppush.ErrShortToken)
	require.ErrorContains(t, err, "CMDTRACK_HTTP_TOKEN")
	require.NotContains(t, err.Error(), "\n")
	cfg.Token = strings.Repeat("é", httppush.MinTokenLength) // characters, not bytes
	srv, err := httppush.Listen(cfg, gate{}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NotEmpty(t, srv.Addr())
}

// A receiver that would take pushes from anyone refuses to start unless that
// is asked for explicitly.
func TestUnauthenticatedNeedsConsent(t *testing.T) {
	t.Parallel()
	cfg := httppush.Config{Addr: "127.0.0.1:0", Limits: ingest.Limits{MaxBodyBytes: 1024}, Wait: time.Second, MaxInFlight: 1}
	_, err := httppush.Listen(cfg, gate{}, slog.New(slog.DiscardHandler))
	require.ErrorIs(t, err, httppush.ErrUnauthenticated)
	require.ErrorContains(t, err, "CMDTRACK_HTTP_ALLOW_UNAUTHENTICATED")
	cfg.AllowUnauthenticated = true
	srv, err := httppush.Listen(cfg, gate{}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NotEmpty(t, srv.Addr())
}

// The bytes held by pushes in flight are bounded, not only their number: a
// push whose declared size does not fit is answered 503 at once.
func TestInFlightBytesBound(t *testing.T) {
	t.Parallel()
	g := gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv, err := httppush.Listen(httppush.Config{
		Addr: "127.0.0.1:0", Token: testToken, Limits: ingest.Limits{MaxBodyBytes: 4096}, Wait: 10 * time.Second,
		MaxInFlight: 100, MaxBytesInFlight: 6000,
	}, g, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Serve(ctx, time.Second) }()
	post := func(body string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+"/", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	foreign := `{"resource":"device.property","event":"report","pad":"` + strings.Repeat("x", 3000) + `"}`
	first := make(chan int, 1)
	go func() { first <- post(foreign) }()
	<-g.entered // 3 KB held
	require.Equal(t, http.StatusServiceUnavailable, post(foreign), "a second 3 KB push does not fit in 6000 bytes")
	require.Equal(t, http.StatusRequestEntityTooLarge, post(strings.Repeat("x", 5000)), "over the body limit: 413 unread")
	close(g.release)
	require.Equal(t, http.StatusOK, <-first)
	require.Equal(t, http.StatusOK, post(foreign), "the bytes came back")
}

// downStore is a database that is away until up is set; then it stores
// what it is given and remembers the bodies of the dead letters.
type downStore struct {
	up     atomic.Bool
	mu     sync.Mutex
	stored []string
}

func (s *downStore) Apply(_ context.Context, items []ingest.Item) ([]ingest.Result, error) {
	if !s.up.Load() {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	}
	res := make([]ingest.Result, len(items))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range items {
		if dl := items[i].DeadLetter; dl != nil {
			s.stored = append(s.stored, string(dl.Body))
		}
		res[i] = items[i].Result()
	}
	return res, nil
}

func (s *downStore) bodies() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.stored)
}

// While the database is away, pushes answered 503 hold no memory in the
// pipeline beyond CMDTRACK_HTTP_MAX_BYTES_IN_FLIGHT: a push's bytes count
// until the pipeline lets go of its body, and a push whose caller gave up is
// dropped before it is written. Once the database is back, none of them is
// stored (they were never acknowledged: the platform pushes them again).
func TestBytesBoundWhileDatabaseAway(t *testing.T) {
	t.Parallel()
	st := &downStore{}
	p := pipeline.New(st, pipeline.Config{
		BatchSize: 64, BatchWait: time.Millisecond, Writers: 2, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond,
	}, slog.New(slog.DiscardHandler), pipeline.NewMetrics(nil))
	inbox := pipeline.NewInbox()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, 5*time.Second, inbox) }()
	defer func() {
		st.up.Store(true) // so that the drain ends at once, however the test went
		cancel()
		require.NoError(t, <-done)
	}()
	const limit = 4 << 10
	srv, err := httppush.Listen(httppush.Config{
		Addr: "127.0.0.1:0", Token: testToken, Limits: ingest.Limits{MaxBodyBytes: 1024}, Wait: 20 * time.Millisecond,
		MaxInFlight: 100, MaxBytesInFlight: limit,
	}, inbox, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	go func() { _ = srv.Serve(ctx, time.Second) }()

	// Not JSON: each is stored as a dead letter holding its 1,000 bytes.
	body := func(i int) string { return fmt.Sprintf("%04d", i) + strings.Repeat("x", 996) }
	for round := range 25 {
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+"/", strings.NewReader(body(round*6+i)))
				req.Header.Set("Authorization", "Bearer "+testToken)
				resp, err := http.DefaultClient.Do(req)
				if !assert.NoError(t, err) {
					return
				}
				resp.Body.Close()
				assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the database is away")
			}()
		}
		wg.Wait()
		require.LessOrEqual(t, inbox.HeldBytes(), int64(limit), "round %d: the pipeline holds more push bytes than the limit", round)
	}

	require.Eventually(t, func() bool { return inbox.HeldBytes() == 0 }, 10*time.Second, time.Millisecond,
		"the pushes given up are let go while the database is still away")
	st.up.Store(true)
	res, err := inbox.Submit(ctx, ingest.Classify([]byte("fresh"), "http", time.Now(), ingest.Limits{MaxBodyBytes: 1024}), nil)
	require.NoError(t, err)
	require.Equal(t, ingest.DeadLettered, res.Outcome)
	require.Equal(t, []string{"fresh"}, st.bodies(), "only the push still waiting is stored")
}

// Connections are capped: past MaxConns, a new connection is not served
// while every place is held by a request being handled (none can be closed
// without losing its answer); it is, once one is done.
func TestConnectionsCapped(t *testing.T) {
	t.Parallel()
	g := gate{entered: make(chan struct{}, 2), release: make(chan struct{})}
	srv, err := httppush.Listen(httppush.Config{
		Addr: "127.0.0.1:0", Token: testToken, Limits: ingest.Limits{MaxBodyBytes: 1024}, Wait: time.Minute,
		MaxInFlight: 10, MaxConns: 1,
	}, g, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Serve(ctx, time.Second) }()

	type answer struct {
		status int
		err    error
	}
	answers := make(chan answer, 2)
	push := func() {
		client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
		req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+"/", strings.NewReader(`{"resource":"device.property","event":"report"}`))
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := client.Do(req)
		if err != nil {
			answers <- answer{err: err}
			return
		}
		resp.Body.Close()
		answers <- answer{status: resp.StatusCode}
	}
	go push()
	<-g.entered // the first push holds the only place, waiting for its commit
	go push()
	select {
	case <-g.entered:
		t.Fatal("a second push was served while the first held the only connection")
	case <-time.After(200 * time.Millisecond):
	}
	close(g.release)
	for range 2 {
		a := <-answers
		require.NoError(t, a.err)
		require.Equal(t, http.StatusOK, a.status, "served once the place is free")
	}
}

// Requests that never finish their headers (no token read yet) cannot hold
// the places either: at the cap, the oldest of them is closed for a new
// connection, once it has had a moment to send them.
func TestHalfOpenConnectionsGiveWayAtTheCap(t *testing.T) {
	t.Parallel()
	const maxConns = 4
	srv := startCapped(t, maxConns, time.Minute)
	var slow []net.Conn
	for range maxConns {
		c, err := net.Dial("tcp", srv.Addr())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = c.Write([]byte("POST / HTTP/1.1\r\nHost: x\r\n"))
		require.NoError(t, err)
		slow = append(slow, c)
	}
	require.Equal(t, http.StatusOK, pushAnswered(t, srv.Addr(), testToken))
	closedByServer(t, slow[0], "the oldest half-open connection makes way")
}

// A request that does not finish its headers within HeaderTimeout is cut
// off.
func TestHeaderTimeout(t *testing.T) {
	t.Parallel()
	srv, err := httppush.Listen(httppush.Config{
		Addr: "127.0.0.1:0", Token: testToken, Limits: ingest.Limits{MaxBodyBytes: 1024}, Wait: 10 * time.Second,
		MaxInFlight: 10, HeaderTimeout: 50 * time.Millisecond,
	}, gate{}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Serve(ctx, time.Second) }()
	slow, err := net.Dial("tcp", srv.Addr())
	require.NoError(t, err)
	defer slow.Close()
	_, err = slow.Write([]byte("POST / HTTP/1.1\r\nHost: x\r\n"))
	require.NoError(t, err)
	// Far longer than the timeout, far shorter than the default.
	require.NoError(t, slow.SetReadDeadline(time.Now().Add(3*time.Second)))
	_, err = io.Copy(io.Discard, slow)
	require.NoError(t, err, "the server closes the connection (a read deadline here means it did not)")
}

// keptAlive opens a connection to addr, sends one push on it with the given
// Authorization header (none if empty), reads the answer and returns the
// connection, left open as a keep-alive client leaves it, with the status.
func keptAlive(t testing.TB, addr, auth string) (net.Conn, int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	body := `{"resource":"device.property","event":"report"}`
	req := "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
	if auth != "" {
		req += "Authorization: " + auth + "\r\n"
	}
	req += fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)
	_, err = c.Write([]byte(req))
	require.NoError(t, err)
	// Generous: the answer is immediate, but the machine may be busy.
	require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return c, resp.StatusCode
}

// closedByServer waits, generously, for the server to close c.
func closedByServer(t testing.TB, c net.Conn, msgAndArgs ...any) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	_, err := io.Copy(io.Discard, c)
	require.NoError(t, err, msgAndArgs...) // a read deadline here means it stayed open
}

// pushAnswered makes one authenticated push on a connection of its own and
// returns its status. The 30 s deadline is generous (it is answered in
// milliseconds when it gets a connection): past it, the push is taken as
// starved, as IoTDA (15 s) would.
func pushAnswered(t *testing.T, addr, token string) int {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader(`{"resource":"device.property","event":"report"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	require.NoError(t, err, "an authenticated push got no answer while the connections were at the cap")
	resp.Body.Close()
	return resp.StatusCode
}

const testToken = "0123456789abcdef-test"

// startCapped serves a receiver of a few connections whose pushes are
// stored at once.
func startCapped(t *testing.T, maxConns int, headerTimeout time.Duration) *httppush.Server {
	t.Helper()
	g := gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
	close(g.release)
	srv, err := httppush.Listen(httppush.Config{
		Addr: "127.0.0.1:0", Token: testToken, Limits: ingest.Limits{MaxBodyBytes: 1024}, Wait: 10 * time.Second,
		MaxInFlight: maxConns, MaxConns: maxConns, HeaderTimeout: headerTimeout,
	}, g, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = srv.Serve(ctx, time.Second) }()
	return srv
}

// The lockout of issue 26: clients without the token, each answered 401
// and then idling on its keep-alive connection, filled the connections and
// held them for the 90 s keep-alive, so that a genuine push got no answer. A
// refusal now closes its connection, and the genuine push is answered.
func TestRefusedIdleConnectionsDoNotLockOut(t *testing.T) {
	t.Parallel()
	const maxConns = 4
	srv := startCapped(t, maxConns, 5*time.Second)
	var attackers []net.Conn
	for range maxConns {
		c, code := keptAlive(t, srv.Addr(), "")
		require.Equal(t, http.StatusUnauthorized, code)
		attackers = append(attackers, c)
	}
	require.Equal(t, http.StatusOK, pushAnswered(t, srv.Addr(), testToken))
	for i, c := range attackers {
		closedByServer(t, c, "connection %d: a refused client's connection is closed", i)
	}
}

// Idle keep-alive connections of authenticated clients at the cap give way
// to a new connection: the oldest idle one is closed (its client reconnects
// when it next pushes) rather than the new one left waiting for 90 s.
func TestIdleConnectionsGiveWayAtTheCap(t *testing.T) {
	t.Parallel()
	const maxConns = 4
	srv := startCapped(t, maxConns, 5*time.Second)
	var idle []net.Conn
	for range maxConns {
		c, code := keptAlive(t, srv.Addr(), "Bearer "+testToken)
		require.Equal(t, http.StatusOK, code)
		idle = append(idle, c)
	}
	require.Equal(t, http.StatusOK, pushAnswered(t, srv.Addr(), testToken))
	// Which one is the oldest is the server's view: a connection is idle
	// once its goroutine is done with the answer, after the client has it.
	oneClosedByServer(t, idle, "an idle connection makes way")
}

// oneClosedByServer waits, generously, for the server to close one of cs.
func oneClosedByServer(t *testing.T, cs []net.Conn, msgAndArgs ...any) {
	t.Helper()
	closed := make(chan error, len(cs))
	for _, c := range cs {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
		go func() {
			_, err := io.Copy(io.Discard, c)
			closed <- err
		}()
	}
	var err error
	for range cs {
		if err = <-closed; err == nil {
			return
		}
	}
	require.NoError(t, err, msgAndArgs...) // each read ran into its deadline: none was closed
}

// BenchmarkPushAtTheCap times a genuine push on a new connection while the
// default 512 connections are taken: by clients answered 401 and left idle
// (issue 26's lockout: they are closed after their answer), or by idle
// authenticated keep-alive clients (each push closes the one idle longest;
// another is opened between iterations, outside the timer).
func BenchmarkPushAtTheCap(b *testing.B) {
	for _, auth := range []string{"", "Bearer " + testToken} {
		name := map[string]string{"": "refused", "Bearer " + testToken: "idle"}[auth]
		b.Run(name, func(b *testing.B) {
			const maxConns = 512
			g := gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
			close(g.release)
			srv, err := httppush.Listen(httppush.Config{
				Addr: "127.0.0.1:0", Token: testToken, Limits: ingest.Limits{MaxBodyBytes: 1024}, Wait: 10 * time.Second,
				MaxInFlight: maxConns, MaxConns: maxConns,
			}, g, slog.New(slog.DiscardHandler))
			require.NoError(b, err)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() { _ = srv.Serve(ctx, time.Second) }()
			fill := func() { _, _ = keptAlive(b, srv.Addr(), auth) }
			for range maxConns {
				fill()
			}
			client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			b.ResetTimer()
			for range b.N {
				req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+"/", strings.NewReader(`{"resource":"device.property","event":"report"}`))
				req.Header.Set("Authorization", "Bearer "+testToken)
				resp, err := client.Do(req)
				require.NoError(b, err)
				resp.Body.Close()
				require.Equal(b, http.StatusOK, resp.StatusCode)
				b.StopTimer()
				fill()
				b.StartTimer()
			}
		})
	}
}
