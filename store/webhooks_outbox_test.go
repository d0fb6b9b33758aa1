package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// heldBack says, by id, which of endpoint's pending rows are out of the
// claim's due range (next_attempt_at infinity).
func heldBack(t *testing.T, st *store.Store, endpoint string) map[int64]bool {
	t.Helper()
	return pendingRows(t, st, endpoint, `next_attempt_at = 'infinity'`)
}

// holding says, by id, which of endpoint's pending rows say an event
// waits behind them (holds, migration 028).
func holding(t *testing.T, st *store.Store, endpoint string) map[int64]bool {
	t.Helper()
	return pendingRows(t, st, endpoint, `holds`)
}

// pendingRows is what the boolean expression what says of each of
// endpoint's pending rows, by id.
func pendingRows(t *testing.T, st *store.Store, endpoint, what string) map[int64]bool {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `SELECT id, `+what+` FROM webhook_deliveries
		WHERE endpoint = $1 AND state = 'pending'`, endpoint)
	require.NoError(t, err)
	out := map[int64]bool{}
	for rows.Next() {
		var id int64
		var v bool
		require.NoError(t, rows.Scan(&id, &v))
		out[id] = v
	}
	require.NoError(t, rows.Err())
	return out
}

// pendingOf are the ids of subject's pending rows of endpoint, in order.
func pendingOf(t *testing.T, st *store.Store, endpoint, subject string) []int64 {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `SELECT id FROM webhook_deliveries
		WHERE endpoint = $1 AND subject = $2 AND state = 'pending' ORDER BY id`, endpoint, subject)
	require.NoError(t, err)
	ids := []int64{}
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	return ids
}

// A subject's events behind a pending one are out of the claim's due
// range (next_attempt_at infinity), so that a claim never walks them
// (review finding 1): whether they come in the fold that brings the first
// or in a later one. The next is made due when the one before it is
// delivered, or has failed for good; a replay puts an earlier event back
// in front and the later ones behind it again.
func TestHeldBackEventsWaitOutOfTheDueRange(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	setRoutes(t, st, store.WebhookRoute{Endpoint: "e"})
	now := time.Now()
	// c1: finished, then its final status changed, in one fold; then
	// changed again in a later fold.
	apply(t, st, []ingest.Item{command("c1", "p1", notification.Timeout, now)})
	apply(t, st, []ingest.Item{command("c1", "p1", notification.Successful, now.Add(time.Second))})
	foldAll(t, st)
	apply(t, st, []ingest.Item{command("c1", "p1", notification.Failed, now.Add(2*time.Second))})
	foldAll(t, st)
	ids := pendingOf(t, st, "e", "c1")
	require.Len(t, ids, 3)
	require.Equal(t, map[int64]bool{ids[0]: false, ids[1]: true, ids[2]: true}, heldBack(t, st, "e"),
		"the first due, those behind it held back")
	require.Equal(t, map[int64]bool{ids[0]: true, ids[1]: true, ids[2]: false}, holding(t, st, "e"),
		"those with one behind them say so, whichever fold put it there")

	evs := claim(t, st, "e")
	require.Len(t, evs, 1)
	require.NoError(t, deliveredEv(ctx, st, evs[0]))
	require.Equal(t, map[int64]bool{ids[1]: false, ids[2]: true}, heldBack(t, st, "e"), "the next made due by the delivery")

	evs = claim(t, st, "e")
	require.Equal(t, ids[1], evs[0].ID)
	require.NoError(t, failEv(ctx, st, evs[0], "HTTP 410"))
	require.Equal(t, map[int64]bool{ids[2]: false}, heldBack(t, st, "e"), "the next made due by the failure")

	// The failed one replayed goes in front again: the later one waits
	// behind it, out of the due range, until it is delivered.
	n, err := st.ReplayWebhooks(ctx, "e", nil)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.Equal(t, map[int64]bool{ids[1]: false, ids[2]: true}, heldBack(t, st, "e"), "replayed: in front again")
	evs = claim(t, st, "e")
	require.Len(t, evs, 1)
	require.Equal(t, ids[1], evs[0].ID)
	require.NoError(t, deliveredEv(ctx, st, evs[0]))
	evs = claim(t, st, "e")
	require.Len(t, evs, 1)
	require.Equal(t, ids[2], evs[0].ID)
}

