// Package console serves cmdtrack's read-only web console (`cmdtrack
// console`): every command's story, devices, stuck commands, dead letters
// and outcomes per product, as server-rendered pages that need no
// JavaScript, and the same data as JSON for programs (Accept:
// application/json). It only ever reads: it runs as a role with SELECT
// alone, in read-only transactions.
//
// Every value that came from a notification or a dead letter is untrusted:
// html/template escapes it for its context (text, attribute, URL), JSON
// escapes <, > and &, and the Content-Security-Policy forbids any script.
package console

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cmdtrack/cmdtrack/internal/httpserve"
	"github.com/cmdtrack/cmdtrack/internal/servertls"
)

// DefaultAddr is where the console listens unless told otherwise: loopback,
// where it needs no authentication.
const DefaultAddr = "127.0.0.1:9465"

// Config configures the console's listener and its authentication.
type Config struct {
	Addr string
	// Basic authentication: both or neither.
	User, Password string
	// Token, when set, is accepted as "Authorization: Bearer <token>".
	Token string
	// TLS: serve HTTPS with this certificate and key; ClientCAFile also
	// requires client certificates signed by it.
	CertFile, KeyFile, ClientCAFile string
	// AllowUnauthenticated serves a non-loopback address without any of the
	// above (behind an authenticating proxy).
	AllowUnauthenticated bool
	// StuckQuiet is how long a command has not moved before the overview
	// and /stuck call it stuck (zero: DefaultStuckQuiet):
	// CMDTRACK_RECONCILE_THRESHOLD, so that they count what the gauge
	// cmdtrack_commands_stuck counts and reconcile asks about.
	StuckQuiet time.Duration
}

// ErrUnauthenticated is returned by Check for a console that would show
// payloads and results to anyone who reaches it.
var ErrUnauthenticated = errors.New("CMDTRACK_CONSOLE_ADDR is not a loopback address and none of CMDTRACK_CONSOLE_USER with " +
	"CMDTRACK_CONSOLE_PASSWORD, CMDTRACK_CONSOLE_TOKEN or CMDTRACK_CONSOLE_CLIENT_CA is set: anyone who reaches it could read " +
	"payloads and results; set one of them, or CMDTRACK_CONSOLE_ALLOW_UNAUTHENTICATED=true behind an authenticating proxy")

func (c Config) authenticated() bool {
	return (c.User != "" && c.Password != "") || c.Token != "" || c.ClientCAFile != ""
}

// Check reports a configuration the console must not start with; its errors
// are one line naming the settings.
func (c Config) Check() error {
	var problems []string
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		problems = append(problems, fmt.Sprintf("CMDTRACK_CONSOLE_ADDR %q is not host:port", c.Addr))
	}
	if (c.User == "") != (c.Password == "") {
		problems = append(problems, "CMDTRACK_CONSOLE_USER and CMDTRACK_CONSOLE_PASSWORD go together")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		problems = append(problems, "CMDTRACK_CONSOLE_TLS_CERT and CMDTRACK_CONSOLE_TLS_KEY go together")
	}
	if c.ClientCAFile != "" && c.CertFile == "" {
		problems = append(problems, "CMDTRACK_CONSOLE_CLIENT_CA needs CMDTRACK_CONSOLE_TLS_CERT")
	}
	if len(problems) == 0 && !c.authenticated() && !c.AllowUnauthenticated && !mayBeLoopback(c.Addr) {
		return ErrUnauthenticated
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// mayBeLoopback reports whether addr (host:port) may listen on loopback
// only: an IP address says so itself, an empty host listens everywhere, and
// a name is decided by the address it binds (Listen), since "localhost"
// too resolves wherever the resolver says.
func mayBeLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	return true
}

// boundLoopback reports whether a listener's bound address is loopback.
func boundLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Handler serves the console's pages from db.
type Handler struct {
	db    *pgxpool.Pool
	cfg   Config
	log   *slog.Logger
	pages map[string]*template.Template
	mux   *http.ServeMux
	// now is the clock, for tests.
	now func() time.Time
}

