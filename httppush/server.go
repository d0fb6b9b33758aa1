// Package httppush receives the notifications IoTDA can push over HTTP(S)
// instead of AMQP: the v5 `device.command.status` push and the legacy
// command callbacks. Each request is answered only once its effect is
// committed, so that the platform retries whatever was not stored.
package httppush

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/servertls"
)

// Submitter stores an item and says what became of it, or why it was not
// stored; *pipeline.Inbox is one. It calls release once it holds the item no
// longer, which may be after Submit returns (an item whose caller gave up
// waits to be dropped); the item's bytes count against the in-flight bound
// until then.
type Submitter interface {
	Submit(ctx context.Context, it ingest.Item, release func()) (ingest.Result, error)
}

// Config configures the listener.
type Config struct {
	Addr string
	// TLS: serve HTTPS with this certificate and key.
	CertFile, KeyFile string
	// ClientCAFile, when set, requires client certificates signed by it.
	ClientCAFile string
	// Token, when set, must be presented as "Authorization: Bearer <token>".
	Token string
	// Limits are what a push may be; larger bodies are answered 413 unread.
	Limits ingest.Limits
	// Wait bounds how long a request waits for its commit before 503.
	Wait time.Duration
	// MaxInFlight bounds the pushes read and waiting at once, and
	// MaxBytesInFlight the bytes their bodies hold (each counted at its
	// Content-Length, or at the body limit when it gives none); past either,
	// pushes are answered 503 at once.
	MaxInFlight      int
	MaxBytesInFlight int64
	// MaxConns bounds the connections open at once, counted from accept,
	// before anything is read or authenticated; past it, new connections
	// wait in the kernel's backlog until one closes. Zero means 512.
	MaxConns int
	// HeaderTimeout bounds the TLS handshake and the reading of a request's
	// headers. Zero means 5 s.
	HeaderTimeout time.Duration
	// AllowUnauthenticated must be set to serve without a token or client
	// certificates: anyone who reaches such a receiver can forge
	// notifications.
	AllowUnauthenticated bool
}

// ErrUnauthenticated is returned by Listen for a receiver that would take
// pushes from anyone, unless that is explicitly allowed.
var ErrUnauthenticated = errors.New("CMDTRACK_HTTP_ADDR is set but neither CMDTRACK_HTTP_TOKEN nor CMDTRACK_HTTP_CLIENT_CA is: " +
	"anyone who reaches it could forge notifications; set one of them, or CMDTRACK_HTTP_ALLOW_UNAUTHENTICATED=true")

// Server is the push receiver.
type Server struct {
	cfg      Config
	inFlight chan struct{}
	bytes    *semaphore.Weighted
	sub      Submitter
	log      *slog.Logger
	srv      *http.Server
	ln       net.Listener
	tls      bool
}

// Listen binds the address now, so that a bad address or certificate fails
// at startup.
func Listen(cfg Config, sub Submitter, log *slog.Logger) (*Server, error) {
	if cfg.Token == "" && cfg.ClientCAFile == "" && !cfg.AllowUnauthenticated {
		return nil, ErrUnauthenticated
	}
	if cfg.MaxInFlight < 1 {
		cfg.MaxInFlight = 1
	}
	if cfg.MaxConns < 1 {
		cfg.MaxConns = 512
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = 5 * time.Second
	}
	// At least one push of the largest size must fit.
	cfg.MaxBytesInFlight = max(cfg.MaxBytesInFlight, int64(cfg.Limits.MaxBodyBytes))
	s := &Server{cfg: cfg, sub: sub, log: log, inFlight: make(chan struct{}, cfg.MaxInFlight),
		bytes: semaphore.NewWeighted(cfg.MaxBytesInFlight)}
	mux := http.NewServeMux()
	mux.HandleFunc("/", s.handle)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: cfg.HeaderTimeout, // the TLS handshake's too
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      cfg.Wait + 30*time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		tc, err := servertls.Config(cfg.CertFile, cfg.KeyFile, cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("HTTP push TLS: %w", err)
		}
		s.srv.TLSConfig = tc
		s.tls = true
	} else if cfg.ClientCAFile != "" {
		return nil, errors.New("HTTP push: a client CA needs TLS (certificate and key)")
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	s.ln = limitConns(ln, cfg.MaxConns)
	return s, nil
}

