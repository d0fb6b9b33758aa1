package console_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/console"
	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/store"
)

// The README's roles, as written there (with names of this test's own): an
// owner runs the migrations, cmdtrack_reader gets SELECT through default
// privileges, and the console logs in as a member of it. Every page answers,
// so migration 008 and those before leave nothing the console reads
// ungranted.
func TestReadmeReaderRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base := testenv.DatabaseURL(t)
	admin, err := store.Open(ctx, base, store.Options{MaxConns: 1})
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	owner, reader, login, schema := testenv.Name("owner_"), testenv.Name("reader_"), testenv.Name("console_"), testenv.Name("t_")
	exec := func(q string) {
		t.Helper()
		_, err := admin.Pool().Exec(ctx, q)
		require.NoError(t, err, q)
	}
	t.Cleanup(func() {
		for _, q := range []string{"DROP SCHEMA IF EXISTS " + schema + " CASCADE", "DROP OWNED BY " + login, "DROP OWNED BY " + reader,
			"DROP OWNED BY " + owner, "DROP ROLE " + login, "DROP ROLE " + reader, "DROP ROLE " + owner} {
			_, _ = admin.Pool().Exec(context.Background(), q)
		}
	})
	// README, "Roles".
	exec(`CREATE ROLE ` + owner + ` LOGIN PASSWORD 'owner-pw'`)
	exec(`CREATE ROLE ` + reader + ` NOLOGIN`)
	exec(`CREATE SCHEMA ` + schema + ` AUTHORIZATION ` + owner)
	exec(`ALTER ROLE ` + owner + ` SET search_path = ` + schema)
	exec(`GRANT USAGE ON SCHEMA ` + schema + ` TO ` + reader)
	exec(`ALTER DEFAULT PRIVILEGES FOR ROLE ` + owner + ` IN SCHEMA ` + schema + ` GRANT SELECT ON TABLES TO ` + reader)
	// README, "The console".
	exec(`CREATE ROLE ` + login + ` LOGIN PASSWORD 'console-pw' IN ROLE ` + reader)
	exec(`ALTER ROLE ` + login + ` SET search_path = ` + schema)

	as := func(role, pw string) string {
		u, err := url.Parse(base)
		require.NoError(t, err)
		u.User = url.UserPassword(role, pw)
		return u.String()
	}
	own, err := store.Open(ctx, as(owner, "owner-pw"), store.Options{MaxConns: 2})
	require.NoError(t, err)
	t.Cleanup(own.Close)
	require.NoError(t, own.Migrate(ctx))
	now := time.Now().UTC().Truncate(time.Second)
	lim := ingest.Limits{MaxBodyBytes: 1 << 20, MaxFutureSkew: time.Hour}
	_, err = own.Apply(ctx, []ingest.Item{
		ingest.Classify(notification("cmd-1", "dev-1", "prod-1", "SENT", now.Add(-time.Hour), now.Add(-59*time.Minute), nil, nil), "amqp:q", now, lim),
		ingest.Classify([]byte("not json"), "amqp:q", now, lim),
	})
	require.NoError(t, err)
	require.NoError(t, own.RefreshRollup(ctx, 3, now))
	var deadID int64
	require.NoError(t, own.Pool().QueryRow(ctx, `SELECT id FROM dead_letters`).Scan(&deadID))

	st, err := store.Open(ctx, as(login, "console-pw"), store.Options{MaxConns: 2, ReadOnly: true})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	h, err := console.NewHandler(st.Pool(), console.Config{Addr: console.DefaultAddr}, discard)
	require.NoError(t, err)
	srv := newServer(t, h)
	for _, p := range []string{"/", "/commands", "/commands?product=prod-1", "/commands/cmd-1", "/devices/dev-1", "/stuck",
		"/dead-letters", "/dead-letters/" + itoa(deadID), "/outcomes", "/webhooks"} {
		resp, body := get(t, srv, p, asJSON)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", p, body)
	}
	// And the role can only read, even with read-only transactions off.
	conn, err := st.Pool().Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, `SET default_transaction_read_only = off`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `DELETE FROM dead_letters`)
	require.ErrorContains(t, err, "permission denied")
}
