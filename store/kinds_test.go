package store

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
)

// TestEveryKindHasAWriter: a kind ingest decodes and the store cannot
// write would panic the worker (writerOf); a writer for no kind is dead
// code. Both tables name the same kinds.
func TestEveryKindHasAWriter(t *testing.T) {
	t.Parallel()
	var written []string
	for _, w := range writers {
		written = append(written, w.kind)
	}
	require.ElementsMatch(t, ingest.Kinds(), written)
	require.Panics(t, func() { writerOf("no-such-kind") })
}
