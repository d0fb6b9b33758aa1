package store

import (
	"bytes"
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/notification"
)

// messageRow is a device message status change with its key.
type messageRow struct {
	m      *notification.Message
	source string
	key    []byte
}

// at is the message's time for the status s, zero for the others.
func (r *messageRow) at(s notification.MessageStatus) time.Time {
	if r.m.Status != s {
		return time.Time{}
	}
	return r.m.At
}

// messageColumns are device_messages' columns. The merge is the commands'
// rule (README, "Device messages"), with (status_rank, last_event_time,
// last_event_key) as the order: a final status outranks PENDING, the later
// event wins between final statuses, and the greater key between
// notifications of one time, so the row is the same whatever the arrival
// order; duplicates change nothing. The error belongs to the winner, with
// its status.
var messageColumns = []column[messageRow]{
	textCol("device_id", identity, func(r *messageRow) string { return r.m.DeviceID }),
	textCol("message_id", identity, func(r *messageRow) string { return r.m.MessageID }),
	textCol("status", winner, func(r *messageRow) string { return string(r.m.Status) }),
	valueCol("status_rank", "int2", order, func(r *messageRow) int16 { return r.m.Rank() }),
	valueCol("last_event_time", "timestamptz", order, func(r *messageRow) time.Time { return r.m.EventTime }),
	valueCol("last_event_key", "bytea", order, func(r *messageRow) []byte { return r.key }),
	textCol("last_request_id", winner, func(r *messageRow) string { return r.m.RequestID }),
	textCol("error_code", winner, func(r *messageRow) string { return r.m.ErrorCode }),
	textCol("error_msg", winner, func(r *messageRow) string { return r.m.ErrorMsg }),
	textCol("name", fact, func(r *messageRow) string { return r.m.Name }),
	textCol("topic", fact, func(r *messageRow) string { return r.m.Topic }),
	textCol("product_id", fact, func(r *messageRow) string { return r.m.ProductID }),
	textCol("app_id", fact, func(r *messageRow) string { return r.m.AppID }),
	textCol("gateway_id", fact, func(r *messageRow) string { return r.m.GatewayID }),
	textCol("node_id", fact, func(r *messageRow) string { return r.m.NodeID }),
	jsonCol("tags", fact, func(r *messageRow) []byte { return r.m.Tags }),
	timeCol("pending_time", fact, func(r *messageRow) time.Time { return r.at(notification.MessagePending) }),
	timeCol("delivered_time", fact, func(r *messageRow) time.Time { return r.at(notification.MessageDelivered) }),
	timeCol("failed_time", fact, func(r *messageRow) time.Time { return r.at(notification.MessageFailed) }),
	timeCol("timeout_time", fact, func(r *messageRow) time.Time { return r.at(notification.MessageTimeout) }),
}

// messageEventColumns are device_message_events' columns: the history, one
// row per distinct notification, partitioned by event time (migration 015).
var messageEventColumns = []column[messageRow]{
	textCol("device_id", identity, func(r *messageRow) string { return r.m.DeviceID }),
	textCol("message_id", identity, func(r *messageRow) string { return r.m.MessageID }),
	valueCol("event_key", "bytea", identity, func(r *messageRow) []byte { return r.key }),
	textCol("status", plain, func(r *messageRow) string { return string(r.m.Status) }),
	valueCol("event_time", "timestamptz", identity, func(r *messageRow) time.Time { return r.m.EventTime }),
	textCol("request_id", plain, func(r *messageRow) string { return r.m.RequestID }),
	textCol("source", plain, func(r *messageRow) string { return r.source }),
	valueCol("payload", "text", plain, func(r *messageRow) string { return unsafeString(r.m.Payload) }),
}

var (
	// The merge records the status it replaces (migration 019), for the
	// outcomes.
	upsertMessages      = mergeUpsert("device_messages", messageColumns, "previous_status = d.status")
	insertMessageEvents = insertOnce("device_message_events", messageEventColumns)
	// upsertMessagesCounting is the merge, recording the messages' outcomes
	// (recordOutcomes) in the same statement.
	upsertMessagesCounting = "WITH m AS (\n" + upsertMessages +
		"\nRETURNING device_id, message_id, status, product_id, previous_status)\n" + recordOutcomes(messageOutcomes)
)

// messageWriter stores a batch's device message status changes: the merge
// into device_messages, in rounds (one upsert may not touch a row twice),
// and the history, each taking its rows in (device_id, message_id) order.
type messageWriter struct {
	rows []messageRow
}

func (w *messageWriter) add(it *ingest.Item, _ int) {
	m := it.Record.(*notification.Message)
	w.rows = append(w.rows, messageRow{m: m, source: it.Source, key: m.Key()})
}

// queue queues the merge, which records the messages' outcomes in
// outcome_events itself, and the history. Which message a notification
// changed is told to nobody yet (the outcome counters are the database's,
// and messages have no stage histograms), so it returns no tracker.
func (w *messageWriter) queue(b *pgx.Batch, _ []bool, _ bool) *tracker {
	rows := w.rows
	slices.SortFunc(rows, func(a, b messageRow) int {
		return cmp.Or(strings.Compare(a.m.DeviceID, b.m.DeviceID), strings.Compare(a.m.MessageID, b.m.MessageID),
			bytes.Compare(a.key, b.key))
	})
	same := func(a, b *messageRow) bool { return a.m.DeviceID == b.m.DeviceID && a.m.MessageID == b.m.MessageID }
	for _, round := range rounds(rows, same) {
		b.Queue(upsertMessagesCounting, args(messageColumns, round)...)
	}
	b.Queue(insertMessageEvents, args(messageEventColumns, rows)...)
	return nil
}
