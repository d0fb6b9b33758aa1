package ingest_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/iotdaapi"
	"github.com/cmdtrack/cmdtrack/notification"
)

// A message the API answered about is the notification it stands for,
// timed a microsecond before the time its status implies, so that the
// platform's own notification of that change wins.
func TestFromAPIMessage(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 11, 22, 10, 10, 10, 0, time.UTC)
	finished := created.Add(5 * time.Second)
	for _, tc := range []struct {
		status string
		at     time.Time
	}{{"PENDING", created}, {"DELIVERED", finished}, {"FAILED", finished}, {"TIMEOUT", finished}} {
		d := &iotdaapi.DeviceMessage{DeviceID: "d1", MessageID: "m1", Name: "cfg", Topic: "t", Status: tc.status,
			CreatedTime: "20261122T101010Z", FinishedTime: "20261122T101015Z", Raw: []byte(`{"raw":1}`)}
		if tc.status == "FAILED" {
			d.ErrorInfo = &iotdaapi.ErrorInfo{ErrorCode: "IOTDA.014112", ErrorMsg: "not subscribed"}
		}
		it, err := ingest.FromAPIMessage(d, testNow, limits)
		require.NoError(t, err, tc.status)
		require.Equal(t, ingest.SourceAPI, it.Source)
		m := it.Record.(*notification.Message)
		require.Equal(t, notification.MessageStatus(tc.status), m.Status)
		require.Equal(t, tc.at, m.At, tc.status)
		require.Equal(t, tc.at.Add(-time.Microsecond), m.EventTime, tc.status)
		require.Equal(t, []string{"d1", "m1", "cfg", "t"}, []string{m.DeviceID, m.MessageID, m.Name, m.Topic})
		require.Equal(t, `{"raw":1}`, string(m.Payload))
		if tc.status == "FAILED" {
			require.Equal(t, []string{"IOTDA.014112", "not subscribed"}, []string{m.ErrorCode, m.ErrorMsg})
		}
	}

	// A final status without its finished time is timed by what it has.
	it, err := ingest.FromAPIMessage(&iotdaapi.DeviceMessage{DeviceID: "d1", MessageID: "m1", Status: "DELIVERED",
		CreatedTime: "20261122T101010Z"}, testNow, limits)
	require.NoError(t, err)
	require.Equal(t, created, it.Record.(*notification.Message).At)
	require.NotEmpty(t, it.Payload(), "an answer without its body is kept as JSON")

	for _, bad := range []*iotdaapi.DeviceMessage{
		{DeviceID: "d1", Status: "PENDING", CreatedTime: "20261122T101010Z"},
		{MessageID: "m1", Status: "PENDING", CreatedTime: "20261122T101010Z"},
		{DeviceID: "d1", MessageID: "m1", Status: "QUEUED", CreatedTime: "20261122T101010Z"},
		{DeviceID: "d1", MessageID: "m1", Status: "PENDING", CreatedTime: "yesterday"},
		{DeviceID: "d1", MessageID: "m1", Status: "PENDING"},
	} {
		_, err := ingest.FromAPIMessage(bad, testNow, limits)
		require.Error(t, err, "%+v", bad)
	}

	// A time too far ahead is a dead letter, as for a notification.
	it, err = ingest.FromAPIMessage(&iotdaapi.DeviceMessage{DeviceID: "d1", MessageID: "m1", Status: "DELIVERED",
		FinishedTime: "20991122T101010Z"}, testNow, limits)
	require.NoError(t, err)
	require.NotNil(t, it.DeadLetter)
	require.Equal(t, notification.ClassFutureTime, it.DeadLetter.Class)
}
