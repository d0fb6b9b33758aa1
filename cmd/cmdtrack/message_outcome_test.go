package main_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// messageBody is a device.message.status notification: message id of
// device reached status at. beside puts the body beside notify_data, as
// the published sample does.
func messageBody(device, id, status string, at time.Time, beside bool) []byte {
	ts := at.UTC().Format("20060102T150405Z")
	header := `"header":{"device_id":"` + device + `","product_id":"prod-m"}`
	body := `"body":{"message_id":"` + id + `","name":"cfg","status":"` + status + `","timestamp":"` + ts + `"}`
	if beside {
		return []byte(`{"resource":"device.message.status","event":"update","event_time":"` + ts + `",` +
			`"notify_data":{` + header + `},` + body + `}`)
	}
	return []byte(`{"resource":"device.message.status","event":"update","event_time":"` + ts + `",` +
		`"notify_data":{` + header + `,` + body + `}}`)
}

// Two workers on one queue, device messages in both shapes, out of order
// and a third of them twice, then half of the stream again: the messages
// counted as finished, summed over both workers, are the rows that are final
// in the database (a message id reused on another device is another
// message), and each final status replaced is counted at most once.
func TestMessageOutcomesCountedOnceAcrossWorkers(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rng := rand.New(rand.NewPCG(28, 3))
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	const messages = 150
	var stream [][]byte
	retried := 0
	for i := range messages {
		device, id := fmt.Sprintf("dev-%d", i%3), fmt.Sprintf("msg-%03d", i/3)
		at := base.Add(time.Duration(i) * 10 * time.Second)
		stream = append(stream, messageBody(device, id, "PENDING", at, i%2 == 0))
		switch i % 5 {
		case 0: // stays PENDING
		case 1:
			stream = append(stream, messageBody(device, id, "DELIVERED", at.Add(2*time.Second), i%2 == 1))
		case 2:
			stream = append(stream, messageBody(device, id, "TIMEOUT", at.Add(2*time.Second), i%2 == 1))
		default: // failed, then delivered when the platform retried
			retried++
			stream = append(stream, messageBody(device, id, "FAILED", at.Add(2*time.Second), i%2 == 1),
				messageBody(device, id, "DELIVERED", at.Add(4*time.Second), i%2 == 0))
		}
	}
	stream = append(stream, stream[:len(stream)/3]...)
	rng.Shuffle(len(stream), func(i, j int) { stream[i], stream[j] = stream[j], stream[i] })

	var workers []*testenv.Worker
	for range 2 {
		workers = append(workers, testenv.StartWorker(t, f.env("CMDTRACK_BATCH_SIZE", "16", "CMDTRACK_AMQP_CREDIT", "50")))
	}
	for _, w := range workers {
		w.WaitReady(30 * time.Second)
	}
	f.pub.SendAll(t, stream)
	again := stream[:len(stream)/2]
	f.pub.SendAll(t, again)
	waitConsumed(t, len(stream)+len(again), 2*time.Minute, workers...)
	require.Zero(t, f.count(t, `SELECT count(*) FROM dead_letters`), "both shapes read")
	require.Equal(t, messages, f.count(t, `SELECT count(*) FROM device_messages`))
	final := f.count(t, `SELECT count(*) FROM device_messages WHERE status_rank = 1`)
	require.Equal(t, messages-messages/5, final)

	var got, changed float64
	ok := assert.Eventually(t, func() bool {
		got, changed = 0, 0
		for _, w := range workers {
			got += metricSum(t, w, "cmdtrack_messages_finished_total")
			changed += metricSum(t, w, "cmdtrack_messages_final_changed_total")
		}
		return got == float64(final)
	}, 45*time.Second, 100*time.Millisecond) // the exporter reads at most every 10 s
	require.True(t, ok, "cmdtrack_messages_finished_total summed over the workers is %v, want %v", got, final)
	require.LessOrEqual(t, changed, float64(retried), "a FAILED replaced by DELIVERED at most once per message")
	exporters := 0
	for _, w := range workers {
		if hasSeries(t, w, "cmdtrack_messages_stuck") {
			exporters++
		}
	}
	require.Equal(t, 1, exporters, "one replica exports the database's metrics")
	stopCleanly(t, workers...)
}
