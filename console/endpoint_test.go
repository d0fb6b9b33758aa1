package console

import (
	"context"
	"encoding/json"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// routeCase is a request to one route and what the wrapper answers it with.
type routeCase struct {
	path   string
	status int
	text   string // in the HTML page and the JSON problem alike
}

// routeCases are, for every route, a request that reaches the database and
// the requests its load refuses from their parameters alone. A route added
// to routes without its cases here fails the test.
var routeCases = map[string][]routeCase{
	"GET /{$}": {{path: "/"}},
	"GET /commands": {{path: "/commands?device=d"},
		{"/commands?since=yesterday", 400, `since: "yesterday" is not a time`},
		{"/commands?status=done&until=x", 400, `until: "x" is not a time: write 2026-11-30, 2026-11-30 10:02 (UTC) or RFC 3339; ` +
			"status must be one of PENDING, SENT"},
		{"/commands?command=a/b", http.StatusSeeOther, ""}},
	"GET /commands/{id}": {{path: "/commands/c?history=all"},
		{"/commands/c?after=2026-01-01T00:00:00Z", 400, "after, after_received and after_key are the cursor of the timeline's next page"}},
	"GET /commands/{id}/payload/{key}": {{path: "/commands/c/payload/00?at=2026-01-01T00:00:00Z"},
		{"/commands/c/payload/zz?at=2026-01-01T00:00:00Z", 404, "No notification with this key is stored."},
		{"/commands/c/payload/00?at=noon", 400, "at is the notification's event time (RFC 3339)"}},
	"GET /messages": {{path: "/messages?device=d&status=PENDING"},
		{"/messages?since=yesterday", 400, `since: "yesterday" is not a time`},
		{"/messages?status=SENT", 400, "status must be one of PENDING, DELIVERED, FAILED, TIMEOUT"},
		{"/messages?before=2026-01-01T00:00:00Z&before_seq=x", 400, "before and before_seq are the cursor of the next page"},
		{"/messages?before_seq=9", 400, "before and before_seq are the cursor of the next page"},
		// A Next link of before migration 026.
		{"/messages?before=2026-01-01T00:00:00Z&before_device=d&before_id=m", 400,
			"before_device and before_id are the cursor of an earlier version of this page: open /messages again"}},
	"GET /messages/{device}/{id}": {{path: "/messages/d/m?history=all"},
		{"/messages/d/m?after_key=zz", 400, "after, after_received and after_key are the cursor of the timeline's next page"}},
	"GET /messages/{device}/{id}/payload/{key}": {{path: "/messages/d/m/payload/00?at=2026-01-01T00:00:00Z"},
		{"/messages/d/m/payload/zz?at=2026-01-01T00:00:00Z", 404, "No notification with this key is stored."},
		{"/messages/d/m/payload/00?at=noon", 400, "at is the notification's event time (RFC 3339): follow the link on the message's page"}},
	"GET /calls/{id}":   {{path: "/calls/c"}},
	"GET /devices/{id}": {{path: "/devices/d"}},
	"GET /stuck": {{path: "/stuck?quiet=1h"},
		{"/stuck?quiet=-1m", 400, "quiet must be a duration such as 10m or 2h"}},
	"GET /dead-letters": {{path: "/dead-letters?class=x"},
		{"/dead-letters?before=2026-01-01&before_id=x", 400, "before and before_id are the cursor of the next page"}},
	"GET /dead-letters/{id}": {{path: "/dead-letters/1"},
		{"/dead-letters/x", 404, "No dead letter with this id is stored."}},
	"GET /outcomes": {{path: "/outcomes?days=7"},
		{"/outcomes?days=0", 400, "days must be a number from 1 to 366"}},
	"GET /webhooks": {{path: "/webhooks?endpoint=e&before_id=9"},
		{"/webhooks?before_id=x", 400, "before_id is the cursor of the next page: follow the Older link"}},
}

// Every route is served by the one wrapper: with the database down, each
// answers 503 with the same text and Retry-After, as a page and as JSON;
// the requests its load refuses are answered 400 or 404 (or redirected)
// before any query, which with the database down proves they made none.
func TestEveryRouteGoesThroughTheWrapper(t *testing.T) {
	t.Parallel()
	// A database that is down: a socket directory with no server in it.
	db, err := pgxpool.New(context.Background(), "host="+t.TempDir()+" user=console dbname=cmdtrack connect_timeout=5")
	require.NoError(t, err)
	t.Cleanup(db.Close)
	h, err := NewHandler(db, Config{Addr: DefaultAddr}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)

	var patterns []string
	for _, rt := range routes {
		patterns = append(patterns, rt.pattern)
	}
	var cased []string
	for p := range routeCases {
		cased = append(cased, p)
	}
	slices.Sort(patterns)
	slices.Sort(cased)
	require.Equal(t, patterns, cased, "every route has its cases in routeCases")

	for pattern, cases := range routeCases {
		for _, c := range cases {
			if c.status == 0 {
				c.status, c.text = http.StatusServiceUnavailable, "The database did not answer; try again."
			}
			for _, asJSON := range []bool{false, true} {
				r := httptest.NewRequest(http.MethodGet, c.path, nil)
				if asJSON {
					r.Header.Set("Accept", "application/json")
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				body := w.Body.String()
				require.Equal(t, c.status, w.Code, "%s: %s: %s", pattern, c.path, body)
				switch c.status {
				case http.StatusSeeOther:
					require.Equal(t, "/commands/a%2Fb", w.Header().Get("Location"), c.path)
					continue
				case http.StatusServiceUnavailable:
					require.Equal(t, "10", w.Header().Get("Retry-After"), c.path)
				}
				require.Equal(t, "Accept", w.Header().Get("Vary"), c.path)
				if !asJSON {
					require.Equal(t, "text/html; charset=utf-8", w.Header().Get("Content-Type"), c.path)
					require.Contains(t, html.UnescapeString(body), c.text, c.path)
					continue
				}
				require.Equal(t, "application/json", w.Header().Get("Content-Type"), c.path)
				var prob problem
				require.NoError(t, json.Unmarshal(w.Body.Bytes(), &prob), c.path)
				require.Equal(t, c.status, prob.Status, c.path)
				require.Contains(t, prob.Error, c.text, c.path)
			}
		}
	}
}
