package ingest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/notification"
)

var limits = ingest.Limits{MaxBodyBytes: 1024}

// An empty body must become a storable dead letter (its body column is NOT
// NULL), or it would crash-loop the worker.
func TestEmptyBodyIsStorable(t *testing.T) {
	t.Parallel()
	for _, body := range [][]byte{nil, {}} {
		it := ingest.Classify(body, "test", time.Now(), limits)
		require.NotNil(t, it.DeadLetter)
		require.NotNil(t, it.DeadLetter.Body)
		require.Equal(t, notification.ClassEmpty, it.DeadLetter.Class)
		it = ingest.Unusable("test", body, notification.ClassEmpty, "no body")
		require.NotNil(t, it.DeadLetter.Body)
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	valid := `{"resource":"device.command.status","event":"update","event_time":"20261101T000000Z",` +
		`"notify_data":{"header":{"device_id":"d1"},"body":{"command_id":"c1","status":"SENT"}}}`
	for _, c := range []struct {
		name    string
		body    string
		outcome ingest.Outcome
		class   notification.Class
	}{
		{"v5 notification", valid, ingest.Applied, ""},
		{"legacy callback", `{"deviceId":"d","commandId":"c2","result":{"resultCode":"SENT"}}`, ingest.Applied, ""},
		{"other resource", `{"resource":"device.status","event":"update"}`, ingest.Skipped, ""},
		{"too large", `{"pad":"` + strings.Repeat("x", 2000) + `"}`, ingest.DeadLettered, notification.ClassTooLarge},
		{"not json", `not json`, ingest.DeadLettered, notification.ClassInvalidJSON},
		{"unknown status", strings.Replace(valid, "SENT", "BORED", 1), ingest.DeadLettered, notification.ClassUnknownStatus},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			it := ingest.Classify([]byte(c.body), "amqp:q", at, limits)
			require.Equal(t, "amqp:q", it.Source)
			res := it.Result()
			require.Equal(t, c.outcome, res.Outcome)
			if c.class != "" {
				require.Equal(t, c.class, res.DeadLetter.Class)
				require.Equal(t, c.body, string(res.DeadLetter.Body), "a dead letter keeps the body byte for byte")
				require.NotEmpty(t, res.DeadLetter.Reason)
			}
		})
	}
}
