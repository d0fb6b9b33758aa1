package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// Result.Changed says whether a notification created or changed its row:
// not for a redelivery, not for one that loses the merge and adds no fact,
// but for one that loses yet fills in a fact.
func TestApplySaysWhatChanged(t *testing.T) {
	t.Parallel()
	st := setup(t)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := func(id string, s notification.Status, sec int, device string) ingest.Item {
		return ingest.Item{Source: "test", Record: &notification.Notification{
			CommandID: id, Status: s, EventTime: at.Add(time.Duration(sec) * time.Second), DeviceID: device, Payload: []byte(`{}`)}}
	}
	changed := func(res []ingest.Result) []bool {
		out := make([]bool, len(res))
		for i, r := range res {
			require.Equal(t, ingest.Applied, r.Outcome)
			out[i] = r.Changed
		}
		return out
	}
	res := applyReporting(t, st, []ingest.Item{n("c1", notification.Sent, 1, ""), n("c2", notification.Successful, 5, "d2")})
	require.Equal(t, []bool{true, true}, changed(res), "new rows")
	res = applyReporting(t, st, []ingest.Item{n("c1", notification.Delivered, 2, "")})
	require.Equal(t, []bool{true}, changed(res), "a new winner")

	res = applyReporting(t, st, []ingest.Item{
		n("c2", notification.Successful, 5, "d2"), // redelivery
		n("c1", notification.Sent, 1, ""),         // loses, adds nothing
		n("c3", notification.Pending, 0, ""),      // new
	})
	require.Equal(t, []bool{false, false, true}, changed(res))

	res = applyReporting(t, st, []ingest.Item{n("c1", notification.Sent, 1, "d1")}) // loses, but tells the device
	require.Equal(t, []bool{true}, changed(res))
	require.Equal(t, "DELIVERED", readRow(t, st, "c1").Status)
}

func TestOpenCommandsAndCommandsByID(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var items []ingest.Item
	statuses := []notification.Status{notification.Pending, notification.Sent, notification.Delivered, notification.Successful, notification.Timeout}
	for i := range 10 {
		device := fmt.Sprintf("d%d", i)
		if i == 3 {
			device = ""
		}
		items = append(items, ingest.Item{Source: "test", Record: &notification.Notification{
			CommandID: fmt.Sprintf("c%d", i), Status: statuses[i%len(statuses)], DeviceID: device,
			EventTime: t0.Add(time.Duration(i) * time.Minute), Payload: []byte(`{}`)}})
	}
	apply(t, st, items)

	ids := func(refs []store.CommandRef) []string {
		var out []string
		for _, r := range refs {
			out = append(out, r.CommandID)
		}
		return out
	}
	// Open ones (c0 c1 c2 c5 c6 c7) before minute 7, oldest first, two a page.
	var got []string
	q := store.OpenQuery{Before: t0.Add(7 * time.Minute), Limit: 2}
	for {
		page, err := st.OpenCommands(ctx, q)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		require.LessOrEqual(t, len(page), 2)
		got = append(got, ids(page)...)
		q.After = &page[len(page)-1]
	}
	require.Equal(t, []string{"c0", "c1", "c2", "c5", "c6"}, got)

	page, err := st.OpenCommands(ctx, store.OpenQuery{Before: t0.Add(time.Hour), Since: t0.Add(2 * time.Minute), Limit: 100})
	require.NoError(t, err)
	require.Equal(t, []string{"c2", "c5", "c6", "c7"}, ids(page))
	require.Equal(t, notification.Delivered, page[0].Status)
	require.Equal(t, "d2", page[0].DeviceID)

	refs, err := st.CommandsByID(ctx, []string{"c9", "c3", "nope", "c4"})
	require.NoError(t, err)
	require.Equal(t, []string{"c3", "c4", "c9"}, ids(refs), "any status; unknown ids left out")
	require.Empty(t, refs[0].DeviceID, "no device id known")
}

