package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// delivery is a webhook_deliveries row as the fold tests compare them.
type delivery struct{ endpoint, webhookID, typ, subject, product, status, from string }

func deliveries(t *testing.T, st *store.Store) []delivery {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `SELECT endpoint, webhook_id, type, subject, product_id, status, from_status
		FROM webhook_deliveries ORDER BY endpoint, type, subject`)
	require.NoError(t, err)
	var out []delivery
	for rows.Next() {
		var d delivery
		require.NoError(t, rows.Scan(&d.endpoint, &d.webhookID, &d.typ, &d.subject, &d.product, &d.status, &d.from))
		out = append(out, d)
	}
	require.NoError(t, rows.Err())
	return out
}

// webhookIDs are the webhook-ids the events written so far are due, by
// kind and id: evt_<installation>_<outcome_events.id>_<ordinal in
// command_ids>; and when
// each was written, by webhook-id.
func webhookIDs(t *testing.T, st *store.Store) (ids map[string]string, at map[string]time.Time) {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(),
		`SELECT e.kind, s.id, 'evt_' || i.installation_id || '_' || e.id || '_' || s.n, e.at
		FROM outcome_events e, unnest(e.command_ids) WITH ORDINALITY s(id, n), cmdtrack_settings i`)
	require.NoError(t, err)
	ids, at = map[string]string{}, map[string]time.Time{}
	for rows.Next() {
		var kind, id, wid string
		var t0 time.Time
		require.NoError(t, rows.Scan(&kind, &id, &wid, &t0))
		ids[kind+" "+id], at[wid] = wid, t0
	}
	require.NoError(t, rows.Err())
	return ids, at
}

func command(id, product string, s notification.Status, at time.Time) ingest.Item {
	return ingest.Item{Source: "test", Record: &notification.Notification{
		CommandID: id, Status: s, EventTime: at, ProductID: product, Payload: []byte(`{}`)}}
}

// The fold dispatches each event once per id and route that takes it (by
// type and product), with a webhook-id the same for every endpoint; a
// second fold dispatches nothing more, and the totals are as without
// webhooks.
func TestFoldDispatchesToRoutes(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Now()
	apply(t, st, []ingest.Item{
		command("c1", "p1", notification.Successful, now), command("c3", "p1", notification.Successful, now), // one event, two ids
		command("c2", "p2", notification.Timeout, now),
		{Source: "test", Record: &notification.Message{DeviceID: "d1", MessageID: "m1", Status: notification.MessageDelivered,
			EventTime: now, At: now, ProductID: "p1", Payload: []byte(`{}`)}},
	})
	apply(t, st, []ingest.Item{command("c2", "p2", notification.Successful, now.Add(time.Second))}) // final changed
	ids, occurred := webhookIDs(t, st)
	require.Len(t, ids, 5)
	require.Regexp(t, `^evt_[0-9a-f]{16}_[0-9]+_2$`, ids[store.KindFinished+" c3"], "the second id of its event")
	before := totals(t, st)

	routes := []store.WebhookRoute{
		{Endpoint: "all"},
		{Endpoint: "finished-p1", Types: []string{store.KindFinished}, Products: []string{"p1"}},
		{Endpoint: "messages", Types: []string{store.KindMessageFinished, store.KindMessageFinalChanged}},
		{Endpoint: "p2", Products: []string{"p2", "p9"}},
		{Endpoint: "none", Products: []string{"p9"}},
	}
	setRoutes(t, st, routes...)
	n, err := st.FoldOutcomes(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(4), n)
	d := func(endpoint, typ, subject, product, status, from string) delivery {
		return delivery{endpoint, ids[typ+" "+subject], typ, subject, product, status, from}
	}
	want := []delivery{
		d("all", store.KindFinalChanged, "c2", "p2", "SUCCESSFUL", "TIMEOUT"),
		d("all", store.KindFinished, "c1", "p1", "SUCCESSFUL", ""),
		d("all", store.KindFinished, "c2", "p2", "TIMEOUT", ""),
		d("all", store.KindFinished, "c3", "p1", "SUCCESSFUL", ""),
		d("all", store.KindMessageFinished, "d1/m1", "p1", "DELIVERED", ""),
		d("finished-p1", store.KindFinished, "c1", "p1", "SUCCESSFUL", ""),
		d("finished-p1", store.KindFinished, "c3", "p1", "SUCCESSFUL", ""),
		d("messages", store.KindMessageFinished, "d1/m1", "p1", "DELIVERED", ""),
		d("p2", store.KindFinalChanged, "c2", "p2", "SUCCESSFUL", "TIMEOUT"),
		d("p2", store.KindFinished, "c2", "p2", "TIMEOUT", ""),
	}
	require.Equal(t, want, deliveries(t, st))
	require.Equal(t, before, totals(t, st), "the totals are as without webhooks")
	for wid, at := range occurred {
		// Due at once, but behind an earlier event of its subject (c2's
		// final status changed): that one waits.
		require.Equal(t, 1, count(t, st, `SELECT count(DISTINCT occurred_at) FROM webhook_deliveries d
			WHERE webhook_id = $1 AND occurred_at = $2 AND attempts = 0 AND state = 'pending'
				AND (next_attempt_at <= now()) = NOT EXISTS (SELECT FROM webhook_deliveries e
					WHERE e.endpoint = d.endpoint AND e.subject = d.subject AND e.id < d.id)`, wid, at),
			"%s: occurred when its event was written; due at once unless behind another", wid)
	}

	n, err = st.FoldOutcomes(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, want, deliveries(t, st), "dispatched once")
}

