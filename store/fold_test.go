package store

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/notification"
)

func foldNote(id string, st notification.Status, sec int) notification.Notification {
	base := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	n := notification.Notification{CommandID: id, Status: st, EventTime: base.Add(time.Duration(sec) * time.Second),
		DeviceID: "dev-1", CreatedTime: base}
	if st != notification.Pending {
		n.SentTime = base.Add(time.Second)
	}
	return n
}

func foldRows(notes ...notification.Notification) []noteRow {
	rows := make([]noteRow, len(notes))
	for i := range notes {
		rows[i] = noteRow{n: &notes[i], source: "test", key: notes[i].Key(), idx: i}
	}
	return rows
}

// A command's notifications that agree fold into one row: the winner's
// status, result, request id and time, every fact any of them knows.
func TestFoldAgreeingNotifications(t *testing.T) {
	t.Parallel()
	pending, sent, done := foldNote("c1", notification.Pending, 0), foldNote("c1", notification.Sent, 1),
		foldNote("c1", notification.Successful, 5)
	pending.ProductID, pending.Tags = "prod-1", json.RawMessage(`["a"]`)
	sent.AppID = "app-1"
	expire := 3600
	pending.Creation = &notification.Creation{ServiceID: "svc", CommandName: "on"}
	sent.Creation = &notification.Creation{CommandName: "on", Paras: json.RawMessage(`{"v":1}`), ExpireTime: &expire}
	done.Result, done.RequestID, done.ResponseTime = json.RawMessage(`{"code":0}`), "req-9", done.EventTime
	other := foldNote("c2", notification.Sent, 2)

	out := commandFold.fold(foldRows(done, pending, sent, sent, other))
	require.Len(t, out, 2)
	got := out[0].n
	require.Equal(t, notification.Successful, got.Status)
	require.Equal(t, done.EventTime, got.EventTime)
	require.Equal(t, done.Key(), out[0].key, "the winner's key is the row's last_event_key")
	require.Equal(t, 0, out[0].idx)
	require.Equal(t, "req-9", got.RequestID)
	require.JSONEq(t, `{"code":0}`, string(got.Result))
	require.Equal(t, "prod-1", got.ProductID)
	require.Equal(t, "app-1", got.AppID)
	require.Equal(t, `["a"]`, string(got.Tags))
	require.Equal(t, sent.SentTime, got.SentTime)
	require.Equal(t, done.ResponseTime, got.ResponseTime)
	require.Equal(t, &notification.Creation{ServiceID: "svc", CommandName: "on", Paras: json.RawMessage(`{"v":1}`),
		ExpireTime: &expire}, got.Creation)
	require.Equal(t, &notification.Creation{ServiceID: "svc", CommandName: "on"}, pending.Creation,
		"the notifications' creations are left as they were")
	require.Equal(t, "c2", out[1].n.CommandID)
	require.Equal(t, notification.Pending, pending.Status, "the notifications themselves are left as they were")
}

// What Go could decide differently from the SQL rule is left to it: facts
// that disagree (LEAST compares text by collation, jsonb in its own order)
// and notifications timed by their receipt (their time is read in SQL).
func TestFoldLeavesTheRestToSQL(t *testing.T) {
	t.Parallel()
	a, b := foldNote("c1", notification.Sent, 1), foldNote("c1", notification.Delivered, 2)
	b.DeviceID = "dev-2"
	require.Len(t, commandFold.fold(foldRows(a, b)), 2, "contradicting device ids")

	a, b = foldNote("c1", notification.Sent, 1), foldNote("c1", notification.Delivered, 2)
	b.SentTime = b.SentTime.Add(time.Millisecond)
	require.Len(t, commandFold.fold(foldRows(a, b)), 2, "contradicting sent times")

	a, b = foldNote("c1", notification.Sent, 1), foldNote("c1", notification.Delivered, 2)
	a.Tags, b.Tags = json.RawMessage(`["a"]`), json.RawMessage(`[ "a" ]`)
	require.Len(t, commandFold.fold(foldRows(a, b)), 2, "tags written differently")

	a, b = foldNote("c1", notification.Sent, 1), foldNote("c1", notification.Delivered, 2)
	a.Result = json.RawMessage(`{"v":1}`)
	require.Len(t, commandFold.fold(foldRows(a, b)), 2, "a result of the loser's own: PostgreSQL must still see it")

	a, b = foldNote("c1", notification.Sent, 1), foldNote("c1", notification.Delivered, 2)
	b.TimeFromReceipt = true
	require.Len(t, commandFold.fold(foldRows(a, b)), 2, "timed by its receipt")

	// Three where the middle one contradicts the first: the third still
	// folds into whichever row it agrees with.
	a, b, c := foldNote("c1", notification.Sent, 1), foldNote("c1", notification.Delivered, 2),
		foldNote("c1", notification.Successful, 3)
	b.DeviceID, c.DeviceID = "dev-2", ""
	require.Len(t, commandFold.fold(foldRows(a, b, c)), 2)

	a, b = foldNote("c1", notification.Sent, 1), foldNote("c1", notification.Delivered, 2)
	a.Creation, b.Creation = &notification.Creation{CommandName: "on"}, &notification.Creation{CommandName: "off"}
	require.Len(t, commandFold.fold(foldRows(a, b)), 2, "contradicting command names")
}

