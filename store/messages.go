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

// messageRow is a device message status change with its key, or, folded
// (fold.go), several changes of one message.
type messageRow struct {
	m      *notification.Message
	source string
	key    []byte
	// When the message reached each status: the row's own status's is
	// m.At, a folded row's are those of the changes it joined.
	pending, delivered, failed, timeout time.Time
	// The header the history keeps once, and the payload without it.
	headerCut
}

func newMessageRow(m *notification.Message, source string) messageRow {
	r := messageRow{m: m, source: source, key: m.Key(), headerCut: placed(m)}
	if at := r.at(m.Status); at != nil {
		*at = m.At
	}
	return r
}

// at is where r holds the message's time for the status s.
func (r *messageRow) at(s notification.MessageStatus) *time.Time {
	switch s {
	case notification.MessagePending:
		return &r.pending
	case notification.MessageDelivered:
		return &r.delivered
	case notification.MessageFailed:
		return &r.failed
	case notification.MessageTimeout:
		return &r.timeout
	}
	return nil
}

// messageColumns are device_messages' columns. The merge is the commands'
// rule (README, "Device messages"), with (status_rank, last_event_time,
// last_event_key) as the order: a final status outranks PENDING, the later
// event wins between final statuses, and the greater key between
// notifications of one time, so the row is the same whatever the arrival
// order; duplicates change nothing. The error belongs to the winner, with
// its status.
//
// As commandColumns, its identity, fact and order columns say where a row
// holds their value, so that fold (fold.go) merges a batch's notifications
// of one message in Go as the statement would in SQL.
var messageColumns = []column[messageRow]{
	textKey("device_id", func(r *messageRow) *string { return &r.m.DeviceID }),
	textKey("message_id", func(r *messageRow) *string { return &r.m.MessageID }),
	textCol("status", winner, func(r *messageRow) string { return string(r.m.Status) }),
	orderBy(valueCol("status_rank", "int2", order, func(r *messageRow) int16 { return r.m.Rank() }),
		func(a, b *messageRow) int { return cmp.Compare(a.m.Rank(), b.m.Rank()) }),
	// To the microsecond PostgreSQL keeps.
	orderBy(valueCol("last_event_time", "timestamptz", order, func(r *messageRow) time.Time { return r.m.EventTime }),
		func(a, b *messageRow) int { return cmp.Compare(a.m.EventTime.UnixMicro(), b.m.EventTime.UnixMicro()) }),
	orderBy(valueCol("last_event_key", "bytea", order, func(r *messageRow) []byte { return r.key }),
		func(a, b *messageRow) int { return bytes.Compare(a.key, b.key) }),
	textCol("last_request_id", winner, func(r *messageRow) string { return r.m.RequestID }),
	textCol("error_code", winner, func(r *messageRow) string { return r.m.ErrorCode }),
	textCol("error_msg", winner, func(r *messageRow) string { return r.m.ErrorMsg }),
	textFact("name", func(r *messageRow) *string { return &r.m.Name }),
	textFact("topic", func(r *messageRow) *string { return &r.m.Topic }),
	textFact("product_id", func(r *messageRow) *string { return &r.m.ProductID }),
	textFact("app_id", func(r *messageRow) *string { return &r.m.AppID }),
	textFact("gateway_id", func(r *messageRow) *string { return &r.m.GatewayID }),
	textFact("node_id", func(r *messageRow) *string { return &r.m.NodeID }),
	jsonFact("tags", fact, func(r *messageRow) *[]byte { return (*[]byte)(&r.m.Tags) }),
	timeFact("pending_time", func(r *messageRow) *time.Time { return &r.pending }),
	timeFact("delivered_time", func(r *messageRow) *time.Time { return &r.delivered }),
	timeFact("failed_time", func(r *messageRow) *time.Time { return &r.failed }),
	timeFact("timeout_time", func(r *messageRow) *time.Time { return &r.timeout }),
}

// messageFoldKind: a folded row starts as a copy of the winner, and its
// notification too, which the loser's facts fill in.
var messageFoldKind = foldKind[messageRow]{
	joined: func(win, lose *messageRow) *messageRow {
		// One allocation for the row and its message.
		m := &struct {
			r messageRow
			m notification.Message
		}{r: *win, m: *win.m}
		m.r.m = &m.m
		return &m.r
	},
}

// messageEventColumns are device_message_events' columns: the history, one
// row per distinct notification, partitioned by event time (migration 015),
// each header kept once as the commands' history does (migration 029).
var messageEventColumns = slices.Concat([]column[messageRow]{
	textCol("device_id", identity, func(r *messageRow) string { return r.m.DeviceID }),
	textCol("message_id", identity, func(r *messageRow) string { return r.m.MessageID }),
	valueCol("event_key", "bytea", identity, func(r *messageRow) []byte { return r.key }),
	textCol("status", plain, func(r *messageRow) string { return string(r.m.Status) }),
	valueCol("event_time", "timestamptz", identity, func(r *messageRow) time.Time { return r.m.EventTime }),
	textCol("request_id", plain, func(r *messageRow) string { return r.m.RequestID }),
	textCol("source", plain, func(r *messageRow) string { return r.source }),
}, payloadColumns(func(r *messageRow) *headerCut { return &r.headerCut }, func(r *messageRow) []byte { return r.m.Payload }))

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
// into device_messages, its changes of one message folded where they may
// be (fold.go), the rest in rounds (one upsert may not touch a row twice),
// and the history of every change, each taking its rows in (device_id,
// message_id) order.
type messageWriter struct {
	rows []messageRow
	headerCutter
}

func (w *messageWriter) add(it *ingest.Item, _ int) {
	m := it.Record.(*notification.Message)
	w.rows = append(w.rows, newMessageRow(m, it.Source))
}

// queue queues the merge, which records the messages' outcomes in
// outcome_events itself, and the history. Which message a notification
// changed is told to nobody yet (the outcome counters are the database's,
// and messages have no stage histograms), so it returns no tracker.
func (w *messageWriter) queue(b *pgx.Batch, _ []bool, _ bool) *tracker {
	rows := w.rows
	for i := range rows {
		w.cut(&rows[i].headerCut, rows[i].m.Payload)
	}
	slices.SortFunc(rows, func(a, b messageRow) int {
		return cmp.Or(strings.Compare(a.m.DeviceID, b.m.DeviceID), strings.Compare(a.m.MessageID, b.m.MessageID),
			bytes.Compare(a.key, b.key))
	})
	same := func(a, b *messageRow) bool { return a.m.DeviceID == b.m.DeviceID && a.m.MessageID == b.m.MessageID }
	for _, round := range rounds(messageFold.fold(rows), same) {
		b.Queue(upsertMessagesCounting, args(messageColumns, round)...)
	}
	b.Queue(insertMessageEvents, args(messageEventColumns, rows)...)
	return nil
}
