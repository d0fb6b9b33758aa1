package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cmdtrack/cmdtrack/store"
)

// An endpoint is one of the console's pages: what it reads, and how it is
// shown. Its file holds its endpoint, its load and the types it shows;
// serve, here, owns all the rest, the same for every page: the time
// queries may take, the answers to a bad request, a missing id and a
// failed query, and the page in HTML or JSON. A new page is a new file and
// a line in routes.
//
// Every transaction is read-only already: the console's pool opens its
// connections so (store.Options.ReadOnly), and its role may only SELECT.
type endpoint[T any] struct {
	// template names templates/<template>.html, nav the navigation entry
	// it lights.
	template, nav string
	// title is the page's title; with subject, followed by a space and
	// subject(data): "Command c-42".
	title   string
	subject func(T) string
	// thing is what the path's id names, for a 404 on errNotFound: "No
	// command with this id is stored."
	thing string
	// load reads the page within queryTimeout (ctx). It checks the
	// request's parameters first, refusing a bad one with a requestError
	// before any query; seeOther sends the client elsewhere.
	load func(ctx context.Context, db *pgxpool.Pool, r *http.Request, now time.Time) (T, error)
}

// route is an endpoint of any type, as the mux takes it.
type route interface {
	handler(h *Handler) http.HandlerFunc
}

// routes are the console's pages, by the mux's pattern.
var routes = []struct {
	pattern string
	page    route
}{
	{"GET /{$}", overviewPage},
	{"GET /commands", commandsPage},
	{"GET /commands/{id}", commandPage},
	{"GET /commands/{id}/payload/{key}", payloadPage},
	{"GET /messages", messagesPage},
	{"GET /messages/{device}/{id}", messagePage},
	{"GET /messages/{device}/{id}/payload/{key}", messagePayloadPage},
	{"GET /calls/{id}", callPage},
	{"GET /devices/{id}", devicePage},
	{"GET /stuck", stuckPage},
	{"GET /dead-letters", deadLettersPage},
	{"GET /dead-letters/{id}", deadLetterPage},
	{"GET /outcomes", outcomesPage},
	{"GET /webhooks", webhooksPage},
}

// queryTimeout bounds every page's queries.
const queryTimeout = 15 * time.Second

func (e endpoint[T]) handler(h *Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
		defer cancel()
		ctx = context.WithValue(ctx, stuckQuietKey{}, h.cfg.StuckQuiet)
		data, err := e.load(ctx, h.db, r, h.now().UTC())
		if err != nil {
			h.answerError(w, r, e.thing, err)
			return
		}
		if s, ok := any(data).(stream); ok {
			h.stream(w, r, e.thing, s)
			return
		}
		title := e.title
		if e.subject != nil {
			title += " " + e.subject(data)
		}
		h.render(w, r, http.StatusOK, e.template, title, e.nav, data)
	}
}

// requestError is a request a page refuses from its parameters alone,
// before any query: a 400 or a 404, with the text the client sees.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(msg string) error { return &requestError{status: http.StatusBadRequest, msg: msg} }

func notFound(msg string) error { return &requestError{status: http.StatusNotFound, msg: msg} }

// seeOther is a load's answer that the page is elsewhere: a 303 to it.
type seeOther string

func (s seeOther) Error() string { return "see " + string(s) }

// stream is a page that writes itself rather than being rendered: a
// payload's bytes, read as they are sent. It writes its status and headers
// once it knows it has found what it sends; an error before that (started
// false) is answered as any page's, one after it cuts the connection.
type stream func(w http.ResponseWriter) (started bool, err error)

func (h *Handler) stream(w http.ResponseWriter, r *http.Request, thing string, s stream) {
	started, err := s(w)
	switch {
	case err == nil:
	case !started:
		h.answerError(w, r, thing, err)
	default:
		// Part of it is sent: cut the connection, so that the client
		// sees a short body rather than a payload that seems whole.
		if r.Context().Err() == nil {
			h.log.Error("console: payload cut short", "page", r.URL.Path, "err", err)
		}
		panic(http.ErrAbortHandler)
	}
}

// answerError answers a load's error: a refused request, a redirect, a
// missing thing, or a failed query.
func (h *Handler) answerError(w http.ResponseWriter, r *http.Request, thing string, err error) {
	var bad *requestError
	var to seeOther
	switch {
	case errors.As(err, &bad):
		h.fail(w, r, bad.status, bad.msg)
	case errors.As(err, &to):
		http.Redirect(w, r, string(to), http.StatusSeeOther)
	default:
		h.dbFail(w, r, thing, err)
	}
}

// page is what every template gets.
type page struct {
	Title string
	Nav   string
	Now   time.Time
	Data  any
	Query url.Values
	Error string
}

func wantsJSON(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		if mt == "application/json" {
			return true
		}
	}
	return false
}

// render answers with data: JSON when asked for, else the page named.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name, title, nav string, data any) {
	w.Header().Add("Vary", "Accept")
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(data)
		return
	}
	pw := &pageWriter{w: w, status: status}
	err := h.pages[name].Execute(pw, page{Title: title, Nav: nav, Now: h.now().UTC(), Data: data, Query: r.URL.Query()})
	if err == nil {
		_ = pw.flush()
		return
	}
	h.log.Error("console: render", "page", name, "err", err)
	if !pw.sent {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	panic(http.ErrAbortHandler) // a page cut short must not look whole
}

// pageBuffer is how much of a page is held before it is sent: a template
// that fails within it still answers a clean 500. Past it the page streams
// to the client, never held whole.
const pageBuffer = 32 << 10

// pageWriter sends a page as html/template writes it, holding its start.
type pageWriter struct {
	w      http.ResponseWriter
	status int
	buf    []byte
	sent   bool
}

func (p *pageWriter) Write(b []byte) (int, error) {
	if !p.sent && len(p.buf)+len(b) <= pageBuffer {
		p.buf = append(p.buf, b...)
		return len(b), nil
	}
	if err := p.flush(); err != nil {
		return 0, err
	}
	return p.w.Write(b)
}

func (p *pageWriter) flush() error {
	if p.sent {
		return nil
	}
	p.sent = true
	p.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	p.w.WriteHeader(p.status)
	_, err := p.w.Write(p.buf)
	p.buf = nil
	return err
}

// problem is an error's JSON form.
type problem struct {
	Status int    `json:"status"`
	Error  string `json:"error"`
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.render(w, r, status, "error", http.StatusText(status), "", problem{Status: status, Error: msg})
}

// dbFail answers a failed query; errNotFound is a 404 page.
func (h *Handler) dbFail(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, errNotFound) {
		h.fail(w, r, http.StatusNotFound, "No "+what+" with this id is stored.")
		return
	}
	if r.Context().Err() != nil {
		return // the client went away
	}
	switch store.ClassifyError(err) {
	case store.ConnectionError, store.ShutdownError, store.ResourcesError, store.AuthError, store.CanceledError:
		// Down, restarting, full, refusing the console's role, or slower
		// than queryTimeout: not the console's fault, and it may pass.
		h.log.Error("console: the database did not answer: check that PostgreSQL is up and CMDTRACK_DATABASE_URL reaches it",
			"page", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "10")
		h.fail(w, r, http.StatusServiceUnavailable, "The database did not answer; try again.")
		return
	}
	h.log.Error("console: query failed", "page", r.URL.Path, "err", err)
	h.fail(w, r, http.StatusInternalServerError, "The database did not answer; try again.")
}
