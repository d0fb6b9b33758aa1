package console_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/console"
	"github.com/cmdtrack/cmdtrack/internal/syncbuf"
)

// Basic or bearer authentication over plain HTTP beyond loopback sends the
// credentials in clear text: the console starts, with a warning naming the
// settings that fix it.
func TestListenWarnsOfCredentialsWithoutTLS(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg  console.Config
		warn string
	}{
		{console.Config{Addr: "0.0.0.0:0", User: "support", Password: "s3cret"}, "CMDTRACK_CONSOLE_TLS_CERT"},
		{console.Config{Addr: "0.0.0.0:0", Token: "a-long-enough-token"}, "CMDTRACK_CONSOLE_TLS_CERT"},
		{console.Config{Addr: "0.0.0.0:0", AllowUnauthenticated: true}, "CMDTRACK_CONSOLE_ALLOW_UNAUTHENTICATED"},
		{console.Config{Addr: "127.0.0.1:0", User: "support", Password: "s3cret"}, ""},
		{console.Config{Addr: "127.0.0.1:0", Token: "a-long-enough-token"}, ""},
		{console.Config{Addr: "127.0.0.1:0"}, ""},
	} {
		var logs syncbuf.Buffer
		srv, err := console.Listen(c.cfg, http.NotFoundHandler(), slog.New(slog.NewTextHandler(&logs, nil)))
		require.NoError(t, err, "%+v", c.cfg)
		require.NoError(t, srv.Close())
		if c.warn == "" {
			require.NotContains(t, logs.String(), "level=WARN", "%+v", c.cfg)
			continue
		}
		require.Contains(t, logs.String(), "level=WARN", "%+v", c.cfg)
		require.Contains(t, logs.String(), c.warn, "%+v", c.cfg)
		require.Equal(t, 1, strings.Count(logs.String(), "\n"), "one line: %s", logs.String())
	}
}

// Whether the console is on loopback is decided by the address it actually
// bound, not by the name configured: a name that resolves to loopback is
// loopback, whatever its spelling.
func TestListenDecidesLoopbackByTheBoundAddress(t *testing.T) {
	t.Parallel()
	srv, err := console.Listen(console.Config{Addr: "LOCALHOST:0"}, http.NotFoundHandler(), discard)
	require.NoError(t, err, "LOCALHOST binds loopback")
	require.True(t, strings.HasPrefix(srv.Addr(), "127.0.0.1:"), srv.Addr())
	require.NoError(t, srv.Close())

	_, err = console.Listen(console.Config{Addr: "0.0.0.0:0"}, http.NotFoundHandler(), discard)
	require.ErrorIs(t, err, console.ErrUnauthenticated)
}
