package replay_test

import (
	"context"
	"errors"
	stdstrings "strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/replay"
	"github.com/cmdtrack/cmdtrack/store"
)

var limits = ingest.Limits{MaxBodyBytes: 1 << 20}

func v5(id, at string) []byte {
	return []byte(`{"resource":"device.command.status","event":"update","event_time":"` + at + `",` +
		`"notify_data":{"header":{"device_id":"d1"},"body":{"command_id":"` + id + `","status":"SENT"}}}`)
}

const apiTime = "20060102T150405Z"

// What a dead letter is when replayed: times ahead are judged against the
// later of its receipt and now, a format without times is timed by its
// receipt, a body kept in part stays as it is.
func TestDecide(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	lagged := now.Add(-72 * time.Hour) // a worker's clock three days behind
	dl := func(body []byte, received time.Time) store.StoredDeadLetter {
		return store.StoredDeadLetter{ID: 1, Source: "amqp:q", Class: notification.ClassFutureTime, Reason: "old", Body: body, ReceivedAt: received}
	}

	it := replay.Decide(dl(v5("c1", now.Add(-time.Hour).Format(apiTime)), lagged), now, limits)
	require.NotNil(t, it.Notification(), "what the lagging clock refused goes through: %+v", it.DeadLetter)
	require.Equal(t, now.Add(-time.Hour), it.Notification().EventTime)

	it = replay.Decide(dl(v5("c1", now.Add(59*time.Minute).Format(apiTime)), lagged), now, limits)
	require.NotNil(t, it.Notification(), "within the skew of now")

	it = replay.Decide(dl(v5("c1", "20991231T000000Z"), lagged), now, limits)
	require.NotNil(t, it.DeadLetter, "a forgery is still refused")
	require.Equal(t, notification.ClassFutureTime, it.DeadLetter.Class)
	require.Contains(t, it.DeadLetter.Reason, "ahead of its replay at 2026-11-30T12:00:00Z")

	future := now.Add(2 * time.Hour) // received by a clock ahead of this one's
	it = replay.Decide(dl(v5("c1", future.Add(30*time.Minute).Format(apiTime)), future), now, limits)
	require.NotNil(t, it.Notification(), "judged against its receipt when that is later than now")
	it = replay.Decide(dl(v5("c1", future.Add(2*time.Hour).Format(apiTime)), future), now, limits)
	require.NotNil(t, it.DeadLetter)
	require.Contains(t, it.DeadLetter.Reason, "ahead of its receipt at")

	it = replay.Decide(dl([]byte(`{"deviceId":"d2","commandId":"legacy","result":{"resultCode":"SENT"}}`), lagged), now, limits)
	require.NotNil(t, it.Notification())
	require.Equal(t, lagged, it.Notification().EventTime, "timed by its receipt, not by the replay")

	it = replay.Decide(dl([]byte(`{"resource":"device.property","event":"report","notify_data":{}}`), lagged), now, limits)
	require.Equal(t, ingest.Item{Source: "amqp:q"}, it, "another resource")

	cut := dl(v5("c1", now.Format(apiTime))[:40], lagged)
	cut.Class, cut.Reason, cut.Truncated = notification.ClassTooLarge, "body is 2000000 bytes", true
	it = replay.Decide(cut, now, limits)
	require.Equal(t, &ingest.DeadLetter{Class: notification.ClassTooLarge, Reason: "body is 2000000 bytes", Body: cut.Body}, it.DeadLetter,
		"a body kept in part can never decode")
}

// fakeStore replays letters, one per id, deciding each as Run asks.
type fakeStore struct {
	letters []store.StoredDeadLetter
	failAt  int64
	decided []ingest.Item
}

func (f *fakeStore) ReplaceDeadLetter(_ context.Context, after int64, decide func(store.StoredDeadLetter) ingest.Item) (int64, ingest.Result, error) {
	for _, dl := range f.letters {
		if dl.ID <= after {
			continue
		}
		if dl.ID == f.failAt {
			return 0, ingest.Result{}, errors.New("connection lost")
		}
		it := decide(dl)
		f.decided = append(f.decided, it)
		return dl.ID, it.Result(), nil
	}
	return 0, ingest.Result{}, nil
}

