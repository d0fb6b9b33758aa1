package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// changeLog collects what OnChange is told.
type changeLog struct {
	mu      sync.Mutex
	calls   int
	changes []store.Change
}

func (l *changeLog) add(c []store.Change) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	l.changes = append(l.changes, c...)
}

func (l *changeLog) take() []store.Change {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.changes
	l.changes = nil
	return out
}

// setupTracking is a schema and a store on it that tells log what it changed.
func setupTracking(t *testing.T, log *changeLog) (tracked, plain *store.Store) {
	t.Helper()
	plain, schema, url := testenv.Schema(t)
	tracked, err := store.Open(context.Background(), url, store.Options{MaxConns: 4, Schema: schema})
	require.NoError(t, err)
	tracked.OnChange(log.add)
	t.Cleanup(tracked.Close)
	return tracked, plain
}

// OnChange hears, once per commit, each row the batch changed, with its
// state before the batch and after it; a redelivery or a notification that
// loses the merge changes nothing and is not heard of.
func TestApplyTellsWhatItChanged(t *testing.T) {
	t.Parallel()
	var log changeLog
	st, _ := setupTracking(t, &log)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	n := func(id string, s notification.Status, sec int) ingest.Item {
		nt := &notification.Notification{CommandID: id, Status: s, EventTime: at(sec), ProductID: "p1", CreatedTime: at(0), Payload: []byte(`{}`)}
		switch s {
		case notification.Sent:
			nt.SentTime = at(sec)
		case notification.Delivered:
			nt.DeliveredTime = at(sec)
		case notification.Pending:
		default:
			nt.ResponseTime = at(sec)
		}
		return ingest.Item{Source: "test", Record: nt}
	}
	apply := func(items ...ingest.Item) []store.Change {
		t.Helper()
		_, err := st.Apply(ctx, items)
		require.NoError(t, err)
		return log.take()
	}

	got := apply(n("c1", notification.Sent, 1), n("c2", notification.Successful, 5))
	require.Len(t, got, 2)
	require.False(t, got[0].Existed)
	require.Equal(t, store.CommandState{Status: notification.Sent, ProductID: "p1", Created: at(0), Sent: at(1), LastEvent: at(1)},
		utc(got[0].After))
	require.False(t, got[1].Existed)
	require.Equal(t, notification.Successful, got[1].After.Status)
	require.True(t, got[1].After.Final())

	calls := log.calls
	require.Empty(t, apply(n("c2", notification.Successful, 5), n("c1", notification.Sent, 1)), "redeliveries")
	require.Empty(t, apply(n("c1", notification.Pending, 0)), "a late, lower status that adds nothing")
	require.Equal(t, calls, log.calls, "nothing changed, nothing told")

	// Two notifications of c1 in one batch: one change, from before the
	// batch to after it.
	got = apply(n("c1", notification.Timeout, 9), n("c1", notification.Delivered, 2))
	require.Len(t, got, 1)
	require.True(t, got[0].Existed)
	require.Equal(t, notification.Sent, got[0].Before.Status)
	require.Equal(t, notification.Timeout, got[0].After.Status)
	require.Equal(t, at(2), got[0].After.Delivered.UTC())

	got = apply(n("c1", notification.Successful, 12))
	require.Len(t, got, 1)
	require.Equal(t, notification.Timeout, got[0].Before.Status)
	require.Equal(t, notification.Successful, got[0].After.Status)

	// Reconcile's report still says which notification changed its row.
	res, err := st.ApplyReportingChanges(ctx, []ingest.Item{n("c3", notification.Sent, 1), n("c1", notification.Sent, 1)})
	require.NoError(t, err)
	require.True(t, res[0].Changed)
	require.False(t, res[1].Changed)
	require.Len(t, log.take(), 1)
}

// A batch that fails is rolled back and tells nothing; its retry tells.
func TestRolledBackBatchTellsNothing(t *testing.T) {
	t.Parallel()
	var log changeLog
	st, _ := setupTracking(t, &log)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	item := ingest.Item{Source: "test", Record: &notification.Notification{
		CommandID: "c1", Status: notification.Failed, EventTime: time.Now(), Payload: []byte(`{}`)}}
	_, err := st.Apply(ctx, []ingest.Item{item})
	require.Error(t, err)
	require.Empty(t, log.take())
	_, err = st.Apply(context.Background(), []ingest.Item{item})
	require.NoError(t, err)
	require.Len(t, log.take(), 1)
}

