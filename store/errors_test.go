package store_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
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
		{&net.OpError{Op: "dial", Err: errors.New("refused")}, store.ConnectionError, true},
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