// The winner is decided at the microsecond PostgreSQL keeps: two event times
// that differ by less are equal there, and the key decides.
func TestFoldWinnerAtMicroseconds(t *testing.T) {
	t.Parallel()
	a, b := foldNote("c1", notification.Successful, 5), foldNote("c1", notification.Failed, 5)
	b.EventTime = b.EventTime.Add(500 * time.Nanosecond)
	rows := foldRows(a, b)
	want := rows[0]
	if string(rows[1].key) > string(rows[0].key) {
		want = rows[1]
	}
	out := commandFold.fold(rows)
	require.Len(t, out, 1)
	require.Equal(t, want.key, out[0].key)
	require.Equal(t, want.n.Status, out[0].n.Status)
}

// Two notifications with one key may still differ in how their result is
// written, and jsonb may read the two spellings as two values (the key's
// canonical form sorts members by their keys as written; jsonb unescapes
// them and keeps the last of duplicates): the SQL decides between them by
// their text, which Go does not know, so they are not folded. The same
// result twice is.
func TestFoldLeavesOneKeyTwoResultsToSQL(t *testing.T) {
	t.Parallel()
	a, b := foldNote("c1", notification.Successful, 5), foldNote("c1", notification.Successful, 5)
	a.Result, b.Result = json.RawMessage(`{"\u0061":1,"a":2}`), json.RawMessage(`{"a":2,"\u0061":1}`)
	require.Equal(t, a.Key(), b.Key(), "the canonical form sorts the members: one key")
	require.Len(t, commandFold.fold(foldRows(a, b)), 2)
	require.Len(t, commandFold.fold(foldRows(b, a)), 2)

	b.Result = a.Result
	require.Len(t, commandFold.fold(foldRows(a, b)), 1, "a redelivery")
}

// The fold reads the merge from the column table: every column of
// device_commands is one it knows how to merge, so that a column added
// without saying how fold reads it (foldable, orderBy) fails here rather
// than being folded wrong or, silently, not at all.
func TestFoldKnowsEveryColumn(t *testing.T) {
	t.Parallel()
	require.NoError(t, commandFold.err)
	require.Len(t, commandFold.ids, 1, "command_id")
	require.Len(t, commandFold.orders, 3, "status_rank, last_event_time, last_event_key")
	require.Len(t, commandFold.ties, 1, "result")

	added := append(slices.Clone(commandColumns),
		textCol("added_fact", fact, func(r *noteRow) string { return r.n.RequestID }))
	require.ErrorContains(t, newFoldRule(added, commandFoldKind).err, "added_fact")
	added = append(slices.Clone(commandColumns),
		valueCol("added_order", "int2", order, func(r *noteRow) int16 { return 0 }))
	require.ErrorContains(t, newFoldRule(added, commandFoldKind).err, "added_order")
	added = append(slices.Clone(commandColumns),
		timeCol("added_latest", latest, func(r *noteRow) time.Time { return r.n.EventTime }))
	require.ErrorContains(t, newFoldRule(added, commandFoldKind).err, "added_latest")

	require.NoError(t, messageFold.err)
	require.Len(t, messageFold.ids, 2, "device_id, message_id")
	require.Len(t, messageFold.orders, 3, "status_rank, last_event_time, last_event_key")
	require.Len(t, messageFold.facts, 11, "name, topic, the header's five, pending_time and the three final times")
	messages := append(slices.Clone(messageColumns),
		textCol("added_fact", fact, func(r *messageRow) string { return r.m.RequestID }))
	require.ErrorContains(t, newFoldRule(messages, messageFoldKind).err, "added_fact")
	messages = append(slices.Clone(messageColumns),
		textCol("added_input", input, func(r *messageRow) string { return r.m.RequestID }))
	require.ErrorContains(t, newFoldRule(messages, messageFoldKind).err, "added_input")
	messages = append([]column[messageRow]{textCol("added_id", identity, func(r *messageRow) string { return r.m.DeviceID })},
		messageColumns...)
	require.ErrorContains(t, newFoldRule(messages, messageFoldKind).err, "added_id")
}

