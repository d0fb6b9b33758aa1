// Package httppush receives the notifications IoTDA can push over HTTP(S)
// instead of AMQP: the v5 `device.command.status` push and the legacy
// command callbacks. Each request is answered only once its effect is
// committed, so that the platform retries whatever was not stored.
package httppush

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/semaphore"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/httpserve"
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
	// It is at least MinTokenLength characters.
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
	// before anything is read or authenticated. At the cap, a new
	// connection takes the place of a refused, idle or half-open one (see
	// connLimit); it waits only while every place holds a request being
	// handled. Zero means 512.
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

// MinTokenLength is the shortest token Listen accepts: a short one can be
// guessed.
const MinTokenLength = 16

// ErrShortToken is returned by Listen for a token shorter than
// MinTokenLength.
var ErrShortToken = fmt.Errorf("CMDTRACK_HTTP_TOKEN is shorter than %d characters: it could be guessed; "+
	"set a random one, e.g. from openssl rand -hex 32", MinTokenLength)

// Server is the push receiver.
type Server struct {
	cfg Config
	// token is the digest of cfg.Token (which is then forgotten): comparing
	// digests of a fixed size tells nothing of the token's length.
	token    [sha256.Size]byte
	hasToken bool
	inFlight chan struct{}
	bytes    *semaphore.Weighted
	sub      Submitter
	log      *slog.Logger
	srv      *http.Server
	ln       *connLimit
}

// Listen binds the address now, so that a bad address or certificate fails
// at startup.
func Listen(cfg Config, sub Submitter, log *slog.Logger) (*Server, error) {
	if cfg.Token == "" && cfg.ClientCAFile == "" && !cfg.AllowUnauthenticated {
		return nil, ErrUnauthenticated
	}
	if cfg.Token != "" && utf8.RuneCountInString(cfg.Token) < MinTokenLength {
		return nil, ErrShortToken
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
		bytes: semaphore.NewWeighted(cfg.MaxBytesInFlight), token: sha256.Sum256([]byte(cfg.Token)), hasToken: cfg.Token != ""}
	s.cfg.Token = ""
	mux := http.NewServeMux()
	mux.HandleFunc("/", s.handle)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: cfg.HeaderTimeout, // the TLS handshake's too
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      cfg.Wait + 30*time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		tc, err := servertls.Config(cfg.CertFile, cfg.KeyFile, cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("HTTP push TLS: %w", err)
		}
		s.srv.TLSConfig = tc
	} else if cfg.ClientCAFile != "" {
		return nil, errors.New("HTTP push: a client CA needs TLS (certificate and key)")
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	// Long enough for a genuine client's handshake and headers, short
	// enough that holding places open gains an attacker nothing.
	grace := min(time.Second, cfg.HeaderTimeout)
	s.ln = limitConns(ln, cfg.MaxConns, grace, log)
	s.srv.ConnState = s.ln.connState
	return s, nil
}

// connLimit is a listener that keeps at most max connections open. A
// half-open request (headers not finished, not yet authenticated) costs
// some 14 KiB for up to HeaderTimeout; this bounds how many there can be.
// At the cap, a new connection takes the place of one that holds nothing
// worth keeping, in this order: one whose request was refused (it is being
// closed anyway), the one idle longest between keep-alive requests (its
// client reconnects when it next pushes), the oldest still sending its first
// request's headers, once it has had grace to. Only when every place holds
// a request being handled, or a connection younger than grace, does the new
// one wait. Clients that cannot authenticate thus cannot keep a genuine push
// out by holding connections open.
type connLimit struct {
	net.Listener
	max   int
	grace time.Duration
	log   *slog.Logger

	mu       sync.Mutex
	open     map[*limitedConn]struct{}
	lastWarn time.Time
	evicted  int // since lastWarn

	changed chan struct{} // a place may have become free or closable
	closed  chan struct{}
	once    sync.Once
}

// connState is where a connection is in its life, as far as closing it
// for another goes.
type connState int

const (
	connNew     connState = iota // accepted; its first request not yet read
	connActive                   // a request is being handled
	connIdle                     // between keep-alive requests
	connRefused                  // answered with a refusal; closing
)

var connStateNames = [...]string{"half-open", "active", "idle", "refused"}

func limitConns(ln net.Listener, n int, grace time.Duration, log *slog.Logger) *connLimit {
	return &connLimit{Listener: ln, max: n, grace: grace, log: log, open: map[*limitedConn]struct{}{},
		changed: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (l *connLimit) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	lc := &limitedConn{Conn: c, l: l}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		now := time.Now()
		l.mu.Lock()
		if len(l.open) < l.max {
			lc.since = now
			l.open[lc] = struct{}{}
			l.mu.Unlock()
			return lc, nil
		}
		victim, wait := l.victim(now)
		if victim != nil {
			// Its place is the new connection's from now on, whenever its
			// own goroutine notices that it is closed.
			delete(l.open, victim)
			l.noteEviction(now, victim.state)
		}
		l.mu.Unlock()
		if victim != nil {
			_ = victim.Conn.Close()
			continue
		}
		var expired <-chan time.Time
		if wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			expired = timer.C
		}
		select {
		case <-l.changed:
		case <-expired:
		case <-l.closed:
			_ = c.Close()
			return nil, net.ErrClosed
		}
	}
}

