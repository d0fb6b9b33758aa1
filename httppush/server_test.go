package httppush_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/httppush"
	"github.com/cmdtrack/cmdtrack/ingest"
)

// gate is a Submitter that holds every submission until released; the
// pipeline behind it is tested end to end in cmd/cmdtrack.
type gate struct{ entered, release chan struct{} }

func (g gate) Submit(ctx context.Context, it ingest.Item) (ingest.Result, error) {
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
		req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+"/", strings.NewReader(`{"resource":"device.status","event":"update"}`))
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
	foreign := `{"resource":"device.status","event":"update","pad":"` + strings.Repeat("x", 3000) + `"}`
	first := make(chan int, 1)
	go func() { first <- post(foreign) }()
	<-g.entered // 3 KB held
	require.Equal(t, http.StatusServiceUnavailable, post(foreign), "a second 3 KB push does not fit in 6000 bytes")
	require.Equal(t, http.StatusRequestEntityTooLarge, post(strings.Repeat("x", 5000)), "over the body limit: 413 unread")
	close(g.release)
	require.Equal(t, http.StatusOK, <-first)
	require.Equal(t, http.StatusOK, post(foreign), "the bytes came back")
}
