package notification_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/notification"
)

// A call's records rank PENDING below every outcome, judge each time they
// claim, and differ in key whenever they differ in content.
func TestCallRecord(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	c := notification.Call{CallID: "c1", CallKind: notification.CallCommand, DeviceID: "d1", Status: notification.CallPending,
		EventTime: at, SentTime: at}
	require.Equal(t, notification.KindCall, c.Kind())
	require.Equal(t, int16(0), c.Rank())
	for _, s := range []notification.CallStatus{notification.CallSuccessful, notification.CallFailed, notification.CallTimeout, notification.CallError} {
		f := c
		f.Status = s
		require.Equal(t, int16(1), f.Rank(), s)
		require.NotEqual(t, c.Key(), f.Key(), s)
	}
	_, _, ahead := c.Ahead(at)
	require.False(t, ahead)
	f := c
	f.FinishedTime = at.Add(2 * time.Hour)
	field, when, ahead := f.Ahead(at.Add(time.Hour))
	require.True(t, ahead)
	require.Equal(t, "finished_time", field)
	require.Equal(t, f.FinishedTime, when)
	again := c
	require.Equal(t, c.Key(), again.Key(), "the key is a function of the content")
}
