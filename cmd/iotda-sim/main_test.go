package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/consumer"
	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelpListsSubcommands(t *testing.T) {
	code, out, _ := runCmd(t, "-h")
	require.Equal(t, 0, code)
	require.Contains(t, out, "iotda-sim publish")
	require.Contains(t, out, "iotda-sim verify")
	code, _, errOut := runCmd(t)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "Usage")
	code, _, errOut = runCmd(t, "nope")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `unknown command "nope"`)
	code, _, errOut = runCmd(t, "publish", "-commands", "5", "-messages", "3", "-expect", "x")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "-expect with -messages and -commands")
	code, _, errOut = runCmd(t, "verify")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "-expect is required")
}

var summary = regexp.MustCompile(`^publish: (\d+) messages \((\d+) commands, (\d+) distinct notifications, (\d+) distinct poison`)

// TestPublishReceiveVerify publishes a messy stream to a fresh queue on the
// broker, receives every message back, applies them with store.Apply in a
// fresh schema, and checks `verify` against the expect file: no mismatch,
// then a mismatch once a row is tampered with.
func TestPublishReceiveVerify(t *testing.T) {
	t.Parallel()
	queue := testenv.Queue(t)
	st, _, dbURL := testenv.Schema(t)
	dir := t.TempDir()
	expect := filepath.Join(dir, "expect.jsonl")
	sentLog := filepath.Join(dir, "sent.tsv")
	expectPresence := filepath.Join(dir, "presence.jsonl")

	code, out, errOut := runCmd(t, "publish", "-url", testenv.AMQPURL(t), "-queue", queue, "-messages", "1500",
		"-seed", "42", "-out-of-order", "0.3", "-duplicate", "0.1", "-poison", "0.02", "-foreign", "0.02",
		"-presence", "-expect-presence", expectPresence, "-expect", expect, "-sent-log", sentLog, "-quiet")
	require.Equal(t, 0, code, errOut)
	m := summary.FindStringSubmatch(out)
	require.NotNil(t, m, out)
	published, _ := strconv.Atoi(m[1])
	notes, _ := strconv.Atoi(m[3])
	poison, _ := strconv.Atoi(m[4])
	require.Equal(t, 1500, published, "-messages sizes the stream exactly")

	f, err := os.Open(expect)
	require.NoError(t, err)
	cmds, err := simulate.ReadExpected(f)
	require.NoError(t, f.Close())
	require.NoError(t, err)
	require.Equal(t, m[2], strconv.Itoa(len(cmds)))
	f, err = os.Open(expectPresence)
	require.NoError(t, err)
	devices, err := simulate.ReadExpectedPresence(f)
	require.NoError(t, f.Close())
	require.NoError(t, err)
	require.NotEmpty(t, devices)
	withDevices := fmt.Sprintf("%s commands, %d devices", m[2], len(devices))

	sent, err := os.ReadFile(sentLog)
	require.NoError(t, err)
	require.GreaterOrEqual(t, strings.Count(string(sent), "\n"), notes, "one sent-log line per valid message")

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
	testenv.RequireQueueEmpty(t, queue)

	var events, dead int
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM device_command_events), (SELECT count(*) FROM dead_letters)`).Scan(&events, &dead))
	require.Equal(t, notes, events)
	require.Equal(t, poison, dead)

	code, out, errOut = runCmd(t, "verify", "-database-url", dbURL, "-expect", expect, "-exact")
	require.Equal(t, 0, code, out+errOut)
	require.Equal(t, "verify: "+m[2]+" commands, 0 mismatches\n", out)
	code, out, errOut = runCmd(t, "verify", "-database-url", dbURL, "-expect", expect, "-expect-presence", expectPresence)
	require.Equal(t, 0, code, out+errOut)
	require.Equal(t, "verify: "+withDevices+", 0 mismatches\n", out)
	_, err = st.Pool().Exec(ctx, `UPDATE device_presence SET status = 'FROZEN' WHERE device_id = $1`, devices[0].ID)
	require.NoError(t, err)
	code, out, _ = runCmd(t, "verify", "-database-url", dbURL, "-expect", expect, "-expect-presence", expectPresence)
	require.Equal(t, 1, code)
	require.Contains(t, out, devices[0].ID+": status FROZEN since")
	require.Contains(t, out, "verify: "+withDevices+", 1 mismatches\n")

	_, err = st.Pool().Exec(ctx, `UPDATE device_commands SET status = 'PENDING' WHERE command_id = $1`, cmds[0].ID)
	require.NoError(t, err)
	code, out, _ = runCmd(t, "verify", "-database-url", dbURL, "-expect", expect)
	require.Equal(t, 1, code)
	require.Contains(t, out, cmds[0].ID+": status is PENDING")
	require.Contains(t, out, "verify: "+m[2]+" commands, 1 mismatches\n")
}

// receiveAll takes want messages off queue, accepting each, the way
// cmdtrack does: manual credit, a window at a time.
func receiveAll(t *testing.T, queue string, want int) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := amqp.Dial(ctx, testenv.AMQPURL(t), nil)
	require.NoError(t, err)
	defer consumer.CloseConn(conn, 5*time.Second)
	sess, err := conn.NewSession(ctx, nil)
	require.NoError(t, err)
	r, err := sess.NewReceiver(ctx, queue, consumer.ReceiverOptions(queue))
	require.NoError(t, err)
	var bodies [][]byte
	for len(bodies) < want {
		window := min(100, want-len(bodies))
		require.NoError(t, r.IssueCredit(uint32(window)))
		for range window {
			msg, err := r.Receive(ctx, nil)
			require.NoError(t, err, "received %d of %d", len(bodies), want)
			require.True(t, msg.Header != nil && msg.Header.Durable, "messages are durable")
			bodies = append(bodies, msg.GetData())
			require.NoError(t, r.AcceptMessage(ctx, msg))
		}
	}
	return bodies
}