// Without routes the fold is what it was: the events folded, nothing
// dispatched.
func TestFoldWithoutRoutesDispatchesNothing(t *testing.T) {
	t.Parallel()
	st := setup(t)
	apply(t, st, []ingest.Item{command("c1", "p1", notification.Successful, time.Now())})
	for _, routes := range [][]store.WebhookRoute{nil, {}} {
		setRoutes(t, st, routes...)
		_, err := st.FoldOutcomes(context.Background())
		require.NoError(t, err)
	}
	require.Equal(t, map[string]int64{store.KindFinished + " p1 >SUCCESSFUL": 1}, totals(t, st))
	require.Zero(t, count(t, st, `SELECT count(*) FROM webhook_deliveries`))
}

// Folds (two at once, as replicas without the lease run them) concurrent
// with merges: every finished command is dispatched to each route exactly
// once, nothing lost, nothing doubled, and the deliveries agree with the
// totals.
func TestFoldConcurrentWithMerges(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	const commands = 400
	now := time.Now()
	var items []ingest.Item
	for i := range commands {
		id := fmt.Sprintf("c%03d", i)
		items = append(items, command(id, "p1", notification.Sent, now), command(id, "p1", notification.Successful, now.Add(time.Second)))
	}
	setRoutes(t, st, store.WebhookRoute{Endpoint: "a"}, store.WebhookRoute{Endpoint: "b", Types: []string{store.KindFinished}})
	var writing atomic.Int32
	writing.Store(2)
	g, gctx := errgroup.WithContext(ctx)
	for w := range 2 {
		mine := slices.Clone(items)
		rng := rand.New(rand.NewPCG(uint64(w), 29))
		rng.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
		g.Go(func() error {
			defer writing.Add(-1)
			for len(mine) > 0 {
				n := min(len(mine), 1+rng.IntN(16))
				if _, err := st.Apply(gctx, mine[:n]); err != nil {
					return err
				}
				mine = mine[n:]
			}
			return nil
		})
	}
	var folds [2]int
	for f := range folds {
		g.Go(func() error {
			for writing.Load() > 0 || folds[f] == 0 {
				if _, err := st.FoldOutcomes(gctx); err != nil {
					return err
				}
				folds[f]++
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	_, err := st.FoldOutcomes(ctx)
	require.NoError(t, err)
	t.Logf("folds during the merges: %v", folds)

	finished := totals(t, st)[store.KindFinished+" p1 >SUCCESSFUL"]
	require.Equal(t, int64(commands), finished)
	for _, endpoint := range []string{"a", "b"} {
		require.Equal(t, commands, count(t, st, `SELECT count(DISTINCT subject) FROM webhook_deliveries WHERE endpoint = $1`, endpoint))
		require.Equal(t, commands, count(t, st, `SELECT count(*) FROM webhook_deliveries WHERE endpoint = $1`, endpoint),
			"each once")
	}
	require.Zero(t, count(t, st, `SELECT count(*) FROM (SELECT webhook_id FROM webhook_deliveries GROUP BY webhook_id
		HAVING count(*) <> 2 OR count(DISTINCT subject) <> 1) x`), "one webhook-id per event, the same for both endpoints")
}

// outbox puts events of endpoint in the outbox, one per subject in order,
// and returns their ids.
func outbox(t *testing.T, st *store.Store, endpoint string, subjects ...string) []int64 {
	t.Helper()
	var ids []int64
	for _, s := range subjects {
		var id int64
		require.NoError(t, st.Pool().QueryRow(context.Background(), `INSERT INTO webhook_deliveries
			(endpoint, webhook_id, type, subject, product_id, status, from_status, occurred_at)
			VALUES ($1, 'evt_' || $2, 'command.finished', $2, 'p1', 'SUCCESSFUL', '', now()) RETURNING id`, endpoint, s).Scan(&id))
		ids = append(ids, id)
	}
	return ids
}

func claimed(t *testing.T, st *store.Store, endpoint string, n int, lease time.Duration) []int64 {
	t.Helper()
	evs, err := st.ClaimWebhooks(context.Background(), endpoint, n, lease, 0)
	require.NoError(t, err)
	ids := []int64{}
	for _, e := range evs {
		require.Equal(t, endpoint, e.Endpoint)
		ids = append(ids, e.ID)
	}
	return ids
}

// A claim takes the endpoint's due events, one per subject: a later event
// of a subject waits while an earlier one is leased, in backoff or
// pending, and goes once that one is delivered or has failed for good.
// Other subjects and other endpoints go meanwhile.
func TestClaimInOrderPerSubject(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	ids := outbox(t, st, "e", "A", "B", "A", "C", "B")
	a1, b1, a2, c1, b2 := ids[0], ids[1], ids[2], ids[3], ids[4]
	other := outbox(t, st, "f", "A")

	evs, err := st.ClaimWebhooks(ctx, "e", 10, time.Hour, 0)
	require.NoError(t, err)
	require.Len(t, evs, 3)
	for i, id := range []int64{a1, b1, c1} {
		require.Equal(t, id, evs[i].ID)
		require.Equal(t, 1, evs[i].Attempts)
		require.Equal(t, "p1", evs[i].ProductID)
		require.Equal(t, "evt_"+evs[i].Subject, evs[i].WebhookID)
	}
	require.Empty(t, claimed(t, st, "e", 10, time.Hour), "leased, and their later events wait")
	require.Equal(t, other, claimed(t, st, "f", 10, time.Hour), "another endpoint's A is its own")

	require.NoError(t, st.RetryWebhook(ctx, a1, 1, time.Now().Add(time.Hour), "HTTP 500"))
	require.Empty(t, claimed(t, st, "e", 10, time.Hour), "a2 waits while a1 is in backoff")
	_, err = st.Pool().Exec(ctx, `UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id = $1`, a1)
	require.NoError(t, err)
	require.Equal(t, []int64{a1}, claimed(t, st, "e", 10, time.Hour), "a1 due again, a2 still after it")

	require.NoError(t, st.WebhookDelivered(ctx, "e", tokens(2, a1)))
	require.NoError(t, st.FailWebhook(ctx, b1, 1, "HTTP 410 for a day"))
	require.Equal(t, []int64{a2, b2}, claimed(t, st, "e", 10, time.Hour), "a1 delivered, b1 failed for good")
}

// Claimers at once never take the same event: SKIP LOCKED passes over a
// row another claim holds instead of waiting for it.
func TestClaimSkipsLocked(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	subjects := make([]string, 300)
	for i := range subjects {
		subjects[i] = "s" + strconv.Itoa(i)
	}
	ids := outbox(t, st, "e", subjects...)

	// A row locked by another claim in progress is passed over at once.
	tx, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	// Should the claim fail, before the store is closed, which waits for
	// the transaction's connection.
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	_, err = tx.Exec(ctx, `SELECT FROM webhook_deliveries WHERE id = $1 FOR UPDATE`, ids[0])
	require.NoError(t, err)
	// A bound against a hang only: without SKIP LOCKED the claim waits for
	// the transaction, which ends after it.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	evs, err := st.ClaimWebhooks(wctx, "e", 2, time.Hour, 0)
	cancel()
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, ids[1], evs[0].ID)
	require.Equal(t, ids[2], evs[1].ID)

	got := make([][]int64, 4)
	g, gctx := errgroup.WithContext(ctx)
	for w := range got {
		g.Go(func() error {
			for {
				evs, err := st.ClaimWebhooks(gctx, "e", 7, time.Hour, 0)
				if err != nil || len(evs) == 0 {
					return err
				}
				for _, e := range evs {
					got[w] = append(got[w], e.ID)
				}
			}
		})
	}
	require.NoError(t, g.Wait())
	all := slices.Concat(got...)
	slices.Sort(all)
	require.Equal(t, slices.Concat(ids[:1], ids[3:]), all, "each once: the one passed over, and the rest")
	t.Logf("claimed by each claimer: %d %d %d %d", len(got[0]), len(got[1]), len(got[2]), len(got[3]))
}

// An event whose lease ran out unsettled (its worker died) is claimed
// again, one attempt more.
func TestClaimAfterLease(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	id := outbox(t, st, "e", "A")[0]
	evs, err := st.ClaimWebhooks(ctx, "e", 1, time.Millisecond, 0)
	require.NoError(t, err)
	require.Equal(t, 1, evs[0].Attempts)
	require.Eventually(t, func() bool {
		evs, err := st.ClaimWebhooks(ctx, "e", 1, time.Hour, 0)
		require.NoError(t, err)
		if len(evs) == 0 {
			return false
		}
		require.Equal(t, id, evs[0].ID)
		require.Equal(t, 2, evs[0].Attempts)
		return true
	}, time.Minute, 5*time.Millisecond)
	require.Empty(t, claimed(t, st, "e", 1, time.Hour), "leased again, for an hour")
}

// endpointRecord is a webhook_endpoints row.
type endpointRecord struct {
	delivered, failed int64
	success, failure  bool
	lastError         string
}

func record(t *testing.T, st *store.Store, endpoint string) endpointRecord {
	t.Helper()
	var r endpointRecord
	require.NoError(t, st.Pool().QueryRow(context.Background(), `SELECT delivered, failed, last_success_at IS NOT NULL,
		last_failure_at IS NOT NULL, coalesce(last_error, '') FROM webhook_endpoints WHERE endpoint = $1`, endpoint).
		Scan(&r.delivered, &r.failed, &r.success, &r.failure, &r.lastError))
	return r
}

// Delivered deletes the events and counts them once; Retry sets the next
// attempt and the error; Fail keeps the event, failed. Each writes the
// endpoint's record; settling an event settled already changes nothing.
func TestSettleWebhooks(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	ids := outbox(t, st, "e", "A", "B", "C", "D")
	claimed(t, st, "e", 10, time.Hour)

	require.NoError(t, st.WebhookDelivered(ctx, "e", tokens(1, ids[:2]...)))
	require.NoError(t, st.WebhookDelivered(ctx, "e", tokens(1, ids[:2]...)), "delivered twice (a lease ran out)")
	require.NoError(t, st.WebhookDelivered(ctx, "other", tokens(1, ids[2:3]...)), "not that endpoint's")
	require.NoError(t, st.WebhookDelivered(ctx, "e", nil))
	require.Equal(t, 2, count(t, st, `SELECT count(*) FROM webhook_deliveries`))
	require.Equal(t, endpointRecord{delivered: 2, success: true}, record(t, st, "e"))

	next := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	require.NoError(t, st.RetryWebhook(ctx, ids[2], 1, next, "HTTP 503"))
	var at time.Time
	var lastError string
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT next_attempt_at, last_error FROM webhook_deliveries WHERE id = $1`, ids[2]).
		Scan(&at, &lastError))
	require.True(t, next.Equal(at))
	require.Equal(t, "HTTP 503", lastError)
	require.Equal(t, endpointRecord{delivered: 2, success: true, failure: true, lastError: "HTTP 503"}, record(t, st, "e"))

	require.NoError(t, st.FailWebhook(ctx, ids[3], 1, "HTTP 500 for 24h"))
	require.NoError(t, st.FailWebhook(ctx, ids[3], 1, "again"), "failed already: nothing")
	require.NoError(t, st.RetryWebhook(ctx, ids[3], 1, next, "again"), "failed already: nothing")
	require.NoError(t, st.FailWebhook(ctx, ids[0], 1, "gone"), "delivered already: nothing")
	require.Equal(t, endpointRecord{delivered: 2, failed: 1, success: true, failure: true, lastError: "HTTP 500 for 24h"}, record(t, st, "e"))
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM webhook_deliveries WHERE id = $1 AND state = 'failed'
		AND failed_at IS NOT NULL AND last_error = 'HTTP 500 for 24h'`, ids[3]))
}

// Events failed for good are listed newest first, a page at a time, and
// replayed (some, an endpoint's, all): due at once, attempts from zero.
func TestReplayFailedWebhooks(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	e := outbox(t, st, "e", "A", "B", "C")
	f := outbox(t, st, "f", "A")
	claimed(t, st, "e", 10, time.Hour)
	claimed(t, st, "f", 10, time.Hour)
	for _, id := range append(slices.Clone(e), f...) {
		require.NoError(t, st.FailWebhook(ctx, id, 1, "HTTP 500 "+strconv.FormatInt(id, 10)))
	}
	failedIDs := func(endpoint string, limit int, before int64) []int64 {
		t.Helper()
		fs, err := st.FailedWebhooks(ctx, endpoint, limit, before)
		require.NoError(t, err)
		ids := []int64{}
		for _, w := range fs {
			require.Equal(t, "HTTP 500 "+strconv.FormatInt(w.ID, 10), w.LastError)
			require.False(t, w.FailedAt.IsZero())
			require.Equal(t, 1, w.Attempts)
			ids = append(ids, w.ID)
		}
		return ids
	}
	require.Equal(t, []int64{f[0], e[2], e[1], e[0]}, failedIDs("", 10, 0))
	require.Equal(t, []int64{e[2], e[1]}, failedIDs("e", 2, 0))
	require.Equal(t, []int64{e[0]}, failedIDs("e", 2, e[1]), "the next page")

	n, err := st.ReplayWebhooks(ctx, "e", []int64{e[1], f[0]})
	require.NoError(t, err)
	require.Equal(t, int64(1), n, "f's event is not e's")
	evs, err := st.ClaimWebhooks(ctx, "e", 10, time.Hour, 0)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, e[1], evs[0].ID)
	require.Equal(t, 1, evs[0].Attempts, "counted from zero")

	n, err = st.ReplayWebhooks(ctx, "f", nil)
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	n, err = st.ReplayWebhooks(ctx, "", []int64{})
	require.NoError(t, err)
	require.Zero(t, n, "no ids: none")
	n, err = st.ReplayWebhooks(ctx, "", nil)
	require.NoError(t, err)
	require.Equal(t, int64(2), n, "the rest: e's A and C")
	require.Empty(t, failedIDs("", 10, 0))
	require.Equal(t, []int64{e[0], e[2]}, claimed(t, st, "e", 10, time.Hour))
}

