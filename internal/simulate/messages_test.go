package simulate_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/notification"
)

// Every device message notification of a stream reads as the generator
// meant it (the expected rows are folded from what it meant, not from what
// a decoder makes of the bodies), and the stream has what the issue asks
// of it: both body shapes, reused message ids, final statuses after final
// statuses, and poison that ingest dead-letters.
func TestMessageStreamReadsAsMeant(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 17, 30, 15, 0, time.UTC)
	s := simulate.Generate(simulate.Config{Commands: 3000, Seed: 5, OutOfOrder: 0.3, Duplicate: 0.1, Poison: 0.05,
		Presence: true, MessageShare: 0.5, Now: now})
	require.NotEmpty(t, s.Commands)
	require.NotEmpty(t, s.DeviceMessages)

	meant := map[string]notification.Message{}
	for _, n := range s.MessageNotes() {
		meant[n.RequestID] = n
	}
	var inside, beside, both, poison int
	for _, m := range s.Messages {
		it := ingest.Classify(m.Body, "test", now, ingest.Limits{MaxBodyBytes: 1 << 20})
		switch m.Kind {
		case simulate.Poison:
			require.NotNil(t, it.DeadLetter, "poison is stored: %s", m.Body)
			if bytes.Contains(m.Body, []byte(notification.ResourceMessageStatus)) {
				poison++
			}
			continue
		case simulate.MessageChange:
		default:
			continue
		}
		require.Nil(t, it.DeadLetter, "%s", m.Body)
		got, ok := it.Record.(*notification.Message)
		require.True(t, ok, "%s reads as %T", m.Body, it.Record)
		want, ok := meant[got.RequestID]
		require.True(t, ok, "request id %q was never made", got.RequestID)
		require.Equal(t, want.Key(), got.Key(), "%s reads otherwise than meant: %+v", m.Body, *got)
		require.Equal(t, want.Status, got.Status)
		require.True(t, want.EventTime.Equal(got.EventTime) && want.At.Equal(got.At), "%s", m.Body)
		require.False(t, got.EventTime.After(now.Add(-time.Minute)), "%s: after the stream's limit", m.Body)
		require.True(t, got.EventTime.After(now.Add(-24*time.Hour)), "%s: before the last day", m.Body)
		var doc struct {
			NotifyData struct {
				Body json.RawMessage `json:"body"`
			} `json:"notify_data"`
			Body json.RawMessage `json:"body"`
		}
		require.NoError(t, json.Unmarshal(m.Body, &doc))
		switch {
		case doc.NotifyData.Body != nil && doc.Body != nil:
			both++
		case doc.NotifyData.Body != nil:
			inside++
		default:
			beside++
		}
	}
	require.Positive(t, inside, "bodies in notify_data")
	require.Positive(t, beside, "bodies beside notify_data")
	require.Positive(t, both, "bodies in both places")
	require.Positive(t, poison, "message poison")

	devicesOf := map[string]map[string]bool{}
	var finalAfterFinal, ties, pending, failed int
	for _, m := range s.DeviceMessages {
		if devicesOf[m.MessageID] == nil {
			devicesOf[m.MessageID] = map[string]bool{}
		}
		require.False(t, devicesOf[m.MessageID][m.DeviceID], "message %s on %s twice", m.MessageID, m.DeviceID)
		devicesOf[m.MessageID][m.DeviceID] = true
		finals := 0
		for _, at := range []*time.Time{m.DeliveredTime, m.FailedTime, m.TimeoutTime} {
			if at != nil {
				finals++
			}
		}
		switch {
		case finals > 1 && m.FailedTime != nil && m.DeliveredTime != nil && m.FailedTime.Equal(*m.DeliveredTime):
			ties++
		case finals > 1 && m.Status == notification.MessageDelivered:
			// Retried and delivered after a failure or a timeout: the
			// later event wins (unless its event time has only seconds
			// and so reads earlier than the failure's milliseconds).
			finalAfterFinal++
		}
		switch m.Status {
		case notification.MessagePending:
			pending++
			require.Zero(t, finals, "%+v", m)
		case notification.MessageFailed:
			failed++
			require.NotEmpty(t, m.ErrorCode, "%+v", m)
			require.NotEmpty(t, m.ErrorMsg, "%+v", m)
		default:
			require.Empty(t, m.ErrorCode, "%+v: the error belongs to FAILED", m)
		}
	}
	reused := 0
	for _, devs := range devicesOf {
		if len(devs) > 1 {
			reused++
		}
	}
	require.Positive(t, reused, "message ids on two devices")
	require.Positive(t, finalAfterFinal, "a final status after a final status")
	require.Positive(t, ties, "two final statuses of one event time")
	require.Positive(t, pending, "messages still held")
	require.Positive(t, failed, "failed messages")
}

// The expected rows do not depend on the order the stream arrives in: the
// same stream shuffled expects the same rows.
func TestMessageExpectationIndependentOfDisorder(t *testing.T) {
	t.Parallel()
	base := simulate.Config{Commands: 800, Seed: 8, MessageShare: 0.7}
	calm := simulate.Generate(base)
	messy := base
	messy.OutOfOrder, messy.Duplicate = 1, 0.3
	wild := simulate.Generate(messy)
	require.Equal(t, calm.DeviceMessages, wild.DeviceMessages)
	require.Equal(t, calm.MessageEvents, wild.MessageEvents)
	require.Equal(t, calm.Commands, wild.Commands)
}

// Messages only (share 1) and the exact size GenerateN promises.
func TestGenerateNWithMessages(t *testing.T) {
	t.Parallel()
	for _, share := range []float64{0.3, 1} {
		cfg := simulate.Config{Seed: 3, OutOfOrder: 0.1, Duplicate: 0.02, Poison: 0.001, MessageShare: share}
		s := simulate.GenerateN(cfg, 5000)
		require.Len(t, s.Messages, 5000, "share %v", share)
		require.NotEmpty(t, s.DeviceMessages)
		if share == 1 {
			require.Empty(t, s.Commands)
		} else {
			require.NotEmpty(t, s.Commands)
		}
		notes := map[string]bool{}
		for _, m := range s.Messages {
			if m.Kind == simulate.MessageChange {
				notes[string(m.Body)] = true
			}
		}
		require.Len(t, notes, s.MessageEvents, "share %v: every notification of every message is there", share)
	}
}

func TestExpectedMessagesRoundTrip(t *testing.T) {
	t.Parallel()
	s := simulate.Generate(simulate.Config{Commands: 300, Seed: 4, MessageShare: 0.5})
	var buf bytes.Buffer
	require.NoError(t, simulate.WriteExpectedMessages(&buf, s.DeviceMessages))
	got, err := simulate.ReadExpectedMessages(&buf)
	require.NoError(t, err)
	require.Len(t, got, len(s.DeviceMessages))
	for i := range got {
		w, g := s.DeviceMessages[i], got[i]
		require.Equal(t, w.DeviceID+"/"+w.MessageID+"/"+string(w.Status), g.DeviceID+"/"+g.MessageID+"/"+string(g.Status))
		require.True(t, w.LastEventTime.Equal(g.LastEventTime))
		require.Equal(t, w.Events, g.Events)
		require.Equal(t, string(w.Tags), string(g.Tags))
	}
}
