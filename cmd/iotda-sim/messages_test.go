package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/notification"
)

var messageSummary = regexp.MustCompile(`, (\d+) distinct device message notifications of (\d+) device messages\) to `)

// TestPublishVerifyMessages publishes a messy stream with a share of device
// messages, stores what comes back off the broker, and checks `verify
// -exact -expect-messages`: no mismatch, then one for a tampered row and
// one for a row the stream never had.
func TestPublishVerifyMessages(t *testing.T) {
	t.Parallel()
	queue := testenv.Queue(t)
	st, _, dbURL := testenv.Schema(t)
	dir := t.TempDir()
	expect := filepath.Join(dir, "expect.jsonl")
	expectMessages := filepath.Join(dir, "messages.jsonl")

	code, _, errOut := runCmd(t, "publish", "-expect-messages", expectMessages, "-queue", queue)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "-expect-messages needs -message-share")
	code, _, errOut = runCmd(t, "publish", "-message-share", "1.5", "-queue", queue)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "-message-share must be between 0 and 1")

	code, out, errOut := runCmd(t, "publish", "-url", testenv.AMQPURL(t), "-queue", queue, "-messages", "2000",
		"-seed", "43", "-out-of-order", "0.3", "-duplicate", "0.1", "-poison", "0.02", "-message-share", "0.5",
		"-expect", expect, "-expect-messages", expectMessages, "-quiet")
	require.Equal(t, 0, code, errOut)
	m := summary.FindStringSubmatch(out)
	require.NotNil(t, m, out)
	mm := messageSummary.FindStringSubmatch(out)
	require.NotNil(t, mm, out)
	published, _ := strconv.Atoi(m[1])
	require.Equal(t, 2000, published)
	msgNotes, _ := strconv.Atoi(mm[1])

	f, err := os.Open(expectMessages)
	require.NoError(t, err)
	want, err := simulate.ReadExpectedMessages(f)
	require.NoError(t, f.Close())
	require.NoError(t, err)
	require.Equal(t, mm[2], strconv.Itoa(len(want)))
	require.NotEmpty(t, want)

	bodies := receiveAll(t, queue, published)
	items := make([]ingest.Item, len(bodies))
	for i, b := range bodies {
		items[i] = ingest.Classify(b, "test", time.Now(), ingest.Limits{MaxBodyBytes: 1 << 20})
	}
	ctx := context.Background()
	for len(items) > 0 {
		n := min(256, len(items))
		_, err := st.Apply(ctx, items[:n])
		require.NoError(t, err)
		items = items[n:]
	}
	require.Equal(t, msgNotes, testenv.Count(t, st.Pool(), `SELECT count(*) FROM device_message_events`))

	verify := func() (int, string) {
		code, out, errOut := runCmd(t, "verify", "-database-url", dbURL, "-expect", expect, "-expect-messages", expectMessages, "-exact")
		return code, out + errOut
	}
	code, out = verify()
	require.Equal(t, 0, code, out)
	require.Equal(t, "verify: "+m[2]+" commands, "+mm[2]+" device messages, 0 mismatches\n", out)

	i := 0
	for want[i].Status == notification.MessagePending {
		i++
	}
	_, err = st.Pool().Exec(ctx, `UPDATE device_messages SET status = 'PENDING' WHERE device_id = $1 AND message_id = $2`,
		want[i].DeviceID, want[i].MessageID)
	require.NoError(t, err)
	_, err = st.Pool().Exec(ctx, `INSERT INTO device_messages (device_id, message_id, status, status_rank, last_event_time, last_event_key)
		VALUES ('dev-x', 'never-sent', 'DELIVERED', 1, now(), '\x00')`)
	require.NoError(t, err)
	code, out = verify()
	require.Equal(t, 1, code)
	require.Contains(t, out, "message "+want[i].MessageID+" on "+want[i].DeviceID+": status is PENDING")
	require.Contains(t, out, "device_messages holds "+strconv.Itoa(len(want)+1)+" rows, the stream has "+mm[2]+" device messages")
	require.Contains(t, out, ", 2 mismatches\n")
}
