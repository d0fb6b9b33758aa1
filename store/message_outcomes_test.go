package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// outcomeEvent is one id of an outcome_events row.
type outcomeEvent struct{ kind, product, from, to string }

// outcomeEvents are the outcome events of kinds, by the id they name.
func outcomeEvents(t *testing.T, st *store.Store, kinds ...string) map[string][]outcomeEvent {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(),
		`SELECT kind, product_id, from_status, status, unnest(command_ids) FROM outcome_events WHERE kind = ANY($1)`, kinds)
	require.NoError(t, err)
	out := map[string][]outcomeEvent{}
	for rows.Next() {
		var e outcomeEvent
		var id string
		require.NoError(t, rows.Scan(&e.kind, &e.product, &e.from, &e.to, &id))
		out[id] = append(out[id], e)
	}
	require.NoError(t, rows.Err())
	return out
}

// Writers with and without OnChange, applying overlapping batches of device
// message notifications at once, with duplicates, contradicting final
// statuses and in any order: the database records each message reaching a
// final status once (a message is (device, message id): the same id on two
// devices is two), each replacement of a final status by another at most
// once, and the fold moves them to the totals unchanged.
func TestMessageOutcomesRecordedOnceAcrossWriters(t *testing.T) {
	t.Parallel()
	var log changeLog
	tracked, plain := setupTracking(t, &log)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(28, 19))
	const messages = 200
	var items []ingest.Item
	for c := range messages {
		device, id := fmt.Sprintf("dev-%d", c%2), fmt.Sprintf("msg-%03d", c/2) // ids reused across devices
		changes := messageChanges(rng, device, id)
		for _, m := range changes[:1+c%len(changes)] { // some stay PENDING, some change their final status
			it := ingest.Item{Source: "test", Record: &m}
			items = append(items, it, it)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for w, wst := range []*store.Store{tracked, plain, tracked, plain} {
		mine := append([]ingest.Item(nil), items...)
		wrng := rand.New(rand.NewPCG(uint64(w), 7))
		wrng.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
		g.Go(func() error {
			for len(mine) > 0 {
				n := min(len(mine), 1+wrng.IntN(64))
				var err error
				if w == 2 {
					_, err = wst.ApplyReportingChanges(gctx, mine[:n]) // reconcile's way
				} else {
					_, err = wst.Apply(gctx, mine[:n])
				}
				if err != nil {
					return err
				}
				mine = mine[n:]
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	require.Empty(t, log.take(), "messages tell OnChange nothing")

	stored := map[string]string{} // device/message -> status
	rows, err := plain.Pool().Query(ctx, `SELECT device_id || '/' || message_id, status FROM device_messages`)
	require.NoError(t, err)
	for rows.Next() {
		var id, status string
		require.NoError(t, rows.Scan(&id, &status))
		stored[id] = status
	}
	require.NoError(t, rows.Err())
	require.Len(t, stored, messages)

	finished := outcomeEvents(t, plain, store.KindMessageFinished)
	changed := outcomeEvents(t, plain, store.KindMessageFinalChanged)
	require.Empty(t, outcomeEvents(t, plain, store.KindFinished, store.KindFinalChanged), "no command events")
	final := 0
	for id, status := range stored {
		if !notification.MessageStatus(status).Final() {
			require.Empty(t, finished[id], "%s is %s, not finished", id, status)
			require.Empty(t, changed[id], "%s is %s", id, status)
			continue
		}
		final++
		require.Len(t, finished[id], 1, "%s finished once", id)
		// The final statuses replaced are a chain from the first final
		// status to the stored one, each link once: no change counted twice.
		next := map[string]string{}
		for _, e := range changed[id] {
			require.NotEqual(t, e.from, e.to, id)
			_, twice := next[e.from]
			require.False(t, twice, "%s: a change from %s recorded twice: %v", id, e.from, changed[id])
			next[e.from] = e.to
		}
		at := finished[id][0].to
		for range changed[id] {
			to, ok := next[at]
			require.True(t, ok, "%s: the changes %v do not follow from %s", id, changed[id], finished[id][0].to)
			at = to
		}
		require.Equal(t, status, at, "%s: the changes end at the stored status", id)
	}
	require.Positive(t, final)
	require.Less(t, final, messages, "some stay PENDING")
	require.NotEmpty(t, changed, "some final statuses are replaced")

	before := totals(t, plain)
	var n int64
	for k, v := range before {
		if strings.HasPrefix(k, store.KindMessageFinished+" ") {
			n += v
		}
	}
	require.Equal(t, int64(final), n)
	_, err = plain.FoldOutcomes(ctx)
	require.NoError(t, err)
	require.Equal(t, before, totals(t, plain), "the fold changes no total")
	require.Zero(t, count(t, plain, `SELECT count(*) FROM outcome_events`))
}

// A final message deleted by retention (which leaves a tombstone, migration
// 017) and heard of again is not recorded as finished again; the same
// message id on another device, and a message deleted while PENDING, are
// new finishes.
func TestMessageOutcomesAfterRetention(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	old := now.Add(-10 * 24 * time.Hour)
	msg := func(device, id string, s notification.MessageStatus, at time.Time) ingest.Item {
		return ingest.Item{Source: "test", Record: &notification.Message{DeviceID: device, MessageID: id, Status: s,
			EventTime: at, At: at, ProductID: "p1", Payload: []byte(`{}`)}}
	}
	apply := func(items ...ingest.Item) {
		t.Helper()
		_, err := st.Apply(ctx, items)
		require.NoError(t, err)
	}
	ids := func() map[string]int {
		out := map[string]int{}
		for id, es := range outcomeEvents(t, st, store.KindMessageFinished) {
			out[id] = len(es)
		}
		return out
	}
	apply(msg("d1", "m1", notification.MessagePending, old.Add(-time.Minute)), msg("d1", "open", notification.MessagePending, old))
	apply(msg("d1", "m1", notification.MessageFailed, old))
	require.Equal(t, map[string]int{"d1/m1": 1}, ids())
	_, err := st.FoldOutcomes(ctx)
	require.NoError(t, err)

	res, err := st.Prune(ctx, store.Retention{Commands: 7 * 24 * time.Hour}, now)
	require.NoError(t, err)
	require.Equal(t, int64(2), res.Messages)
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM message_tombstones WHERE device_id = 'd1' AND message_id = 'm1'`))

	apply(msg("d1", "m1", notification.MessageFailed, old), msg("d1", "open", notification.MessageDelivered, old.Add(time.Minute)),
		msg("d2", "m1", notification.MessageTimeout, old))
	apply(msg("d1", "m1", notification.MessageDelivered, old.Add(time.Minute)))
	require.Equal(t, map[string]int{"d1/open": 1, "d2/m1": 1}, ids(), "d1/m1 finished before")
	require.Equal(t, "DELIVERED", readMessage(t, st, "d1", "m1").Status, "the row is back")
	require.Equal(t, map[string][]outcomeEvent{"d1/m1": {{store.KindMessageFinalChanged, "p1", "FAILED", "DELIVERED"}}},
		outcomeEvents(t, st, store.KindMessageFinalChanged), "a final status replaced still counts")
}

// BenchmarkApplyMessages writes batches of 256 device message notifications
// (each message's messy lifecycle of messageChanges, shuffled across
// batches) into a fresh schema, and reports what the outcome events cost
// per notification: rows and bytes of outcome_events, before any fold.
func BenchmarkApplyMessages(b *testing.B) {
	const size = 256
	st, _, _ := testenv.Schema(b)
	rng := rand.New(rand.NewPCG(1, 2))
	var items []ingest.Item
	for i := 0; len(items) < b.N*size; i++ {
		for _, m := range messageChanges(rng, fmt.Sprintf("dev-%d", i%50), fmt.Sprintf("msg-%d", i)) {
			items = append(items, ingest.Item{Source: "bench", Record: &m})
		}
	}
	rng.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := st.Apply(ctx, items[i*size:(i+1)*size]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	n := float64(b.N * size)
	b.ReportMetric(n/b.Elapsed().Seconds(), "msgs/s")
	var rows, bytes float64
	if err := st.Pool().QueryRow(ctx, `SELECT count(*), coalesce(sum(pg_column_size(e.*)), 0) FROM outcome_events e`).Scan(&rows, &bytes); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(rows/n, "event-rows/msg")
	b.ReportMetric(bytes/n, "event-bytes/msg")
}
