package store_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/store"
)

// cmdtrack's statements are short, and PostgreSQL's JIT compiles any
// whose estimate passes jit_above_cost: the webhooks' fold, estimated high
// for tables never analyzed, spent 885 ms compiling to move 50 events,
// every second. The pool turns it off, unless the URL says otherwise.
func TestPoolRunsWithoutJIT(t *testing.T) {
	t.Parallel()
	base := testenv.DatabaseURL(t)
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	for url, want := range map[string]string{base: "off", base + sep + "jit=on": "on"} {
		st, err := store.Open(t.Context(), url, store.Options{MaxConns: 1})
		require.NoError(t, err)
		var jit string
		require.NoError(t, st.Pool().QueryRow(t.Context(), `SHOW jit`).Scan(&jit))
		st.Close()
		require.Equal(t, want, jit, "jit with %s", strings.TrimPrefix(url, base))
	}
}
