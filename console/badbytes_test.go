package console_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/console"
	"github.com/cmdtrack/cmdtrack/internal/syncbuf"
	"github.com/cmdtrack/cmdtrack/store"
)

// Bytes PostgreSQL refuses in text (invalid UTF-8, NUL), in any id or
// filter of any route: a clear 400 (404 for an id in the path) before any
// query, and nothing logged as an error.
func TestBadBytesRefusedBeforeTheDatabase(t *testing.T) {
	t.Parallel()
	f := setup(t)
	st, err := store.Open(context.Background(), f.reader, store.Options{MaxConns: 4, ReadOnly: true})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	var logs syncbuf.Buffer
	h, err := console.NewHandler(st.Pool(), console.Config{Addr: console.DefaultAddr}, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	base := newServer(t, h)

	const before = "before=2026-01-01T00:00:00Z"
	for _, bad := range []string{"%FF", "%00", "%C3%28", "ok%00ok", "ok%FFok"} {
		paths := []string{
			"/commands/" + bad, "/devices/" + bad, "/dead-letters/" + bad,
			"/commands/" + bad + "/payload/00?at=2026-01-01T00:00:00Z",
			"/commands/" + f.valve + "/payload/" + bad + "?at=2026-01-01T00:00:00Z",
			"/messages/" + bad + "/m", "/messages/meter-4711/" + bad, "/calls/" + bad,
			"/messages/meter-4711/" + f.msgFailed + "/payload/" + bad + "?at=2026-01-01T00:00:00Z",
		}
		for _, p := range paths {
			for _, hdr := range []map[string]string{nil, asJSON} {
				resp, body := get(t, base, p, hdr)
				require.Equal(t, http.StatusNotFound, resp.StatusCode, "%s: %s", p, body)
			}
		}
		queries := []string{
			"/?x=" + bad,
			"/commands?device=" + bad, "/commands?product=" + bad, "/commands?status=" + bad,
			"/commands?since=" + bad, "/commands?until=" + bad, "/commands?command=" + bad,
			"/commands?" + before + "&before_id=" + bad, "/commands?before=" + bad + "&before_id=x",
			"/commands?device=meter-4711&product=" + bad, "/commands?" + bad + "=x",
			"/commands/" + f.valve + "?history=" + bad, "/commands/" + f.valve + "?after=" + bad,
			"/commands/" + f.valve + "?history=all&after=2026-01-01T00:00:00Z&after_received=2026-01-01T00:00:00Z&after_key=" + bad,
			"/commands/" + f.valve + "/payload/00?at=" + bad,
			"/devices/meter-4711?x=" + bad,
			"/stuck?quiet=" + bad,
			"/dead-letters?class=" + bad, "/dead-letters?" + before + "&before_id=" + bad, "/dead-letters/1?x=" + bad,
			"/outcomes?product=" + bad, "/outcomes?days=" + bad, "/outcomes?product=gas-meter&days=7&x=" + bad,
			"/messages?device=" + bad, "/messages?product=" + bad, "/messages?status=" + bad, "/messages?since=" + bad,
			"/messages?" + before + "&before_seq=" + bad, "/messages?" + before + "&before_device=d&before_id=" + bad,
			"/messages/meter-4711/" + f.msgFailed + "?after=" + bad, "/calls/" + f.callSync + "?x=" + bad,
			"/messages/meter-4711/" + f.msgFailed + "/payload/00?at=" + bad,
			"/webhooks?endpoint=" + bad, "/webhooks?before_id=" + bad,
		}
		for _, p := range queries {
			resp, body := get(t, base, p, nil)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s: %s", p, body)
			require.Contains(t, body, "UTF-8", p)
			var prob struct {
				Status int    `json:"status"`
				Error  string `json:"error"`
			}
			resp = getJSON(t, base, p, &prob)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, p)
			require.Contains(t, prob.Error, "UTF-8", p)
		}
	}
	require.NotContains(t, logs.String(), "level=ERROR")
}

// A database that is down is 503 with the console's clear text, not 500.
func TestDatabaseDownIs503(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())
	db, err := pgxpool.New(context.Background(), "postgres://console:pw@"+closed+"/cmdtrack?connect_timeout=5")
	require.NoError(t, err)
	t.Cleanup(db.Close)
	var logs syncbuf.Buffer
	h, err := console.NewHandler(db, console.Config{Addr: console.DefaultAddr}, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	base := newServer(t, h)
	for _, p := range []string{"/", "/commands", "/commands?device=d", "/commands/c", "/commands/c?history=all",
		"/commands/c/payload/00?at=2026-01-01T00:00:00Z", "/devices/d", "/stuck", "/dead-letters", "/dead-letters/1",
		"/outcomes", "/messages", "/messages?product=p", "/messages/d/m", "/messages/d/m/payload/00?at=2026-01-01T00:00:00Z",
		"/calls/c", "/webhooks", "/webhooks?endpoint=e&before_id=9"} {
		resp, body := get(t, base, p, nil)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s: %s", p, body)
		require.Contains(t, body, "The database did not answer", p)
		var prob struct {
			Status int    `json:"status"`
			Error  string `json:"error"`
		}
		resp = getJSON(t, base, p, &prob)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, p)
		require.Equal(t, 503, prob.Status)
	}
	require.Contains(t, logs.String(), "CMDTRACK_DATABASE_URL", "the log names what to check")
}