// The backlogs are each endpoint's pending and failed events and the
// oldest pending one's time, beside its record; an endpoint with a record
// and an empty outbox is listed with zeros.
func TestWebhookBacklogs(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	e := outbox(t, st, "e", "A", "B", "C")
	outbox(t, st, "f", "A")
	done := outbox(t, st, "g", "A")
	_, err := st.Pool().Exec(ctx, `UPDATE webhook_deliveries SET occurred_at = '2026-01-01T00:00:00Z' WHERE id = $1`, e[1])
	require.NoError(t, err)
	claimed(t, st, "e", 10, time.Hour)
	require.NoError(t, st.FailWebhook(ctx, e[2], 1, "HTTP 404"))
	require.NoError(t, st.WebhookDelivered(ctx, "g", tokens(0, done...)))

	bs, err := st.WebhookBacklogs(ctx)
	require.NoError(t, err)
	require.Len(t, bs, 3)
	require.Equal(t, []string{"e", "f", "g"}, []string{bs[0].Endpoint, bs[1].Endpoint, bs[2].Endpoint})
	require.Equal(t, int64(2), bs[0].Pending)
	require.Equal(t, int64(1), bs[0].Failed)
	require.Equal(t, int64(1), bs[0].FailedTotal)
	require.Equal(t, "HTTP 404", bs[0].LastError)
	require.False(t, bs[0].LastFailureAt.IsZero())
	require.True(t, bs[0].OldestPending.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
	require.Equal(t, int64(1), bs[1].Pending)
	require.False(t, bs[1].OldestPending.IsZero())
	require.Zero(t, bs[1].Failed)
	require.Equal(t, store.WebhookBacklog{Endpoint: "g", Delivered: 1, LastSuccessAt: bs[2].LastSuccessAt}, bs[2])
	require.False(t, bs[2].LastSuccessAt.IsZero())
}

// A replayed event's retry window starts at the replay: its Since is the
// replay's time, its OccurredAt (the payload's timestamp) stays.
func TestReplayRestartsTheRetryWindow(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	id := outbox(t, st, "e", "A")[0]
	_, err := st.Pool().Exec(ctx, `UPDATE webhook_deliveries SET occurred_at = now() - interval '3 days' WHERE id = $1`, id)
	require.NoError(t, err)
	evs, err := st.ClaimWebhooks(ctx, "e", 10, time.Hour, 0)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	occurred := evs[0].OccurredAt
	require.WithinDuration(t, occurred, evs[0].Since, 0, "never replayed: the window starts at the outcome")
	require.NoError(t, st.FailWebhook(ctx, id, 1, "HTTP 500"))

	var before time.Time
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT now()`).Scan(&before))
	n, err := st.ReplayWebhooks(ctx, "e", nil)
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	evs, err = st.ClaimWebhooks(ctx, "e", 10, time.Hour, 0)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.WithinDuration(t, occurred, evs[0].OccurredAt, 0, "the event's own time stays")
	require.False(t, evs[0].Since.Before(before), "the window starts at the replay: %v, replayed after %v", evs[0].Since, before)
	fs, err := st.FailedWebhooks(ctx, "", 10, 0)
	require.NoError(t, err)
	require.Empty(t, fs)
}
