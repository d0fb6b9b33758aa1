package store

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/notification"
)

// A batch's statements never store headers (Apply stores the new ones
// before it, on their own: in the batch, two writers bringing one new
// device's header waited for each other's whole batch, 11 ms a statement in
// make bench), and the headers known are the ones not stored again; for
// every kind whose history keeps them once.
func TestBatchesWriteOnlyNewHeaders(t *testing.T) {
	s := simulate.GenerateN(simulate.Config{Seed: 3, MessageShare: 0.5}, 400)
	byKind := map[string][]ingest.Item{}
	for _, m := range s.Messages {
		it := ingest.Classify(m.Body, "amqp:q", time.Now(), ingest.Limits{MaxBodyBytes: 1 << 20})
		if it.Record != nil {
			byKind[it.Record.Kind()] = append(byKind[it.Record.Kind()], it)
		}
	}
	for _, kind := range []string{notification.KindCommand, notification.KindMessage} {
		t.Run(kind, func(t *testing.T) {
			items := byKind[kind]
			hs := batchHeaders(items)
			require.NotEmpty(t, hs)
			var known knownHeaders
			require.Len(t, known.unknown(batchHeaders(items)), len(hs), "nothing known")
			b := &pgx.Batch{}
			queueTracked(b, items, nil, false, &known)
			for _, q := range b.QueuedQueries {
				require.NotEqual(t, insertHeaders, q.SQL, "a batch stores no header")
			}
			known.learn(hs)
			require.Empty(t, known.unknown(batchHeaders(items)), "all known")
			require.True(t, known.holds(hs[0].id, hs[0].text))
		})
	}
}

// A header is cut only against the text stored under its id: another text
// under it (a collision) is not that header.
func TestKnownHeadersHoldTheirText(t *testing.T) {
	var k knownHeaders
	k.learn([]headerRow{{id: 7, text: []byte(`{"device_id":"a"}`)}})
	require.True(t, k.holds(7, []byte(`{"device_id":"a"}`)))
	require.False(t, k.holds(7, []byte(`{"device_id":"b"}`)), "a collision")
	require.False(t, k.holds(8, []byte(`{"device_id":"a"}`)))
	var none *knownHeaders
	require.False(t, none.holds(7, []byte(`{"device_id":"a"}`)), "nil knows nothing")
}

func TestKnownHeadersAreBounded(t *testing.T) {
	var k knownHeaders
	text := make([]byte, 1000)
	for i := range maxKnownHeaderBytes/1000 + 10 {
		k.learn([]headerRow{{id: int64(i), text: text}})
	}
	require.LessOrEqual(t, k.bytes, maxKnownHeaderBytes)
	require.True(t, k.holds(maxKnownHeaderBytes/1000+9, text))
}

// A kind whose decoder places the header (writers' header) has a writer
// that cuts it, and only such a kind: a header stored and never cut out
// would cost a statement and save nothing.
func TestHeadedKindsCutTheirHeaders(t *testing.T) {
	for _, w := range writers {
		_, cuts := w.new().(headerWriter)
		require.Equal(t, w.header != nil, cuts, w.kind)
	}
}
