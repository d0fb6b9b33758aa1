package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/pipeline"
	"github.com/cmdtrack/cmdtrack/store"
)

// The store's errors are what the pipeline reads them as.
var _ pipeline.WriteError = (*store.Error)(nil)

// The store translates its driver's errors where they leave it: retry or
// not, and whose fault, with pgx's error still inside for whoever needs it.
func TestErrorsTranslatedAtTheBoundary(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err   error
		class store.ErrorClass
		retry bool
	}{
		{&pgconn.PgError{Code: "22P02"}, store.DataError, false},
		{&pgconn.PgError{Code: "23505"}, store.DataError, false},
		{&pgconn.PgError{Code: "40P01"}, store.DeadlockError, true},
		{&pgconn.PgError{Code: "42501"}, store.PrivilegeError, true},
		{&pgconn.PgError{Code: "42P01"}, store.SchemaError, true},
		{&pgconn.PgError{Code: "28P01"}, store.AuthError, true},
		{&pgconn.PgError{Code: "57P01"}, store.ShutdownError, true},
		// A session on a server that no longer takes writes: the old
		// primary of a failover, still reached (TestReadOnlySessionIsDropped).
		{&pgconn.PgError{Code: "25006"}, store.ReadOnlyError, true},
		{&net.OpError{Op: "dial", Err: errors.New("refused")}, store.ConnectionError, true},
		// What pgx returns when the connection ends mid-query (a backend
		// or its host gone, a failover): TestConnectionDroppedMidQuery.
		{io.ErrUnexpectedEOF, store.ConnectionError, true},
		{io.EOF, store.ConnectionError, true},
		{context.DeadlineExceeded, store.CanceledError, true},
		{errors.New("something else"), store.OtherError, true},
	} {
		err := store.InterpretError(fmt.Errorf("apply batch of 3: %w", c.err))
		var werr pipeline.WriteError
		require.ErrorAs(t, err, &werr)
		require.Equal(t, string(c.class), werr.Class(), "%v", c.err)
		require.Equal(t, c.retry, werr.Retry(), "%v", c.err)
		require.ErrorIs(t, err, c.err, "the driver's error is still inside")
		require.Equal(t, c.class, store.ClassifyError(fmt.Errorf("again: %w", err)))
	}
	require.NoError(t, store.InterpretError(nil))
}

// Apply's errors come translated: a store with no database behind it.
func TestApplyErrorsAreTranslated(t *testing.T) {
	t.Parallel()
	st, err := store.Open(t.Context(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1", store.Options{})
	require.NoError(t, err)
	defer st.Close()
	_, err = st.Apply(t.Context(), []ingest.Item{ingest.Unusable("test", []byte("x"), notification.ClassInvalidJSON, "x")})
	var werr pipeline.WriteError
	require.ErrorAs(t, err, &werr)
	require.True(t, werr.Retry())
	require.Equal(t, string(store.ConnectionError), werr.Class())
}

// A connection that ends mid-query with no word from the server (its
// backend killed, its host gone, a failover) is a connection error, and the
// database is away: an alert on the connection class sees it, and the
// worker retries it quickly. A real one, from pgx, through a proxy that
// hangs up while a query runs.
func TestConnectionDroppedMidQuery(t *testing.T) {
	t.Parallel()
	base := testenv.DatabaseURL(t)
	proxy, url := testenv.NewProxy(t, base)
	app := testenv.Name("hangup_")
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	st, err := store.Open(t.Context(), url+sep+"application_name="+app, store.Options{MaxConns: 1})
	require.NoError(t, err)
	defer st.Close()
	admin, err := store.Open(t.Context(), base, store.Options{MaxConns: 1})
	require.NoError(t, err)
	defer admin.Close()
	defer func() {
		_, _ = admin.Pool().Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, app)
	}()

	errc := make(chan error, 1)
	go func() {
		// With an argument, as the store's writes have: the extended
		// protocol. (Without, pgx's simple protocol says "conn closed",
		// which was a connection error already.)
		_, err := st.Pool().Exec(context.Background(), `SELECT pg_sleep($1)`, 60)
		errc <- err
	}()
	require.Eventually(t, func() bool {
		return testenv.Count(t, admin.Pool(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'`, app) == 1
	}, 30*time.Second, 10*time.Millisecond, "the query never ran")
	proxy.Hangup()
	select {
	case err = <-errc:
	case <-time.After(30 * time.Second):
		t.Fatal("the query did not fail when its connection ended")
	}
	require.ErrorIs(t, err, io.ErrUnexpectedEOF, "what pgx says (%v)", err)
	require.Equal(t, store.ConnectionError, store.ClassifyError(err), "%v", err)
	require.True(t, store.Unavailable(err))
	var werr interface{ RetrySoon() bool }
	require.ErrorAs(t, store.InterpretError(err), &werr)
	require.True(t, werr.RetrySoon(), "the pipeline retries it soon")
}

// A pooled connection to a server that went read-only (the old primary of a
// failover behind one DNS name, a session that stayed open to it) fails every
// write with SQLSTATE 25006: that is retried soon, like a connection lost,
// and the store drops the connection so that the retry gets a fresh one
// rather than the same read-only session again. The session here is made
// read-only by hand, on the pool's only connection.
func TestReadOnlySessionIsDropped(t *testing.T) {
	t.Parallel()
	_, _, url := testenv.Schema(t)
	st, err := store.Open(t.Context(), url, store.Options{MaxConns: 1})
	require.NoError(t, err)
	defer st.Close()
	item := func(id string) []ingest.Item {
		return []ingest.Item{{Source: "test", Record: &notification.Notification{
			CommandID: id, Status: notification.Sent, EventTime: time.Now(), Payload: []byte(`{}`)}}}
	}
	var before int
	require.NoError(t, st.Pool().QueryRow(t.Context(), `SELECT pg_backend_pid()`).Scan(&before))
	_, err = st.Pool().Exec(t.Context(), `SET default_transaction_read_only = on`)
	require.NoError(t, err)

	_, err = st.Apply(t.Context(), item("ro1"))
	require.Error(t, err)
	require.Equal(t, store.ReadOnlyError, store.ClassifyError(err), "%v", err)
	var werr interface {
		Retry() bool
		RetrySoon() bool
	}
	require.ErrorAs(t, err, &werr)
	require.True(t, werr.Retry(), "%v", err)
	require.True(t, werr.RetrySoon(), "the pipeline retries it soon: %v", err)
	require.True(t, store.Unavailable(err), "%v", err)

	_, err = st.Apply(t.Context(), item("ro1"))
	require.NoError(t, err, "the retry got the same read-only session again")
	var after int
	require.NoError(t, st.Pool().QueryRow(t.Context(), `SELECT pg_backend_pid()`).Scan(&after))
	require.NotEqual(t, before, after, "the read-only session was handed out again")
	require.Equal(t, 1, testenv.Count(t, st.Pool(), `SELECT count(*) FROM device_commands WHERE command_id = 'ro1'`))
}

// The outage's log lines name the hosts a URL lists, in its order, and
// nothing of its credentials.
func TestHosts(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"db1.example:5432", "db2.example:6432", "[::1]:5433"},
		store.Hosts("postgres://u:secret@db1.example,db2.example:6432,[::1]:5433/d?target_session_attrs=read-write"))
	require.Equal(t, []string{"127.0.0.1:54341", "127.0.0.1:54342"},
		store.Hosts("host=127.0.0.1,127.0.0.1 port=54341,54342 user=u password=secret sslmode=prefer"),
		"sslmode=prefer's second try of each host is not another host")
	require.Nil(t, store.Hosts("postgres://%zz"))
}
