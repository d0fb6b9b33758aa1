package main

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// The worker's order, as its components declare it: what needs the schema
// starts after migrations, the ops server and the push receiver answer
// before them, and only the ops server, the watchdog and the outcome
// exporter (the database's metrics) outlive the drain.
func TestWorkerComponentOrder(t *testing.T) {
	t.Parallel()
	var names []string
	var serving []string
	for _, c := range (&worker{}).components() {
		names = append(names, c.Name)
		if c.Stop == stopServing {
			serving = append(serving, c.Name)
		}
	}
	migrations := slices.Index(names, "migrations")
	require.Positive(t, migrations)
	for _, n := range []string{"pipeline", "watchdog", "upkeep", "outcome exporter", "reconciler"} {
		require.Greater(t, slices.Index(names, n), migrations, "%s needs the schema", n)
	}
	for _, n := range []string{"ops server", "HTTP push receiver"} {
		require.Less(t, slices.Index(names, n), migrations, "%s answers at once", n)
	}
	require.ElementsMatch(t, []string{"ops server", "watchdog", "outcome exporter"}, serving)
}