// connLimit is a listener that keeps at most cap(slots) connections open:
// past that, Accept waits for one to close, and new connections wait in the
// kernel's backlog, holding no memory of cmdtrack's. A half-open request
// (headers not finished, not yet authenticated) costs some 14 KiB for up to
// HeaderTimeout; this bounds how many there can be.
type connLimit struct {
	net.Listener
	slots  chan struct{}
	closed chan struct{}
	once   sync.Once
}

func limitConns(ln net.Listener, n int) net.Listener {
	return &connLimit{Listener: ln, slots: make(chan struct{}, n), closed: make(chan struct{})}
}

func (l *connLimit) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitedConn{Conn: c, free: sync.OnceFunc(func() { <-l.slots })}, nil
}

func (l *connLimit) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// limitedConn gives its place back when closed (once, however often it is
// closed).
type limitedConn struct {
	net.Conn
	free func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.free()
	return err
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve answers requests until ctx ends, then stops taking new ones and
// waits up to grace for those in flight to get their outcome.
func (s *Server) Serve(ctx context.Context, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() {
		if s.tls {
			errc <- s.srv.ServeTLS(s.ln, "", "")
		} else {
			errc <- s.srv.Serve(s.ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// The shutdown has its own deadline: ctx has ended already.
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := s.srv.Shutdown(shutCtx); err != nil {
		_ = s.srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST a notification", http.StatusMethodNotAllowed)
		return
	}
	if s.cfg.Token != "" && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cmdtrack"`)
		http.Error(w, "missing or wrong token", http.StatusUnauthorized)
		return
	}
	limit := int64(s.cfg.Limits.MaxBodyBytes)
	if r.ContentLength > limit {
		http.Error(w, fmt.Sprintf("body larger than %d bytes", limit), http.StatusRequestEntityTooLarge)
		return
	}
	// Bounded memory, in pushes and in bytes: a flood, or pushes piling up
	// while the database is away, gets 503 rather than a goroutine and a
	// body each.
	size := limit
	if r.ContentLength >= 0 {
		size = r.ContentLength
	}
	select {
	case s.inFlight <- struct{}{}:
		defer func() { <-s.inFlight }()
	default:
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many pushes in flight; retry", http.StatusServiceUnavailable)
		return
	}
	if !s.bytes.TryAcquire(size) {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many bytes in flight; retry", http.StatusServiceUnavailable)
		return
	}
	// The bytes count until the pipeline lets go of the body, not until the
	// answer: a push answered 503 while the database is away stays in its
	// batch until it is dropped, and pushes piling up there would otherwise
	// hold several times the bound.
	release := func() { s.bytes.Release(size) }
	body, err := readBody(w, r, limit)
	if err != nil {
		release()
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, fmt.Sprintf("body larger than %d bytes", s.cfg.Limits.MaxBodyBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "could not read the body", http.StatusBadRequest)
		return
	}
	it := ingest.Classify(body, "http", time.Now(), s.cfg.Limits)
	if it.DeadLetter != nil {
		// What helps find the sender of a bad push later.
		it.DeadLetter.Properties = map[string]string{
			"remote_addr": r.RemoteAddr, "path": r.URL.Path,
			"content_type": r.Header.Get("Content-Type"), "user_agent": r.UserAgent(),
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Wait)
	defer cancel()
	res, err := s.sub.Submit(ctx, it, release)
	if err != nil {
		// Not stored: the platform should push it again later.
		w.Header().Set("Retry-After", "5")
		http.Error(w, "not stored yet; retry", http.StatusServiceUnavailable)
		return
	}
	if dl := res.DeadLetter; res.Outcome == ingest.DeadLettered {
		// Stored as a dead letter: retrying will not help.
		http.Error(w, string(dl.Class)+": "+shorten(dl.Reason, 200), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// readBody reads the request body, at most limit bytes, into a buffer of
// its declared length when it has one, so that it is held once, not grown.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	if r.ContentLength < 0 {
		return io.ReadAll(body)
	}
	buf := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(body, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	// The scheme name is case-insensitive (RFC 7235).
	if len(h) < 7 || !strings.EqualFold(h[:7], "Bearer ") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(h[7:]), []byte(s.cfg.Token)) == 1
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
