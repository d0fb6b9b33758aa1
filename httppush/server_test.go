package httppush_test

import (
	"context"
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
		Addr: "127.0.0.1:0", Token: "tok", Limits: ingest.Limits{MaxBodyBytes: 1024}, Wait: 10 * time.Second, MaxInFlight: 1,
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
	go func() { first <- post("Bearer tok") }()
	<-g.entered // the first push holds the only place
	require.Equal(t, http.StatusServiceUnavailable, post("bearer tok"), "the second push must be refused while the first waits")
	close(g.release)
	require.Equal(t, http.StatusOK, <-first)
	require.Equal(t, http.StatusOK, post("BEARER tok"), "the scheme is case-insensitive")
	require.Equal(t, http.StatusUnauthorized, post("Bearer nope"))
	require.Equal(t, http.StatusUnauthorized, post("Basic dG9r"))
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
		Addr: "127.0.0.1:0", Token: "tok", Limits: ingest.Limits{MaxBodyBytes: 4096}, Wait: 10 * time.Second,
		MaxInFlight: 100, MaxBytesInFlight: 6000,
	}, g, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Serve(ctx, time.Second) }()
	post := func(body string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+"/", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
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
		Addr: "127.0.0.1:0", Token: "tok", Limits: ingest.Limits{MaxBodyBytes: 1024}, Wait: 20 * time.Millisecond,
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
				req.Header.Set("Authorization", "Bearer tok")
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

// Connections are capped before anything is read from them: past
// MaxConns, a new connection waits (in the kernel's backlog) until one
// closes, so that half-open requests cannot hold memory without bound before
// they are authenticated.
func TestConnectionsCapped(t *testing.T) {
	t.Parallel()
	g := gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
	close(g.release)
	srv, err := httppush.Listen(httppush.Config{
		Addr: "127.0.0.1:0", Token: "tok", Limits: ingest.Limits{MaxBodyBytes: 1024}, Wait: 10 * time.Second,
		MaxInFlight: 10, MaxConns: 1, HeaderTimeout: time.Minute,
	}, g, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Serve(ctx, time.Second) }()

	// A request that never finishes its headers holds the only place.
	slow, err := net.Dial("tcp", srv.Addr())
	require.NoError(t, err)
	_, err = slow.Write([]byte("POST / HTTP/1.1\r\nHost: x\r\n"))
	require.NoError(t, err)

	status := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+"/", strings.NewReader(`{"resource":"device.property","event":"report"}`))
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if !assert.NoError(t, err) {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	select {
	case <-g.entered:
		t.Fatal("a push was served while the half-open request held the only connection")
	case <-time.After(200 * time.Millisecond):
	}
	require.NoError(t, slow.Close())
	require.Equal(t, http.StatusOK, <-status, "served once the place is free")
}

// A request that does not finish its headers within HeaderTimeout is cut
// off.
func TestHeaderTimeout(t *testing.T) {
	t.Parallel()
	srv, err := httppush.Listen(httppush.Config{
		Addr: "127.0.0.1:0", Token: "tok", Limits: ingest.Limits{MaxBodyBytes: 1024}, Wait: 10 * time.Second,
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