func foldMessage(device, id string, st notification.MessageStatus, sec int) notification.Message {
	at := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(sec) * time.Second)
	return notification.Message{DeviceID: device, MessageID: id, Status: st, EventTime: at, At: at.Add(-time.Second),
		Topic: "t/cfg", ProductID: "prod-1", Payload: []byte(`{}`)}
}

func foldMessageRows(ms ...notification.Message) []messageRow {
	rows := make([]messageRow, len(ms))
	for i := range ms {
		rows[i] = newMessageRow(&ms[i], "test")
	}
	return rows
}

// A message's notifications that agree fold into one row, as a command's
// do: the winner's status, error and time, every fact any of them knows,
// each status' time from its own notification.
func TestFoldAgreeingMessageNotifications(t *testing.T) {
	t.Parallel()
	pending, failed := foldMessage("dev-1", "m-1", notification.MessagePending, 0),
		foldMessage("dev-1", "m-1", notification.MessageFailed, 30)
	pending.Name, pending.Tags = "cfg", json.RawMessage(`["a"]`)
	failed.AppID, failed.ErrorCode, failed.ErrorMsg, failed.RequestID = "app-1", "IOTDA.014112", "not subscribed", "req-2"
	twin := foldMessage("dev-2", "m-1", notification.MessageDelivered, 5) // the same id on another device

	out := messageFold.fold(foldMessageRows(failed, pending, pending, twin))
	require.Len(t, out, 2)
	got := out[0]
	require.Equal(t, notification.MessageFailed, got.m.Status)
	require.Equal(t, failed.EventTime, got.m.EventTime)
	require.Equal(t, failed.Key(), got.key, "the winner's key is the row's last_event_key")
	require.Equal(t, "req-2", got.m.RequestID)
	require.Equal(t, "IOTDA.014112", got.m.ErrorCode)
	require.Equal(t, "cfg", got.m.Name)
	require.Equal(t, "app-1", got.m.AppID)
	require.Equal(t, `["a"]`, string(got.m.Tags))
	require.Equal(t, pending.At, got.pending)
	require.Equal(t, failed.At, got.failed)
	require.True(t, got.delivered.IsZero() && got.timeout.IsZero())
	require.Equal(t, "dev-2", out[1].m.DeviceID)
	require.Empty(t, failed.Name, "the notifications themselves are left as they were")
	require.Empty(t, pending.AppID)
}

// What Go could decide differently from the SQL rule is left to it, as for
// commands: facts that disagree, two times of one status.
func TestFoldLeavesMessagesToSQL(t *testing.T) {
	t.Parallel()
	a, b := foldMessage("dev-1", "m-1", notification.MessagePending, 0), foldMessage("dev-1", "m-1", notification.MessageDelivered, 2)
	b.Topic = "t/other"
	require.Len(t, messageFold.fold(foldMessageRows(a, b)), 2, "contradicting topics")

	a, b = foldMessage("dev-1", "m-1", notification.MessagePending, 0), foldMessage("dev-1", "m-1", notification.MessagePending, 1)
	require.Len(t, messageFold.fold(foldMessageRows(a, b)), 2, "two pending times")

	a, b = foldMessage("dev-1", "m-1", notification.MessageFailed, 1), foldMessage("dev-1", "m-1", notification.MessageDelivered, 2)
	a.Tags, b.Tags = json.RawMessage(`["a"]`), json.RawMessage(`[ "a" ]`)
	require.Len(t, messageFold.fold(foldMessageRows(a, b)), 2, "tags written differently")
}

// The writer folds before its rounds: a batch with a message's PENDING and
// its delivery is one merge statement (one row version), and the history
// still gets both.
func TestMessageWriterFoldsABatch(t *testing.T) {
	t.Parallel()
	pending, delivered := foldMessage("dev-1", "m-1", notification.MessagePending, 0),
		foldMessage("dev-1", "m-1", notification.MessageDelivered, 2)
	var w messageWriter
	w.add(&ingest.Item{Source: "test", Record: &delivered}, 0)
	w.add(&ingest.Item{Source: "test", Record: &pending}, 1)
	var b pgx.Batch
	w.queue(&b, nil, false)
	require.Len(t, b.QueuedQueries, 2, "one merge and the history")
	require.Equal(t, upsertMessagesCounting, b.QueuedQueries[0].SQL)
	require.Equal(t, insertMessageEvents, b.QueuedQueries[1].SQL)
	require.Len(t, b.QueuedQueries[1].Arguments[0], 2, "the history of both")
}
