package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// ReplaceDeadLetter hands each dead letter, as stored, to the decision, and
// persists what it says: a notification applied and the dead letter gone, a
// new reason kept with replay_count + 1, another resource's message gone, a
// notification PostgreSQL refuses kept as rejected_by_database.
func TestReplaceDeadLetter(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	received := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, b := range []string{"apply", "fail", "skip", "refused"} {
		length := len(b)
		if b == "apply" {
			length += 10 // as if only a prefix was kept
		}
		_, err := st.Pool().Exec(ctx, `INSERT INTO dead_letters (received_at, source, reason_class, reason, body, body_sha256, body_length)
			VALUES ($1, 'amqp:q', 'invalid_json', 'old', $2::bytea, sha256($2::bytea), $3)`, received, []byte(b), length)
		require.NoError(t, err)
	}
	note := func(id, result string) ingest.Item {
		return ingest.Item{Source: "amqp:q", Record: &notification.Notification{
			CommandID: id, Status: notification.Sent, EventTime: received, Result: []byte(result), Payload: []byte(`{}`)}}
	}
	var seen []store.StoredDeadLetter
	decide := func(dl store.StoredDeadLetter) ingest.Item {
		seen = append(seen, dl)
		switch string(dl.Body) {
		case "apply":
			return note("c1", `{"ok":true}`)
		case "fail":
			return ingest.Unusable(dl.Source, dl.Body, notification.ClassUnknownStatus, "still bad")
		case "refused":
			return note("c2", `{"bad":"\ud800"}`) // lone surrogate: jsonb refuses it
		}
		return ingest.Item{Source: dl.Source}
	}
	var outcomes []ingest.Outcome
	var after int64
	for {
		id, res, err := st.ReplaceDeadLetter(ctx, after, decide)
		require.NoError(t, err)
		if id == 0 {
			break
		}
		require.Greater(t, id, after, "in id order")
		after = id
		outcomes = append(outcomes, res.Outcome)
	}
	require.Equal(t, []ingest.Outcome{ingest.Applied, ingest.DeadLettered, ingest.Skipped, ingest.DeadLettered}, outcomes)
	require.Len(t, seen, 4)
	require.Equal(t, store.StoredDeadLetter{ID: seen[0].ID, Source: "amqp:q", Class: notification.ClassInvalidJSON, Reason: "old",
		Body: []byte("apply"), ReceivedAt: received, Truncated: true}, func() store.StoredDeadLetter {
		dl := seen[0]
		dl.ReceivedAt = dl.ReceivedAt.UTC()
		return dl
	}(), "body_length says more than the body: only a prefix was kept")
	require.False(t, seen[1].Truncated)

	require.Equal(t, "SENT", readRow(t, st, "c1").Status)
	require.Equal(t, 0, count(t, st, `SELECT count(*) FROM device_commands WHERE command_id = 'c2'`))
	require.Equal(t, 2, count(t, st, `SELECT count(*) FROM dead_letters`))
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM dead_letters
		WHERE body = 'fail' AND reason_class = 'unknown_status' AND reason = 'still bad' AND replay_count = 1 AND last_replay_at IS NOT NULL`))
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM dead_letters
		WHERE body = 'refused' AND reason_class = 'rejected_by_database' AND reason LIKE '%invalid input syntax for type json%' AND replay_count = 1`))
}