// OpenQuery.Stuck pages through stuck_commands(quiet), oldest first, and
// Stuck counts the same commands by status.
func TestStuckPagesAndCount(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Now().UTC()
	var items []ingest.Item
	statuses := []notification.Status{notification.Pending, notification.Sent, notification.Delivered, notification.Successful}
	for i := range 9 {
		// c0 to c6 quiet for over an hour, one minute apart, newest first;
		// c7 and c8 quiet for minutes.
		at := now.Add(-2*time.Hour + time.Duration(i)*time.Minute)
		if i >= 7 {
			at = now.Add(-time.Duration(i) * time.Minute)
		}
		items = append(items, ingest.Item{Source: "test", Record: &notification.Notification{
			CommandID: fmt.Sprintf("c%d", i), Status: statuses[i%len(statuses)], DeviceID: "d",
			EventTime: at, Payload: []byte(`{}`)}})
	}
	apply(t, st, items)

	var got []string
	q := store.OpenQuery{Stuck: time.Hour, Limit: 2}
	for {
		page, err := st.OpenCommands(ctx, q)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		require.LessOrEqual(t, len(page), 2)
		for _, r := range page {
			got = append(got, r.CommandID)
		}
		q.After = &page[len(page)-1]
	}
	require.Equal(t, []string{"c0", "c1", "c2", "c4", "c5", "c6"}, got)
	n, err := st.Stuck(ctx, time.Hour)
	require.NoError(t, err)
	require.Equal(t, map[notification.Status]int64{notification.Pending: 2, notification.Sent: 2, notification.Delivered: 2}, n)
}

// The stuck horizon is read from cmdtrack_settings, as an operator set it.
func TestStuckHorizon(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	h, err := st.StuckHorizon(ctx)
	require.NoError(t, err)
	require.Equal(t, 72*time.Hour, h, "the default")
	_, err = st.Pool().Exec(ctx, `UPDATE cmdtrack_settings SET stuck_horizon = '1 day 90 minutes'`)
	require.NoError(t, err)
	h, err = st.StuckHorizon(ctx)
	require.NoError(t, err)
	require.Equal(t, 25*time.Hour+30*time.Minute, h)
	_, err = st.Pool().Exec(ctx, `DELETE FROM cmdtrack_settings`)
	require.NoError(t, err)
	_, err = st.StuckHorizon(ctx)
	require.ErrorContains(t, err, "INSERT INTO cmdtrack_settings DEFAULT VALUES")
}

// One session holds the lock at a time; closing it frees the lock. Another
// schema's lock of the same name is another lock.
func TestTryLock(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	unlock, ok, err := st.TryLock(ctx, "reconcile")
	require.NoError(t, err)
	require.True(t, ok)

	_, ok, err = st.TryLock(ctx, "reconcile")
	require.NoError(t, err)
	require.False(t, ok, "held by the first session")

	other, _, _ := testenv.Schema(t)
	unlockOther, ok, err := other.TryLock(ctx, "reconcile")
	require.NoError(t, err)
	require.True(t, ok, "another schema, another lock")
	unlockOther()

	unlock()
	unlock2, ok, err := st.TryLock(ctx, "reconcile")
	require.NoError(t, err)
	require.True(t, ok, "released when its connection closed")
	unlock2()
}

// applyReporting stores items and returns what became of them, with which
// changed their command's row.
func applyReporting(t *testing.T, st *store.Store, items []ingest.Item) []ingest.Result {
	t.Helper()
	res, err := st.ApplyReportingChanges(context.Background(), items)
	require.NoError(t, err)
	require.Len(t, res, len(items))
	return res
}

// Queue watermarks keep the latest time each queue was consumed, whichever
// replica saves last.
func TestQueueWatermarks(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	t1 := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	require.NoError(t, st.SaveQueueWatermarks(ctx, map[string]time.Time{"a": t1, "b": t1}))
	require.NoError(t, st.SaveQueueWatermarks(ctx, map[string]time.Time{"a": t1.Add(time.Hour), "b": t1.Add(-time.Hour)}))
	marks, err := st.QueueWatermarks(ctx)
	require.NoError(t, err)
	require.Equal(t, t1.Add(time.Hour), marks["a"].UTC())
	require.Equal(t, t1, marks["b"].UTC(), "an earlier time never replaces a later one")
}
