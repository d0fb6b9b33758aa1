package store

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/notification"
)

// A batch writes only the headers not known to be stored: two writers used
// to insert every header of every batch, each waiting for the other's
// uncommitted insert of the same device's header (11 ms a statement in make
// bench). What a batch wrote is known once it has committed, and only then.
func TestBatchesWriteOnlyNewHeaders(t *testing.T) {
	s := simulate.GenerateN(simulate.Config{Seed: 3}, 200)
	var items []ingest.Item
	for _, m := range s.Messages {
		n, err := notification.Decode(m.Body)
		if err != nil {
			continue
		}
		items = append(items, ingest.Item{Source: "amqp:q", Record: &n})
	}
	queued := func(known *knownHeaders) (bool, []int64) {
		b := &pgx.Batch{}
		_, written := queueTracked(b, items, nil, false, known)
		for _, q := range b.QueuedQueries {
			if q.SQL == insertHeaders {
				return true, written
			}
		}
		return false, written
	}
	var known knownHeaders
	ok, written := queued(&known)
	require.True(t, ok, "a batch of new headers writes them")
	require.NotEmpty(t, written)
	ok, _ = queued(&known)
	require.True(t, ok, "until its batch has committed, a header is not known")
	known.add(written)
	ok, again := queued(&known)
	require.False(t, ok, "a batch whose headers are all stored writes none (again: %v)", again)
	require.Empty(t, again)
	ok, _ = queued(nil)
	require.True(t, ok, "nothing known, everything written")
}

func TestKnownHeadersAreBounded(t *testing.T) {
	var k knownHeaders
	for i := range maxKnownHeaders + 10 {
		k.add([]int64{int64(i)})
	}
	require.LessOrEqual(t, len(k.ids), maxKnownHeaders)
	require.Empty(t, k.unknown([]headerRow{{id: maxKnownHeaders + 9}}))
}