// victim is the connection to close for a new one, if any, else how long
// until the oldest half-open one may be (0: until something changes). l.mu
// is held.
func (l *connLimit) victim(now time.Time) (*limitedConn, time.Duration) {
	var refused, idle, half *limitedConn
	for c := range l.open {
		switch c.state {
		case connRefused:
			refused = c
		case connIdle:
			if idle == nil || c.since.Before(idle.since) {
				idle = c
			}
		case connNew:
			if half == nil || c.since.Before(half.since) {
				half = c
			}
		}
	}
	switch {
	case refused != nil:
		return refused, 0
	case idle != nil:
		return idle, 0
	case half != nil && now.Sub(half.since) >= l.grace:
		return half, 0
	case half != nil:
		return nil, l.grace - now.Sub(half.since)
	}
	return nil, 0
}

// noteEviction says, at most once a minute, that the cap is being reached:
// under attack, or set too low for the traffic. l.mu is held.
func (l *connLimit) noteEviction(now time.Time, st connState) {
	l.evicted++
	if now.Sub(l.lastWarn) < time.Minute {
		return
	}
	l.log.Warn("HTTP push connections at CMDTRACK_HTTP_MAX_CONNS: closing refused, idle or half-open ones for new ones; "+
		"if the platform's pushes are many, raise it", "max_conns", l.max, "closed", l.evicted, "last_closed", connStateNames[st])
	l.lastWarn, l.evicted = now, 0
}

// setState records where c is (http.Server.ConnState and the handler call
// it); a connection becoming closable wakes an Accept waiting for a place.
func (l *connLimit) setState(c *limitedConn, st connState) {
	l.mu.Lock()
	if c.state != connRefused { // a refusal is final
		c.state, c.since = st, time.Now()
	}
	l.mu.Unlock()
	if st == connIdle || st == connRefused {
		l.signal()
	}
}

func (l *connLimit) signal() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// connState is http.Server.ConnState.
func (l *connLimit) connState(c net.Conn, st http.ConnState) {
	lc := unwrapConn(c)
	if lc == nil {
		return
	}
	switch st {
	case http.StateActive:
		l.setState(lc, connActive)
	case http.StateIdle:
		l.setState(lc, connIdle)
	}
}

func (l *connLimit) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// limitedConn gives its place back when closed (once, however often it is
// closed).
type limitedConn struct {
	net.Conn
	l    *connLimit
	once sync.Once
	// Guarded by l.mu.
	state connState
	since time.Time // of accept, or of the last change of state
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.open, c)
		c.l.mu.Unlock()
		c.l.signal()
	})
	return err
}

// unwrapConn is the limitedConn under what http.Server holds (a *tls.Conn
// for HTTPS), or nil.
func unwrapConn(c net.Conn) *limitedConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, _ := c.(*limitedConn)
	return lc
}

// connKey carries a request's connection in its context, so that a refusal
// can mark it closable.
type connKey struct{}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve answers requests until ctx ends, then stops taking new ones and
// waits up to grace for those in flight to get their outcome
// (httpserve.Serve).
func (s *Server) Serve(ctx context.Context, grace time.Duration) error {
	return httpserve.Serve(ctx, "HTTP push", s.srv, s.ln, grace)
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		refuse(w, r, "POST a notification", http.StatusMethodNotAllowed)
		return
	}
	if s.hasToken && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cmdtrack"`)
		refuse(w, r, "missing or wrong token", http.StatusUnauthorized)
		return
	}
	limit := int64(s.cfg.Limits.MaxBodyBytes)
	if r.ContentLength > limit {
		fail(w, fmt.Sprintf("body larger than %d bytes", limit), http.StatusRequestEntityTooLarge)
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
		fail(w, "too many pushes in flight; retry", http.StatusServiceUnavailable)
		return
	}
	if !s.bytes.TryAcquire(size) {
		w.Header().Set("Retry-After", "5")
		fail(w, "too many bytes in flight; retry", http.StatusServiceUnavailable)
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
			fail(w, fmt.Sprintf("body larger than %d bytes", s.cfg.Limits.MaxBodyBytes), http.StatusRequestEntityTooLarge)
			return
		}
		fail(w, "could not read the body", http.StatusBadRequest)
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
		fail(w, "not stored yet; retry", http.StatusServiceUnavailable)
		return
	}
	if dl := res.DeadLetter; res.Outcome == ingest.DeadLettered {
		// Stored as a dead letter: retrying will not help.
		fail(w, string(dl.Class)+": "+shorten(dl.Reason, 200), http.StatusBadRequest)
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

// fail answers with an error and closes the connection after it: a client
// that was refused or failed has no claim on a place kept open for it.
func fail(w http.ResponseWriter, msg string, code int) {
	w.Header().Set("Connection", "close")
	http.Error(w, msg, code)
}

// refuse answers a request that is not a push from an authenticated client,
// and gives its connection's place to the next new connection at once,
// even before the answer is out: nothing is lost if it never is.
func refuse(w http.ResponseWriter, r *http.Request, msg string, code int) {
	if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
		if lc := unwrapConn(c); lc != nil {
			lc.l.setState(lc, connRefused)
		}
	}
	fail(w, msg, code)
}

func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	// The scheme name is case-insensitive (RFC 7235).
	if len(h) < 7 || !strings.EqualFold(h[:7], "Bearer ") {
		return false
	}
	return tokenMatches(s.token, h[7:])
}

// tokenMatches compares the digests, of a fixed size, of the token and of
// what was presented, in constant time: subtle.ConstantTimeCompare returns
// at once on a difference in length, which would tell the token's.
func tokenMatches(token [sha256.Size]byte, presented string) bool {
	d := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(d[:], token[:]) == 1
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