// A delivered event's settle and a fold that goes behind it at once: the
// event behind it is made due whichever takes the row first. A settle
// that waited for the fold finds the row marked (holds) once the fold
// commits, and settles it with its subject's next event; a fold that
// waited for the settle finds the row gone and puts its event in the due
// range itself.
func TestSettleAndFoldBehindItAtOnce(t *testing.T) {
	t.Parallel()
	for _, first := range []string{"fold", "settle"} {
		t.Run(first+" first", func(t *testing.T) {
			t.Parallel()
			st := setup(t)
			ctx := context.Background()
			setRoutes(t, st, store.WebhookRoute{Endpoint: "e"})
			now := time.Now()
			apply(t, st, []ingest.Item{command("c1", "p1", notification.Timeout, now)})
			foldAll(t, st)
			evs := claim(t, st, "e")
			require.Len(t, evs, 1)
			a := evs[0]
			apply(t, st, []ingest.Item{command("c1", "p1", notification.Successful, now.Add(time.Second))})

			tx, err := st.Pool().Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(ctx) }()
			var pid int
			require.NoError(t, tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
			done := make(chan error, 1)
			if first == "fold" {
				_, err = tx.Exec(ctx, store.FoldOutcomesSQL)
				require.NoError(t, err)
				go func() { done <- deliveredEv(ctx, st, a) }()
			} else {
				_, err = tx.Exec(ctx, store.SettleDeliveredSQL, "e", []int64{a.ID}, []int32{int32(a.Attempts)}, false)
				require.NoError(t, err)
				go func() { _, err := st.FoldOutcomes(ctx); done <- err }()
			}
			waitBlockedBy(t, st, pid)
			require.NoError(t, tx.Commit(ctx))
			require.NoError(t, <-done)

			b := pendingOf(t, st, "e", "c1")
			require.Len(t, b, 1, "the delivered event gone, the final_changed one pending")
			require.Equal(t, map[int64]bool{b[0]: false}, heldBack(t, st, "e"), "due: nothing before it")
			evs = claim(t, st, "e")
			require.Len(t, evs, 1)
			require.Equal(t, "command.final_changed", evs[0].Type)
		})
	}
}

