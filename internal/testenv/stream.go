package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/simulate"
)

// Count runs a query returning one integer.
func Count(t testing.TB, db *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

// WaitStored polls until the history and the dead letters hold what stream s
// must produce.
func WaitStored(t testing.TB, db *pgxpool.Pool, s *simulate.Stream, within time.Duration) {
	t.Helper()
	events := func() int { return Count(t, db, `SELECT count(*) FROM device_command_events`) }
	require.Eventually(t, func() bool {
		return events() >= s.Events && Count(t, db, `SELECT count(*) FROM dead_letters`) >= s.Poison &&
			presenceDone(t, db, s) && messagesDone(t, db, s)
	}, within, 50*time.Millisecond, "the stream was not stored in time (%d history rows of %d at the start of the wait)", events(), s.Events)
}

// presenceDone reports whether every device's presence is as expected.
func presenceDone(t testing.TB, db *pgxpool.Pool, s *simulate.Stream) bool {
	if len(s.Devices) == 0 {
		return true
	}
	bad, err := simulate.VerifyPresence(context.Background(), db, s.Devices)
	require.NoError(t, err)
	return len(bad) == 0
}

// messagesDone reports whether every device message notification of s is
// in the history.
func messagesDone(t testing.TB, db *pgxpool.Pool, s *simulate.Stream) bool {
	return s.MessageEvents == 0 || Count(t, db, `SELECT count(*) FROM device_message_events`) >= s.MessageEvents
}

// VerifyStream requires every command's and device message's row to equal
// its expected final state, one history row per distinct notification,
// one dead letter per distinct poison message, every device's presence,
// and nothing left on queue (a message settled without being stored would
// be missing; one stored but never settled would still be there).
func VerifyStream(t testing.TB, db *pgxpool.Pool, s *simulate.Stream, queue string) {
	t.Helper()
	bad, err := simulate.Verify(context.Background(), db, s.Commands)
	require.NoError(t, err)
	require.Empty(t, bad, "%d rows differ from the expected final state", len(bad))
	require.Equal(t, len(s.Commands), Count(t, db, `SELECT count(*) FROM device_commands`))
	require.Equal(t, s.Events, Count(t, db, `SELECT count(*) FROM device_command_events`), "history rows")
	require.Equal(t, s.Poison, Count(t, db, `SELECT count(*) FROM dead_letters`), "dead letters")
	bad, err = simulate.VerifyPresence(context.Background(), db, s.Devices)
	require.NoError(t, err)
	require.Empty(t, bad, "%d devices differ from their expected presence", len(bad))
	require.Equal(t, len(s.Devices), Count(t, db, `SELECT count(*) FROM device_presence`), "presence rows")
	bad, err = simulate.VerifyMessages(context.Background(), db, s.DeviceMessages)
	require.NoError(t, err)
	require.Empty(t, bad, "%d device messages differ from their expected final state", len(bad))
	require.Equal(t, len(s.DeviceMessages), Count(t, db, `SELECT count(*) FROM device_messages`), "device message rows")
	require.Equal(t, s.MessageEvents, Count(t, db, `SELECT count(*) FROM device_message_events`), "device message history rows")
	RequireQueueEmpty(t, queue)
}