var funcs = template.FuncMap{
	"time":   fmtTime,
	"dur":    fmtMS,
	"indur":  fmtInputDur,
	"pct":    pct,
	"pretty": func(raw json.RawMessage) string { return pretty(raw) },
	"prettyText": func(s string) string {
		return pretty([]byte(s))
	},
	// path makes one path segment of an untrusted value: "/" and "?" in an
	// id stay part of it. html/template keeps its escapes (it only
	// normalises a URL's path), so they are not escaped twice.
	"path": url.PathEscape,
	// query makes a query string of names and values, each escaped once by
	// url.Values; html/template would escape the escapes again in a plain
	// string ("my product" became "my+product" and then %2B).
	"query": func(kv ...any) template.URL {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(fmt.Sprint(kv[i]), fmt.Sprint(kv[i+1]))
		}
		return template.URL(v.Encode()) //nolint:gosec // every name and value escaped by url.Values.Encode
	},
	// qs marks a query string the console built with url.Values.Encode,
	// every value in it escaped, so that html/template keeps its & and =.
	"qs": func(s string) template.URL { return template.URL(s) }, //nolint:gosec // built by url.Values.Encode

	"presenceClass": func(s string) string {
		switch s {
		case "ONLINE":
			return "ok"
		case "OFFLINE", "ABNORMAL":
			return "bad"
		}
		return ""
	},
	"statusClass": statusClass,
	"statuses":    func() []string { return statuses },
	"jsonRaw":     func(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" },
	"kindClass": func(thing, s string) string {
		// A message delivered has reached its end, as a command answered.
		if thing == "message" && s == "DELIVERED" {
			return "ok"
		}
		return statusClass(s)
	},
	"messageStatuses": func() []string { return messageStatuses },
	"bar": func(v any) []barPart {
		var r Rates
		switch v := v.(type) {
		case Rates:
			r = v
		case MessageRates:
			r = v.rates()
		}
		// A stacked bar of 100 units: successful, failed, timed out, other.
		if r.Commands == 0 {
			return nil
		}
		parts := []barPart{{Class: "ok", Share: r.SuccessRate, Title: "successful"}, {Class: "bad", Share: r.FailureRate, Title: "failed"},
			{Class: "warn", Share: r.TimeoutRate, Title: "timed out"}}
		other := 1 - r.SuccessRate - r.FailureRate - r.TimeoutRate
		parts = append(parts, barPart{Class: "other", Share: max(other, 0), Title: "other"})
		x := 0.0
		for i := range parts {
			w := parts[i].Share * 100
			parts[i].X, parts[i].Share = x, w
			x += w
		}
		return parts
	},
}

func statusClass(s string) string {
	switch s {
	case "SUCCESSFUL":
		return "ok"
	case "FAILED", "TIMEOUT", "EXPIRED", "CANCELED", "ERROR":
		return "bad"
	}
	return "open"
}

type barPart struct {
	Class string
	Share float64
	Title string
	X     float64
}

// NewHandler builds the console's handler: the pages, the static files and
// the authentication cfg asks for. TLS and the listener are Server's.
func NewHandler(db *pgxpool.Pool, cfg Config, log *slog.Logger) (*Handler, error) {
	h := &Handler{db: db, cfg: cfg, log: log, pages: map[string]*template.Template{}, now: time.Now}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if n == "templates/layout.html" || n == "templates/partials.html" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html", n)
		if err != nil {
			return nil, fmt.Errorf("console templates: %w", err)
		}
		h.pages[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] = t
	}
	static, _ := fs.Sub(staticFS, "static")
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	for _, rt := range routes {
		mux.HandleFunc(rt.pattern, rt.page.handler(h))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			h.fail(w, r, http.StatusMethodNotAllowed, "The console only reads: GET only.")
			return
		}
		h.fail(w, r, http.StatusNotFound, "There is no such page.")
	})
	h.mux = mux
	return h, nil
}

