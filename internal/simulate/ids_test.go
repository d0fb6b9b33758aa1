package simulate_test

import (
	"regexp"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/simulate"
)

// The platform allocates a command's id, a UUID (seed 002's example,
// b1224afb-e9f0-4916-8220-b6bab568e888), as callers choose a message's. The
// simulator's ids must look the same to the database as the platform's do:
// ids that rose one by one ("cmd-1-00000001", 14 characters) put every new
// command at the right edge of each index they lead, a cheaper insert than
// production ever pays, and made make bench's commands look cheaper than its
// device messages (docs/benchmarks.md, "The commands' ids as the platform's").
func TestCommandIDsAreThePlatforms(t *testing.T) {
	t.Parallel()
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	s := simulate.Generate(simulate.Config{Commands: 1000, Seed: 3})
	ids := make([]string, 0, len(s.Commands))
	for _, c := range s.Commands {
		require.Regexp(t, uuid, c.ID)
		ids = append(ids, c.ID)
	}
	require.Len(t, ids, 1000)
	require.False(t, slices.IsSorted(ids), "ids in the order of their commands, as a counter's are")
	slices.Sort(ids)
	require.Len(t, slices.Compact(ids), 1000, "an id twice")
	// Reproducible from the seed, and the seed's own.
	require.Equal(t, s.Commands[17].ID, simulate.Generate(simulate.Config{Commands: 1000, Seed: 3}).Commands[17].ID)
	require.NotEqual(t, s.Commands[17].ID, simulate.Generate(simulate.Config{Commands: 1000, Seed: 4}).Commands[17].ID)
}