// Writers applying overlapping batches at once, with duplicates and in any
// order, count each row's changes once between them: every row is created
// once, and reaches a final status once, whoever wrote what.
func TestChangesCountedOnceAcrossWriters(t *testing.T) {
	t.Parallel()
	var log changeLog
	st, plain := setupTracking(t, &log)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	const commands = 300
	var items []ingest.Item
	lifecycle := []notification.Status{notification.Pending, notification.Sent, notification.Delivered, notification.Timeout, notification.Successful}
	for c := range commands {
		id := fmt.Sprintf("cmd-%03d", c)
		steps := 2 + c%4 // some stop before a final status
		for s := range steps {
			st := lifecycle[s]
			it := ingest.Item{Source: "test", Record: &notification.Notification{
				CommandID: id, Status: st, EventTime: t0.Add(time.Duration(s) * time.Minute), ProductID: "p" + fmt.Sprint(c%3),
				Payload: []byte(`{}`)}}
			items = append(items, it, it) // every notification twice
		}
	}
	// Four writers (each its own connection), each taking the whole stream
	// shuffled, in batches of random size.
	writers := []*store.Store{st, st, st, st}
	g, gctx := errgroup.WithContext(ctx)
	for w, wst := range writers {
		mine := append([]ingest.Item(nil), items...)
		rng := rand.New(rand.NewPCG(uint64(w), 7))
		rng.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
		g.Go(func() error {
			for len(mine) > 0 {
				n := min(len(mine), 1+rng.IntN(64))
				if _, err := wst.Apply(gctx, mine[:n]); err != nil {
					return err
				}
				mine = mine[n:]
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())

	created := map[string]int{}
	finished := 0
	for _, c := range log.take() {
		if !c.Existed {
			created[c.CommandID]++
		}
		if c.After.Final() && (!c.Existed || !c.Before.Final()) {
			finished++
		}
	}
	var rows, final int
	require.NoError(t, plain.Pool().QueryRow(ctx,
		`SELECT count(*), count(*) FILTER (WHERE status_rank = 3) FROM device_commands`).Scan(&rows, &final))
	require.Equal(t, commands, rows)
	require.Equal(t, final, finished, "finished counted once per row that is final")
	require.Len(t, created, rows)
	for id, n := range created {
		require.Equal(t, 1, n, "%s created %d times", id, n)
	}
}

func utc(s store.CommandState) store.CommandState {
	for _, p := range []*time.Time{&s.Created, &s.Sent, &s.Delivered, &s.Response, &s.LastEvent} {
		if !p.IsZero() {
			*p = p.UTC()
		}
	}
	return s
}

// finishedIDs are the commands outcome_events says finished, with how many
// times each.
func finishedIDs(t *testing.T, st *store.Store) map[string]int {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(),
		`SELECT unnest(command_ids) FROM outcome_events WHERE kind = $1`, store.KindFinished)
	require.NoError(t, err)
	out := map[string]int{}
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		out[id]++
	}
	require.NoError(t, rows.Err())
	return out
}

func totals(t *testing.T, st *store.Store) map[string]int64 {
	t.Helper()
	ts, err := st.OutcomeTotals(context.Background())
	require.NoError(t, err)
	out := map[string]int64{}
	for _, o := range ts {
		out[o.Kind+" "+o.ProductID+" "+o.FromStatus+">"+o.Status] += o.Count
	}
	return out
}

// Writers with and without OnChange (a worker's, a command-line tool's),
// applying overlapping batches at once, with duplicates and in any order:
// the database records each command reaching a final status once, in the
// statement that made it so, and the fold moves the records to the totals
// without changing them.
func TestOutcomesRecordedOnceAcrossWriters(t *testing.T) {
	t.Parallel()
	var log changeLog
	tracked, plain := setupTracking(t, &log)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const commands = 300
	var items []ingest.Item
	lifecycle := []notification.Status{notification.Pending, notification.Sent, notification.Delivered, notification.Timeout, notification.Successful}
	for c := range commands {
		id := fmt.Sprintf("cmd-%03d", c)
		for s := range 2 + c%4 { // some stop before a final status, some change it
			it := ingest.Item{Source: "test", Record: &notification.Notification{
				CommandID: id, Status: lifecycle[s], EventTime: t0.Add(time.Duration(s) * time.Minute), ProductID: "p" + fmt.Sprint(c%3),
				Payload: []byte(`{}`)}}
			items = append(items, it, it)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for w, wst := range []*store.Store{tracked, plain, tracked, plain} {
		mine := append([]ingest.Item(nil), items...)
		rng := rand.New(rand.NewPCG(uint64(w), 11))
		rng.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
		g.Go(func() error {
			for len(mine) > 0 {
				n := min(len(mine), 1+rng.IntN(64))
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

	var final, successful int
	require.NoError(t, plain.Pool().QueryRow(ctx,
		`SELECT count(*) FILTER (WHERE status_rank = 3), count(*) FILTER (WHERE status = 'SUCCESSFUL') FROM device_commands`).
		Scan(&final, &successful))
	ids := finishedIDs(t, plain)
	require.Len(t, ids, final, "every final command recorded as finished")
	for id, n := range ids {
		require.Equal(t, 1, n, "%s recorded as finished %d times", id, n)
	}
	before := totals(t, plain)
	var finished, changed int64
	for k, n := range before {
		if strings.HasPrefix(k, store.KindFinished) {
			finished += n
		} else {
			require.Equal(t, store.KindFinalChanged, strings.Fields(k)[0])
			require.True(t, strings.HasSuffix(k, "TIMEOUT>SUCCESSFUL"), k)
			changed += n
		}
	}
	require.Equal(t, int64(final), finished)
	require.LessOrEqual(t, changed, int64(successful), "a TIMEOUT replaced by SUCCESSFUL at most once per command")

	folded, err := plain.FoldOutcomes(ctx)
	require.NoError(t, err)
	require.Positive(t, folded)
	require.Equal(t, before, totals(t, plain), "the fold changes no total")
	require.Zero(t, count(t, plain, `SELECT count(*) FROM outcome_events`))
	folded, err = plain.FoldOutcomes(ctx)
	require.NoError(t, err)
	require.Zero(t, folded)
	require.Equal(t, before, totals(t, plain))
}

// Command retention deletes a final command; heard of again, it is not
// recorded as finished again, for as long as its tombstone lasts (one more
// retention period). A command deleted before it was final, heard of again
// as final, finished for the first time.
func TestOutcomesAfterRetention(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	old := now.Add(-10 * 24 * time.Hour)
	n := func(id string, s notification.Status, at time.Time) ingest.Item {
		return ingest.Item{Source: "test", Record: &notification.Notification{
			CommandID: id, Status: s, EventTime: at, CreatedTime: at, ProductID: "p1", Payload: []byte(`{}`)}}
	}
	apply := func(items ...ingest.Item) {
		t.Helper()
		_, err := st.Apply(ctx, items)
		require.NoError(t, err)
	}
	apply(n("final", notification.Successful, old), n("open", notification.Sent, old))
	require.Equal(t, map[string]int{"final": 1}, finishedIDs(t, st))
	_, err := st.FoldOutcomes(ctx)
	require.NoError(t, err)

	retention := store.Retention{Commands: 7 * 24 * time.Hour}
	res, err := st.Prune(ctx, retention, now)
	require.NoError(t, err)
	require.Equal(t, int64(2), res.Commands)
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM command_tombstones WHERE command_id = 'final' AND status = 'SUCCESSFUL'`))

	apply(n("final", notification.Successful, old), n("open", notification.Delivered, old))
	apply(n("final", notification.Failed, old.Add(time.Minute)), n("open", notification.Successful, old.Add(time.Minute)))
	require.Equal(t, map[string]int{"open": 1}, finishedIDs(t, st), "final finished before; open now")
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM device_commands WHERE command_id = 'final'`), "the row is back")

	// A tombstone lasts one more retention period, then goes.
	_, err = st.Pool().Exec(ctx, `DELETE FROM device_commands`)
	require.NoError(t, err)
	_, err = st.Prune(ctx, retention, time.Now().Add(retention.Commands+time.Hour))
	require.NoError(t, err)
	require.Zero(t, count(t, st, `SELECT count(*) FROM command_tombstones`))
}