// waitBlockedBy waits until a backend of st's database waits for a lock
// that the backend pid holds.
func waitBlockedBy(t *testing.T, st *store.Store, pid int) {
	t.Helper()
	require.Eventually(t, func() bool {
		var n int
		err := st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND $1 = ANY (pg_blocking_pids(pid))`, pid).Scan(&n)
		return err == nil && n > 0
	}, time.Minute, 10*time.Millisecond, "nothing came to wait for the open transaction")
}

func claim(t *testing.T, st *store.Store, endpoint string) []store.WebhookEvent {
	t.Helper()
	evs, err := st.ClaimWebhooks(context.Background(), endpoint, 10, time.Hour, 0)
	require.NoError(t, err)
	return evs
}

// Two installations (two databases, or one rebuilt) never give one
// webhook-id to two events (review finding 4): receivers deduplicating on
// it would drop real ones.
func TestWebhookIDsDifferAcrossInstallations(t *testing.T) {
	t.Parallel()
	var ids []string
	for range 2 {
		st := setup(t)
		setRoutes(t, st, store.WebhookRoute{Endpoint: "e"})
		apply(t, st, []ingest.Item{command("c1", "p1", notification.Successful, time.Now())})
		foldAll(t, st)
		evs := claim(t, st, "e")
		require.Len(t, evs, 1)
		require.Regexp(t, `^evt_[0-9a-f]{16}_[0-9]+_1$`, evs[0].WebhookID)
		ids = append(ids, evs[0].WebhookID)
	}
	require.NotEqual(t, ids[0], ids[1])
}

// setRoutes makes routes the fold's, as a worker with those settings does
// at start.
func setRoutes(t *testing.T, st *store.Store, routes ...store.WebhookRoute) {
	t.Helper()
	_, _, err := st.SetWebhookRoutes(context.Background(), routes, "not in the test's routes")
	require.NoError(t, err)
}

func foldAll(t *testing.T, st *store.Store) {
	t.Helper()
	_, err := st.FoldOutcomes(context.Background())
	require.NoError(t, err)
}

func deliveredEv(ctx context.Context, st *store.Store, ev store.WebhookEvent) error {
	return st.WebhookDelivered(ctx, ev.Endpoint, []store.WebhookSettle{{ID: ev.ID, Attempts: ev.Attempts}})
}

func failEv(ctx context.Context, st *store.Store, ev store.WebhookEvent, reason string) error {
	return st.FailWebhook(ctx, ev.ID, ev.Attempts, reason)
}

// A settle that comes after its lease ran out, and another claim took the
// event, changes nothing (review finding 5): not the new claim's lease, not
// the subject's order. The claim's attempts are its token; each event
// carries its lease's end as the database has it.
func TestLateSettleLeavesAnotherClaimAlone(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	ids := outbox(t, st, "e", "A", "B", "C")
	var first []store.WebhookEvent
	first, err := st.ClaimWebhooks(ctx, "e", 3, time.Millisecond, 0)
	require.NoError(t, err)
	require.Len(t, first, 3)
	var second []store.WebhookEvent
	require.Eventually(t, func() bool {
		second = append(second, claim(t, st, "e")...)
		return len(second) == 3
	}, 30*time.Second, 10*time.Millisecond, "claimed again once the lease ran out")
	lease := map[int64]time.Time{}
	for _, ev := range second {
		require.Equal(t, 2, ev.Attempts)
		var end time.Time
		require.NoError(t, st.Pool().QueryRow(ctx, `SELECT next_attempt_at FROM webhook_deliveries WHERE id = $1`, ev.ID).Scan(&end))
		require.True(t, end.Equal(ev.LeaseEnd), "the lease's end as the database has it: %v, not %v", end, ev.LeaseEnd)
		lease[ev.ID] = end
	}

	// The first claim's settles, late: each is refused by its token.
	require.NoError(t, st.RetryWebhook(ctx, first[0].ID, first[0].Attempts, time.Now(), "HTTP 500"))
	require.NoError(t, st.WebhookDelivered(ctx, "e", []store.WebhookSettle{{ID: first[1].ID, Attempts: first[1].Attempts}}))
	require.NoError(t, st.FailWebhook(ctx, first[2].ID, first[2].Attempts, "HTTP 410"))
	for _, id := range ids {
		var end time.Time
		var state string
		require.NoError(t, st.Pool().QueryRow(ctx, `SELECT next_attempt_at, state FROM webhook_deliveries WHERE id = $1`, id).Scan(&end, &state))
		require.Equal(t, "pending", state, "event %d", id)
		require.True(t, end.Equal(lease[id]), "event %d: the second claim's lease left alone", id)
	}

	// The second claim's settle, in time, works.
	require.NoError(t, st.WebhookDelivered(ctx, "e", []store.WebhookSettle{{ID: second[0].ID, Attempts: second[0].Attempts}}))
	require.Empty(t, pendingOf(t, st, "e", second[0].Subject))
}

// Each endpoint's backlog is read through its indexes, its counts capped
// at store.WebhookBacklogCap (review finding 6): at most that many rows are
// read per count, whatever the outbox holds.
func TestWebhookBacklogsCapped(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	setRoutes(t, st, store.WebhookRoute{Endpoint: "e"}, store.WebhookRoute{Endpoint: "quiet"})
	_, err := st.Pool().Exec(ctx, `INSERT INTO webhook_deliveries
		(endpoint, webhook_id, type, subject, product_id, status, from_status, occurred_at, state)
		SELECT 'e', 'evt_' || i, 'command.finished', 's' || i, 'p1', 'SUCCESSFUL', '', now() - i * interval '1 second',
			CASE WHEN i > $1 - 10 THEN 'failed' ELSE 'pending' END
		FROM generate_series(1, $1::int) i`, store.WebhookBacklogCap+100)
	require.NoError(t, err)
	bs, err := st.WebhookBacklogs(ctx)
	require.NoError(t, err)
	require.Len(t, bs, 2)
	require.Equal(t, "e", bs[0].Endpoint)
	require.EqualValues(t, store.WebhookBacklogCap, bs[0].Pending, "capped")
	require.EqualValues(t, 10, bs[0].Failed)
	var oldest time.Time
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT min(occurred_at) FROM webhook_deliveries WHERE state = 'pending'`).Scan(&oldest))
	require.True(t, oldest.Equal(bs[0].OldestPending), "%v, not %v", oldest, bs[0].OldestPending)
	require.Equal(t, store.WebhookBacklog{Endpoint: "quiet"}, bs[1], "a route with nothing yet is shown, empty")
}

// tokens are ids to settle, each claimed attempts times.
func tokens(attempts int, ids ...int64) []store.WebhookSettle {
	out := make([]store.WebhookSettle, len(ids))
	for i, id := range ids {
		out[i] = store.WebhookSettle{ID: id, Attempts: attempts}
	}
	return out
}

// A claim with dueFor takes only the events due for at least that long
// (the deliverer's lag while the data path drains a backlog), in the
// order per subject as ever.
func TestClaimDueFor(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	ids := outbox(t, st, "e", "A", "B", "B")
	_, err := st.Pool().Exec(ctx, `UPDATE webhook_deliveries SET next_attempt_at = now() - interval '2 minutes' WHERE id = ANY ($1)`,
		[]int64{ids[0], ids[2]})
	require.NoError(t, err)
	evs, err := st.ClaimWebhooks(ctx, "e", 10, time.Hour, time.Minute)
	require.NoError(t, err)
	require.Len(t, evs, 1, "B's second is old enough but waits behind its first, which is not")
	require.Equal(t, ids[0], evs[0].ID)
	evs, err = st.ClaimWebhooks(ctx, "e", 10, time.Hour, 0)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, ids[1], evs[0].ID, "without a lag, the fresh one goes")
}

