package main_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// TestSimulatedMessages runs the simulator's stream with a share of device
// messages (both body shapes, ids reused on other devices, final statuses
// after final ones, poison among them), shuffled and duplicated, through
// the queue, and requires every command and message row exactly as the
// merge rule of README "Device messages" makes it.
func TestSimulatedMessages(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s := simulate.Generate(simulate.Config{Commands: 800, Seed: 28, OutOfOrder: 1, Duplicate: 0.1, Poison: 0.02, MessageShare: 0.5})
	require.NotEmpty(t, s.Commands)
	require.NotEmpty(t, s.DeviceMessages)
	f.pub.SendAll(t, bodies(s.Messages))
	w := testenv.StartWorker(t, f.env())
	w.WaitReady(30 * time.Second)
	f.waitStored(t, s, time.Minute)
	stopCleanly(t, w)
	f.verify(t, s)
	// The message poison is dead-lettered with its reasons.
	rows, err := f.st.Pool().Query(context.Background(), `SELECT DISTINCT reason_class FROM dead_letters
		WHERE position('"device.message.status"'::bytea IN body) > 0 ORDER BY 1`)
	require.NoError(t, err)
	var classes []string
	for rows.Next() {
		var c string
		require.NoError(t, rows.Scan(&c))
		classes = append(classes, c)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"future_event_time", "invalid_time", "missing_field", "unknown_status"}, classes)
}

// TestSimulatedMessagesHTTPPush sends a stream of device messages only
// through the HTTP push receiver, several requests at once and some twice:
// the rows are the same as through the queue, and poison is answered 400.
func TestSimulatedMessagesHTTPPush(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	s := simulate.Generate(simulate.Config{Commands: 300, Seed: 29, OutOfOrder: 1, Duplicate: 0.1, Poison: 0.03, MessageShare: 1})
	require.Empty(t, s.Commands)
	w := testenv.StartWorker(t, f.env("CMDTRACK_HTTP_ADDR", addr, "CMDTRACK_HTTP_ALLOW_UNAUTHENTICATED", "true"))
	w.WaitReady(30 * time.Second)

	client := &http.Client{Timeout: 30 * time.Second}
	work := make(chan simulate.Message)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var wrong []string
	for range 6 {
		wg.Go(func() {
			for m := range work {
				resp, err := client.Post("http://"+addr+"/", "application/json", bytes.NewReader(m.Body))
				if err != nil {
					mu.Lock()
					wrong = append(wrong, err.Error())
					mu.Unlock()
					continue
				}
				resp.Body.Close()
				if want := map[bool]int{true: 400, false: 200}[m.Kind == simulate.Poison]; resp.StatusCode != want {
					mu.Lock()
					wrong = append(wrong, fmt.Sprintf("%s: answered %d, want %d", m.Body, resp.StatusCode, want))
					mu.Unlock()
				}
			}
		})
	}
	for _, m := range s.Messages {
		work <- m
	}
	close(work)
	wg.Wait()
	require.Empty(t, wrong)
	// Every answer came after its commit: no waiting needed.
	stopCleanly(t, w)
	f.verify(t, s)
}

// A message notification dated ahead of a worker's lagging clock is a dead
// letter (future_event_time), and so is a misspelt status
// (unknown_status), each with its reason; the row stays what the rest
// made it. Once the clock is right, `cmdtrack replay` applies the first by
// the merge rule and keeps the second, counted.
func TestMessageDeadLetterReplayed(t *testing.T) {
	t.Parallel()
	f := setup(t)
	now := time.Now().UTC()
	note := func(status string, at time.Time, request string, beside bool) []byte {
		body := fmt.Sprintf(`{"message_id":"m-1","name":"config-push","topic":"t/down","status":%q,"timestamp":%q}`,
			status, at.Format("20060102T150405Z"))
		data := `{"header":{"device_id":"dev-r","product_id":"prod-r"},"body":` + body + `}`
		tail := ""
		if beside {
			data, tail = `{"header":{"device_id":"dev-r","product_id":"prod-r"}}`, `,"body":`+body
		}
		return fmt.Appendf(nil, `{"resource":"device.message.status","event":"update","event_time":%q,"event_time_ms":%q,"request_id":%q,"notify_data":%s%s}`,
			at.Format("20060102T150405Z"), at.Format("2006-01-02T15:04:05.000Z"), request, data, tail)
	}
	pending := note("PENDING", now.Add(-time.Hour), "r-1", false)
	ahead := note("DELIVERED", now.Add(10*time.Minute), "r-2", true) // a worker whose clock lags 10 minutes
	misspelt := note("DELIVRED", now.Add(-30*time.Minute), "r-3", false)

	// The worker's own skew stands in for a clock lagging more than it.
	w := testenv.StartWorker(t, f.env("CMDTRACK_MAX_FUTURE_SKEW", "1m"))
	w.WaitReady(30 * time.Second)
	f.pub.Send(t, ahead, pending, misspelt, ahead)
	require.Eventually(t, func() bool {
		return f.count(t, `SELECT count(*) FROM dead_letters`) == 2 && f.count(t, `SELECT count(*) FROM device_messages`) == 1
	}, time.Minute, 50*time.Millisecond)
	stopCleanly(t, w)
	testenv.RequireQueueEmpty(t, f.queue)

	state := func() string {
		var s string
		require.NoError(t, f.st.Pool().QueryRow(context.Background(), `
			SELECT status || ' ' || coalesce(to_char(delivered_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS'), '-')
			FROM device_messages WHERE device_id = 'dev-r' AND message_id = 'm-1'`).Scan(&s))
		return s
	}
	require.Equal(t, "PENDING -", state())
	reasons := func() map[string]string {
		rows, err := f.st.Pool().Query(context.Background(), `SELECT reason_class, reason || ' #' || replay_count FROM dead_letters`)
		require.NoError(t, err)
		out := map[string]string{}
		for rows.Next() {
			var c, r string
			require.NoError(t, rows.Scan(&c, &r))
			out[c] = r
		}
		require.NoError(t, rows.Err())
		return out
	}
	got := reasons()
	require.Len(t, got, 2)
	require.Contains(t, got["future_event_time"], "ahead", got)
	require.Contains(t, got["unknown_status"], `"DELIVRED"`, got)

	out := f.cli(t, nil, "replay")
	require.Contains(t, out, "1 applied", out)
	require.Equal(t, "DELIVERED "+now.Add(10*time.Minute).Format("2006-01-02T15:04:05"), state())
	got = reasons()
	require.Len(t, got, 1, "the misspelt status stays")
	require.Contains(t, got["unknown_status"], "#1")
	require.Equal(t, 2, f.count(t, `SELECT count(*) FROM device_message_events WHERE device_id = 'dev-r'`))
}