// ServeHTTP sets the security headers, authenticates and serves.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cache-Control", "no-store")
	if !h.authorized(r) {
		if h.cfg.User != "" {
			hd.Set("WWW-Authenticate", `Basic realm="cmdtrack console", charset="UTF-8"`)
		} else {
			hd.Set("WWW-Authenticate", `Bearer realm="cmdtrack console"`)
		}
		h.fail(w, r, http.StatusUnauthorized, "Sign in to see the console.")
		return
	}
	if status, msg := checkText(r); status != 0 {
		h.fail(w, r, status, msg)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// checkText refuses, before any handler, what PostgreSQL would refuse in
// text: bytes that are not UTF-8, and NUL. Every id and filter comes from the
// path or the query string, so checking them here covers every route and
// parameter, now and to come. A path is a 404 (no id is stored so), a query
// a 400 naming the parameter; neither reaches the database.
func checkText(r *http.Request) (status int, msg string) {
	if !validText(r.URL.Path) {
		return http.StatusNotFound, "There is no such page: ids are UTF-8 text without NUL bytes."
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return http.StatusBadRequest, "The query string is malformed (" + err.Error() + "): parameters are UTF-8 text, percent-encoded."
	}
	for k, vs := range q {
		if !validText(k) {
			return http.StatusBadRequest, fmt.Sprintf("The query parameter %q is not UTF-8 text without NUL bytes.", k)
		}
		for _, v := range vs {
			if !validText(v) {
				return http.StatusBadRequest, fmt.Sprintf("The query parameter %s is not UTF-8 text without NUL bytes.", k)
			}
		}
	}
	return 0, ""
}

func validText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// authorized reports whether r may read the console: any configured method
// suffices. Client certificates were checked by TLS before any request.
func (h *Handler) authorized(r *http.Request) bool {
	basic := h.cfg.User != "" && h.cfg.Password != ""
	if !basic && h.cfg.Token == "" {
		return true
	}
	if basic {
		if u, p, ok := r.BasicAuth(); ok && equal(u, h.cfg.User) && equal(p, h.cfg.Password) {
			return true
		}
	}
	if h.cfg.Token != "" {
		a := r.Header.Get("Authorization")
		if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") && equal(a[7:], h.cfg.Token) {
			return true
		}
	}
	return false
}

// equal compares secrets in constant time, whatever their lengths.
func equal(a, b string) bool {
	x, y := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(x[:], y[:]) == 1
}

// Server is the console's listener.
type Server struct {
	srv      *http.Server
	ln       net.Listener
	tls      bool
	loopback bool
}

// Listen checks cfg and binds its address now, so that a bad address,
// certificate or missing authentication fails at start. Whether the console
// is on loopback is decided by the address it bound, not by the name
// configured. It warns of credentials sent in clear text beyond loopback.
func Listen(cfg Config, h http.Handler, log *slog.Logger) (*Server, error) {
	return listenWith(cfg, h, log, net.Listen)
}

func listenWith(cfg Config, h http.Handler, log *slog.Logger, listen func(network, addr string) (net.Listener, error)) (*Server, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	s := &Server{srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      queryTimeout + 15*time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}}
	if cfg.CertFile != "" {
		tc, err := servertls.Config(cfg.CertFile, cfg.KeyFile, cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("console TLS (CMDTRACK_CONSOLE_TLS_CERT, _KEY, CMDTRACK_CONSOLE_CLIENT_CA): %w", err)
		}
		s.srv.TLSConfig, s.tls = tc, true
	}
	ln, err := listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	s.ln, s.loopback = ln, boundLoopback(ln.Addr())
	if !s.loopback && !cfg.authenticated() && !cfg.AllowUnauthenticated {
		_ = ln.Close()
		return nil, fmt.Errorf("%w (%s bound %s)", ErrUnauthenticated, cfg.Addr, ln.Addr())
	}
	switch {
	case s.loopback:
	case !cfg.authenticated():
		log.Warn("the console serves without authentication (CMDTRACK_CONSOLE_ALLOW_UNAUTHENTICATED=true): put an authenticating proxy in front of it",
			"addr", s.Addr())
	case !s.tls && (cfg.User != "" || cfg.Token != ""):
		log.Warn("the console takes a password or token over plain HTTP beyond loopback, readable by anyone on the path: "+
			"set CMDTRACK_CONSOLE_TLS_CERT and CMDTRACK_CONSOLE_TLS_KEY, or set CMDTRACK_CONSOLE_ADDR to loopback behind a proxy that terminates TLS",
			"addr", s.Addr())
	}
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close releases the listener of a Server that will not serve.
func (s *Server) Close() error { return s.ln.Close() }

// Serve answers requests until ctx ends, then lets those in flight finish
// for up to grace (httpserve.Serve).
func (s *Server) Serve(ctx context.Context, grace time.Duration) error {
	return httpserve.Serve(ctx, "console", s.srv, s.ln, grace)
}