// Run decides every dead letter once, in id order, counts what became of
// them, and stops at the store's first error with what it counted.
func TestRunCounts(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC()
	f := &fakeStore{letters: []store.StoredDeadLetter{
		{ID: 3, Source: "amqp:q", Body: v5("c1", now.Format(apiTime)), ReceivedAt: now.Add(-72 * time.Hour)},
		{ID: 5, Source: "amqp:q", Body: []byte(`not json`), ReceivedAt: now},
		{ID: 8, Source: "http", Body: []byte(`{"resource":"device.property","event":"report","notify_data":{}}`), ReceivedAt: now},
		{ID: 9, Source: "amqp:q", Body: v5("c2", "20991231T000000Z"), ReceivedAt: now},
	}}
	res, err := replay.Run(context.Background(), f, limits)
	require.NoError(t, err)
	require.Equal(t, replay.Result{Applied: 1, Skipped: 1, StillFailing: 2}, res)
	require.Len(t, f.decided, 4)

	f = &fakeStore{letters: f.letters, failAt: 8}
	res, err = replay.Run(context.Background(), f, limits)
	require.ErrorContains(t, err, "connection lost")
	require.Equal(t, replay.Result{Applied: 1, StillFailing: 1}, res)
}

// Against PostgreSQL: a worker whose clock lagged three days dead-lettered
// good notifications as future_event_time; replay applies them, still
// refuses a forgery dated 2099, times a legacy callback by its receipt, and
// leaves a body kept in part as it is.
func TestReplayAfterClockLag(t *testing.T) {
	t.Parallel()
	st, _, _ := testenv.Schema(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	lagged := now.Add(-72 * time.Hour)
	for _, b := range [][]byte{
		v5("lagged", now.Add(-time.Hour).Format(apiTime)),
		v5("forged", "20991231T000000Z"),
		[]byte(`{"deviceId":"d2","commandId":"legacy","result":{"resultCode":"SENT"}}`),
	} {
		_, err := st.Pool().Exec(ctx, `INSERT INTO dead_letters (received_at, source, reason_class, reason, body, body_sha256)
			VALUES ($1, 'amqp:q', 'future_event_time', 'lagging clock', $2::bytea, sha256($2::bytea))`, lagged, b)
		require.NoError(t, err)
	}
	big := []byte(`{"pad":"` + stdstrings.Repeat("y", 300<<10) + `"}`)
	_, err := st.Apply(ctx, []ingest.Item{ingest.Classify(big, "amqp:q", now, ingest.Limits{MaxBodyBytes: 100 << 10})})
	require.NoError(t, err)

	res, err := replay.Run(ctx, st, limits)
	require.NoError(t, err)
	require.Equal(t, replay.Result{Applied: 2, StillFailing: 2}, res)
	last := func(id string) time.Time {
		var at time.Time
		require.NoError(t, st.Pool().QueryRow(ctx, `SELECT last_event_time FROM device_commands WHERE command_id = $1`, id).Scan(&at))
		return at.UTC()
	}
	require.Equal(t, now.Add(-time.Hour), last("lagged"))
	require.Equal(t, lagged, last("legacy"), "timed by its receipt, not by the replay")
	count := func(q string) int { return testenv.Count(t, st.Pool(), q) }
	require.Equal(t, 1, count(`SELECT count(*) FROM dead_letters
		WHERE reason_class = 'future_event_time' AND replay_count = 1 AND convert_from(body, 'UTF8') LIKE '%forged%'`))
	require.Equal(t, 1, count(`SELECT count(*) FROM dead_letters WHERE reason_class = 'too_large' AND replay_count = 1`),
		"a truncated body can never decode")
	require.Equal(t, 2, count(`SELECT count(*) FROM dead_letters`))
}
