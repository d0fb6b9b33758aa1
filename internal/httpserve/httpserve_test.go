package httpserve_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/httpserve"
)

// hang bounds every wait of these tests. It only turns a hang into a
// failure that says what did not happen: a healthy run takes milliseconds,
// and no grace below is anywhere near it but the ones meant to be cut.
const hang = 30 * time.Second

// served is a Serve running in a goroutine of the test.
type served struct {
	srv      *http.Server
	addr     string
	cancel   context.CancelFunc
	done     chan error    // Serve's result
	shutting chan struct{} // closed when the shutdown begins
	client   *http.Client
}

// serve runs Serve(ctx, "test", srv, ln, grace) on ln (a loopback listener
// when nil) until the test cancels it.
func serve(t *testing.T, h http.Handler, ln net.Listener, grace time.Duration) *served {
	t.Helper()
	if ln == nil {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	s := &served{
		srv:      &http.Server{Handler: h, ReadHeaderTimeout: hang},
		addr:     ln.Addr().String(),
		done:     make(chan error, 1),
		shutting: make(chan struct{}),
		client:   &http.Client{Transport: tr},
	}
	s.srv.RegisterOnShutdown(func() { close(s.shutting) })
	ctx, cancel := context.WithCancel(t.Context())
	s.cancel = cancel
	go func() { s.done <- httpserve.Serve(ctx, "test", s.srv, ln, grace) }()
	t.Cleanup(cancel)
	return s
}

// result waits for Serve's result.
func (s *served) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.done:
		return err
	case <-time.After(hang):
		require.FailNow(t, "Serve did not return")
		return nil
	}
}

// get GETs path in a goroutine and sends what it got.
func (s *served) get(path string) <-chan answer {
	c := make(chan answer, 1)
	go func() {
		resp, err := s.client.Get("http://" + s.addr + path)
		if err != nil {
			c <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		c <- answer{status: resp.StatusCode, body: string(body), err: err}
	}()
	return c
}

type answer struct {
	status int
	body   string
	err    error
}

func wait[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(hang):
		require.FailNow(t, what)
		var zero T
		return zero
	}
}

func ok(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }

// blocking answers once release is closed, after saying on started that
// the request is in hand.
func blocking(started chan<- struct{}, release <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "done")
	}
}

func TestServeAnswersUntilCtxEnds(t *testing.T) {
	s := serve(t, http.HandlerFunc(ok), nil, time.Second)
	a := wait(t, s.get("/"), "no answer")
	require.NoError(t, a.err)
	require.Equal(t, "ok", a.body)

	s.cancel()
	require.NoError(t, s.result(t), "a stop at ctx's end is no error")
	_, err := net.DialTimeout("tcp", s.addr, hang)
	require.Error(t, err, "the listener is closed once Serve returns")
}

func TestServeCtxEndedBeforehand(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	srv := &http.Server{Handler: http.HandlerFunc(ok), ReadHeaderTimeout: hang}
	require.NoError(t, httpserve.Serve(ctx, "test", srv, ln, time.Second))
	_, err = ln.Accept()
	require.ErrorIs(t, err, net.ErrClosed, "the listener is closed once Serve returns")
}

// A request in hand when ctx ends gets its answer: the stop waits for it
// (here the grace is far longer than the test may take, so it is the
// answer, not the deadline, that lets Serve return).
func TestServeLetsRequestInFlightFinish(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	s := serve(t, blocking(started, release), nil, time.Hour)
	got := s.get("/")
	wait(t, started, "the request never reached the handler")

	s.cancel()
	wait(t, s.shutting, "the shutdown never began")
	select {
	case err := <-s.done:
		require.FailNow(t, "Serve returned with a request in flight", "%v", err)
	default:
	}
	close(release)
	a := wait(t, got, "no answer")
	require.NoError(t, a.err)
	require.Equal(t, http.StatusOK, a.status)
	require.Equal(t, "done", a.body)
	require.NoError(t, s.result(t))
}

// A request still running when the grace is over is cut: its connection
// is closed, which ends its context, and Serve returns nil (a stop that
// had to cut is still the stop that was asked for).
func TestServeCutsRequestLongerThanGrace(t *testing.T) {
	started, ended := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done()
		close(ended)
	})
	s := serve(t, h, nil, 10*time.Millisecond)
	got := s.get("/")
	wait(t, started, "the request never reached the handler")

	s.cancel()
	require.NoError(t, s.result(t))
	wait(t, ended, "the handler's context never ended")
	require.Error(t, wait(t, got, "no answer").err, "the cut request gets no answer")
}

// failingListener accepts once, then fails (as accept does when the
// process is out of file descriptors, say) once fail is closed.
type failingListener struct {
	net.Listener
	fail     chan struct{}
	accepted bool
	closed   chan struct{}
	once     sync.Once
}

var errAccept = errors.New("accept failed")

func (l *failingListener) Accept() (net.Conn, error) {
	if !l.accepted {
		l.accepted = true // Serve accepts from one goroutine only
		return l.Listener.Accept()
	}
	select {
	case <-l.fail:
		return nil, errAccept
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *failingListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// A listener that fails ends Serve with its error, naming the server, and
// only once the request in hand has had its answer: no connection outlives
// Serve.
func TestServeReturnsListenerError(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := &failingListener{Listener: inner, fail: make(chan struct{}), closed: make(chan struct{})}
	started, release := make(chan struct{}), make(chan struct{})
	s := serve(t, blocking(started, release), ln, time.Hour)
	got := s.get("/")
	wait(t, started, "the request never reached the handler")

	close(ln.fail)
	select {
	case err := <-s.done:
		require.FailNow(t, "Serve returned with a request in flight", "%v", err)
	case <-s.shutting:
	case <-time.After(hang):
		require.FailNow(t, "the shutdown never began")
	}
	close(release)
	a := wait(t, got, "no answer")
	require.NoError(t, a.err)
	require.Equal(t, "done", a.body)
	err = s.result(t)
	require.ErrorIs(t, err, errAccept)
	require.ErrorContains(t, err, "test", "the error names the server")
}

// A server with a TLSConfig serves HTTPS with its certificates.
func TestServeTLS(t *testing.T) {
	// httptest's certificate, which its client trusts, for 127.0.0.1.
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	certs, client := ts.TLS.Certificates, ts.Client()
	ts.Close()
	t.Cleanup(client.CloseIdleConnections)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(ok), ReadHeaderTimeout: hang, TLSConfig: &tls.Config{Certificates: certs}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- httpserve.Serve(ctx, "test", srv, ln, time.Second) }()
	defer cancel()

	resp, err := client.Get("https://" + ln.Addr().String())
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, "ok", string(body))
	cancel()
	require.NoError(t, wait(t, done, "Serve did not return"))
}