// The deliverer's pool plans its statements generic, once per connection
// (store.Options.GenericPlans), unless the URL says otherwise; the other
// pools are left to PostgreSQL's choice.
func TestGenericPlansPool(t *testing.T) {
	t.Parallel()
	_, schema, url := testenv.Schema(t)
	for _, c := range []struct {
		url     string
		generic bool
		want    string
	}{
		{url, true, "force_generic_plan"},
		{url, false, "auto"},
		{url + map[bool]string{true: "&", false: "?"}[strings.Contains(url, "?")] + "plan_cache_mode=force_custom_plan", true, "force_custom_plan"},
	} {
		st, err := store.Open(context.Background(), c.url, store.Options{MaxConns: 1, Schema: schema, GenericPlans: c.generic})
		require.NoError(t, err)
		var mode string
		require.NoError(t, st.Pool().QueryRow(context.Background(), `SHOW plan_cache_mode`).Scan(&mode))
		st.Close()
		require.Equal(t, c.want, mode)
	}
}

// A held event whose earlier one is gone without waking it (a fold by a
// replica from before migration 028 left its head unmarked, and the head
// was settled alone) is woken by WakeHeldWebhooks; one still behind a
// pending event is not.
func TestWakeHeldWebhooks(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	ids := outbox(t, st, "e", "A", "A", "B", "B")
	// As an old fold left them: the second of each subject held, its
	// first not marked.
	_, err := st.Pool().Exec(ctx, `UPDATE webhook_deliveries SET next_attempt_at = 'infinity' WHERE id = ANY ($1)`,
		[]int64{ids[1], ids[3]})
	require.NoError(t, err)
	evs := claim(t, st, "e")
	require.Len(t, evs, 2)
	require.NoError(t, deliveredEv(ctx, st, evs[0])) // A's first: settled alone, nothing woken
	require.Equal(t, map[int64]bool{ids[1]: true, ids[2]: false, ids[3]: true}, heldBack(t, st, "e"))

	n, err := st.WakeHeldWebhooks(ctx, "e")
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.Equal(t, map[int64]bool{ids[1]: false, ids[2]: false, ids[3]: true}, heldBack(t, st, "e"),
		"A's second woken; B's second still behind B's first, pending")
	n, err = st.WakeHeldWebhooks(ctx, "e")
	require.NoError(t, err)
	require.Zero(t, n)
}

// Migration 028 marks the rows pending when it runs that an event of their
// endpoint and subject waits behind (next_attempt_at infinity), so that
// their settle makes it due; a row of another endpoint or subject, or one
// behind nothing, is left unmarked.
func TestHoldsBackfilledByTheMigration(t *testing.T) {
	t.Parallel()
	st, _, _ := testenv.EmptySchema(t)
	ctx := context.Background()
	require.NoError(t, st.MigrateTo(ctx, 27))
	rows := []struct {
		endpoint, subject, state, next string
	}{
		{"default", "c1", "pending", "now"},      // 1: c1's next: holds 2
		{"default", "c1", "pending", "infinity"}, // 2: held behind 1
		{"default", "c2", "pending", "now"},      // 3: nothing behind it here
		{"other", "c2", "pending", "infinity"},   // 4: another endpoint's
		{"default", "c3", "failed", "now"},       // 5: failed: holds nothing
		{"default", "c3", "pending", "infinity"}, // 6: behind 5, which is not pending
		{"default", "c4", "pending", "infinity"}, // 7: behind nothing earlier
	}
	for i, r := range rows {
		_, err := st.Pool().Exec(ctx, `INSERT INTO webhook_deliveries
			(endpoint, webhook_id, type, subject, product_id, status, from_status, occurred_at, next_attempt_at, state)
			VALUES ($1, $2, 'command.finished', $3, 'p', 'SUCCESSFUL', '', now(), $4::timestamptz, $5)`,
			r.endpoint, fmt.Sprintf("evt_%d", i+1), r.subject, r.next, r.state)
		require.NoError(t, err)
	}
	require.NoError(t, st.Migrate(ctx))
	got, err := st.Pool().Query(ctx, `SELECT id FROM webhook_deliveries WHERE holds ORDER BY id`)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(got, pgx.RowTo[int64])
	require.NoError(t, err)
	require.Equal(t, []int64{1}, ids, "only the row an event of its endpoint and subject waits behind")
}
