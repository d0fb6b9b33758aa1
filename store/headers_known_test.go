package store

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/notification"
)

// A batch stores only the headers not known to be stored, and on their own,
// before it: in the batch, two writers bringing one new device's header
// waited for each other's whole batch (11 ms a statement in make bench).
// Without a known set (a caller's own transaction) the batch stores them.
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
	queued := func(known *knownHeaders) (bool, []headerRow) {
		b := &pgx.Batch{}
		_, fresh := queueTracked(b, items, nil, false, known)
		for _, q := range b.QueuedQueries {
			if q.SQL == insertHeaders {
				return true, fresh
			}
		}
		return false, fresh
	}
	var known knownHeaders
	inBatch, fresh := queued(&known)
	require.False(t, inBatch, "with a known set, the headers are stored before the batch")
	require.NotEmpty(t, fresh)
	ids := make([]int64, len(fresh))
	for i, h := range fresh {
		ids[i] = h.id
	}
	known.add(ids)
	_, again := queued(&known)
	require.Empty(t, again, "a batch whose headers are all stored brings none")
	inBatch, fresh = queued(nil)
	require.True(t, inBatch, "nothing known: the batch stores its headers itself")
	require.Empty(t, fresh)
}

func TestKnownHeadersAreBounded(t *testing.T) {
	var k knownHeaders
	for i := range maxKnownHeaders + 10 {
		k.add([]int64{int64(i)})
	}
	require.LessOrEqual(t, len(k.ids), maxKnownHeaders)
	require.Empty(t, k.unknown([]headerRow{{id: maxKnownHeaders + 9}}))
}
