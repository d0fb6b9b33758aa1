package store_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// messageRow is a device_messages row as the tests compare it.
type messageRow struct {
	Status                                         string
	LastEventTime                                  time.Time
	LastEventKey                                   []byte
	LastRequestID, ErrorCode, ErrorMsg             *string
	Name, Topic, ProductID, AppID, GatewayID, Node *string
	Pending, Delivered, Failed, Timeout            *time.Time
}

func readMessage(t *testing.T, st *store.Store, device, id string) messageRow {
	t.Helper()
	var r messageRow
	require.NoError(t, st.Pool().QueryRow(context.Background(), `
		SELECT status, last_event_time, last_event_key, last_request_id, error_code, error_msg,
		       name, topic, product_id, app_id, gateway_id, node_id,
		       pending_time, delivered_time, failed_time, timeout_time
		FROM device_messages WHERE device_id = $1 AND message_id = $2`, device, id).Scan(
		&r.Status, &r.LastEventTime, &r.LastEventKey, &r.LastRequestID, &r.ErrorCode, &r.ErrorMsg,
		&r.Name, &r.Topic, &r.ProductID, &r.AppID, &r.GatewayID, &r.Node,
		&r.Pending, &r.Delivered, &r.Failed, &r.Timeout))
	r.LastEventTime = r.LastEventTime.UTC()
	for _, p := range []**time.Time{&r.Pending, &r.Delivered, &r.Failed, &r.Timeout} {
		if *p != nil {
			u := (*p).UTC()
			*p = &u
		}
	}
	return r
}

// messageChanges makes a messy set of notifications for one message: its
// PENDING (twice, as the platform may send it), final statuses that
// contradict each other (FAILED then DELIVERED on a retry, a TIMEOUT), two
// at one event time (the key decides), one without a timestamp, headers
// some omit or contradict, and a late PENDING after the final ones.
func messageChanges(rng *rand.Rand, device, id string) []notification.Message {
	base := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(rng.IntN(1e6)) * time.Second)
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }
	maybe := func(s string) string {
		if rng.IntN(3) == 0 {
			return ""
		}
		return s
	}
	n := 0
	mk := func(s notification.MessageStatus, sec int) notification.Message {
		n++
		m := notification.Message{DeviceID: device, MessageID: id, Status: s, EventTime: at(sec), At: at(sec - rng.IntN(2)),
			RequestID: maybe(fmt.Sprintf("req-%d", n)), Name: maybe("cfg"), Topic: maybe(fmt.Sprintf("t/%d", rng.IntN(2))),
			ProductID: maybe("p-1"), AppID: maybe(fmt.Sprintf("app-%d", rng.IntN(2))), GatewayID: maybe(device), NodeID: maybe("n"),
			Payload: fmt.Appendf(nil, `{"n":%d}`, n)}
		if s == notification.MessageFailed {
			m.ErrorCode, m.ErrorMsg = "IOTDA.014112", fmt.Sprintf("not subscribed (%d)", n)
		}
		if rng.IntN(4) == 0 {
			m.At = m.EventTime // no timestamp in the body
		}
		if rng.IntN(3) == 0 {
			m.Tags = json.RawMessage(`[{"tag_key":"site","tag_value":"north"}]`)
		}
		return m
	}
	return []notification.Message{
		mk(notification.MessagePending, 0),
		mk(notification.MessagePending, 0),
		mk(notification.MessageFailed, 30),
		mk(notification.MessageDelivered, 60),
		mk(notification.MessageTimeout, 60), // the same time as DELIVERED: the key decides
		mk(notification.MessageFailed, 45),
		mk(notification.MessagePending, 90), // a late PENDING never replaces a final status
	}
}

// expectedMessage is the row by the rule as the README states it,
// independently of the SQL.
func expectedMessage(ms []notification.Message) messageRow {
	win := slices.MaxFunc(ms, func(a, b notification.Message) int {
		return cmp.Or(cmp.Compare(a.Rank(), b.Rank()), a.EventTime.Compare(b.EventTime), bytes.Compare(a.Key(), b.Key()))
	})
	least := func(get func(m notification.Message) string) *string {
		var out *string
		for _, m := range ms {
			if v := get(m); v != "" && (out == nil || v < *out) {
				out = &v
			}
		}
		return out
	}
	earliest := func(s notification.MessageStatus) *time.Time {
		var out *time.Time
		for _, m := range ms {
			if m.Status == s && (out == nil || m.At.Before(*out)) {
				v := m.At
				out = &v
			}
		}
		return out
	}
	opt := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	return messageRow{
		Status: string(win.Status), LastEventTime: win.EventTime, LastEventKey: win.Key(),
		LastRequestID: opt(win.RequestID), ErrorCode: opt(win.ErrorCode), ErrorMsg: opt(win.ErrorMsg),
		Name:      least(func(m notification.Message) string { return m.Name }),
		Topic:     least(func(m notification.Message) string { return m.Topic }),
		ProductID: least(func(m notification.Message) string { return m.ProductID }),
		AppID:     least(func(m notification.Message) string { return m.AppID }),
		GatewayID: least(func(m notification.Message) string { return m.GatewayID }),
		Node:      least(func(m notification.Message) string { return m.NodeID }),
		Pending:   earliest(notification.MessagePending), Delivered: earliest(notification.MessageDelivered),
		Failed: earliest(notification.MessageFailed), Timeout: earliest(notification.MessageTimeout),
	}
}

// TestMessageMergeOrderIndependent feeds random permutations of messages'
// notifications, with duplicates, split into random batches mixed with
// command notifications and the same message id on another device, and
// requires each stored row to be the rule's answer every time, and the
// history to hold each distinct notification once.
func TestMessageMergeOrderIndependent(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(13, 14))
	const messages, perms = 8, 12
	for k := range messages {
		id := fmt.Sprintf("m-%d", k)
		// The same message id on two devices is two messages.
		devices := []string{fmt.Sprintf("dev-%d", k), fmt.Sprintf("dev-%d-twin", k)}
		var template []notification.Message
		for _, d := range devices {
			template = append(template, messageChanges(rng, d, id)...)
		}
		want := map[string]messageRow{}
		for _, d := range devices {
			want[d] = expectedMessage(slices.DeleteFunc(slices.Clone(template), func(m notification.Message) bool { return m.DeviceID != d }))
		}
		distinct := map[string]bool{}
		for _, m := range template {
			distinct[string(m.Key())] = true
		}
		for p := range perms {
			_, err := st.Pool().Exec(ctx, `DELETE FROM device_messages WHERE message_id = $1`, id)
			require.NoError(t, err)
			_, err = st.Pool().Exec(ctx, `DELETE FROM device_message_events WHERE message_id = $1`, id)
			require.NoError(t, err)
			var items []ingest.Item
			for _, i := range rng.Perm(len(template)) {
				m := template[i]
				items = append(items, ingest.Item{Source: "test", Record: &m})
				if rng.IntN(3) == 0 { // a duplicate
					items = append(items, ingest.Item{Source: "test", Record: &m})
				}
				if rng.IntN(3) == 0 { // a command notification in the same batch
					n := notification.Notification{CommandID: fmt.Sprintf("c-%d-%d-%d", k, p, i), Status: notification.Sent,
						EventTime: m.EventTime, DeviceID: m.DeviceID, Payload: []byte(`{}`)}
					items = append(items, ingest.Item{Source: "test", Record: &n})
				}
			}
			for len(items) > 0 {
				n := 1 + rng.IntN(len(items))
				for _, r := range apply(t, st, items[:n]) {
					require.Equal(t, ingest.Applied, r.Outcome)
				}
				items = items[n:]
			}
			for _, d := range devices {
				require.Equal(t, want[d], readMessage(t, st, d, id), "device %s, message %s, permutation %d", d, id, p)
			}
			require.Equal(t, len(distinct), count(t, st, `SELECT count(*) FROM device_message_events WHERE message_id = '`+id+`'`))
		}
	}
}

// A redelivered notification changes nothing: not even updated_at.
func TestMessageDuplicateChangesNothing(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	m := messageChanges(rand.New(rand.NewPCG(15, 16)), "dev-dup", "m-dup")[2]
	apply(t, st, []ingest.Item{{Source: "test", Record: &m}})
	var before time.Time
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT updated_at FROM device_messages`).Scan(&before))
	apply(t, st, []ingest.Item{{Source: "test", Record: &m}, {Source: "test", Record: &m}})
	var after time.Time
	var rows int
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT updated_at, count(*) OVER () FROM device_messages`).Scan(&after, &rows))
	require.Equal(t, before, after)
	require.Equal(t, 1, rows)
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM device_message_events`))
}

// A value PostgreSQL refuses dead-letters that notification alone, with
// its body; the rest of the batch is stored.
func TestMessageRejectedIsDeadLettered(t *testing.T) {
	t.Parallel()
	st := setup(t)
	good := messageChanges(rand.New(rand.NewPCG(17, 18)), "dev-good", "m-1")[0]
	bad := good
	bad.DeviceID = "dev-bad"
	bad.Tags = json.RawMessage(`[1,`) // invalid jsonb
	bad.Payload = []byte(`{"bad":true}`)
	res := apply(t, st, []ingest.Item{{Source: "test", Record: &good}, {Source: "test", Record: &bad}})
	require.Equal(t, ingest.Applied, res[0].Outcome)
	require.Equal(t, ingest.DeadLettered, res[1].Outcome)
	require.Equal(t, notification.ClassRejected, res[1].DeadLetter.Class)
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM device_messages`))
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM dead_letters WHERE body = '{"bad":true}'`))
}

// stuck_messages(quiet) is the messages PENDING longer than quiet, within
// the horizon, with their device's status.
func TestStuckMessages(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	msg := func(device, id string, s notification.MessageStatus, ago time.Duration) ingest.Item {
		return ingest.Item{Source: "test", Record: &notification.Message{DeviceID: device, MessageID: id, Status: s,
			EventTime: now.Add(-ago), At: now.Add(-ago), Payload: []byte(`{}`)}}
	}
	off := notification.Presence{DeviceID: "dev-off", Status: notification.Offline, Since: now.Add(-5 * time.Hour),
		EventTime: now.Add(-5 * time.Hour), Payload: []byte(`{}`)}
	apply(t, st, []ingest.Item{
		msg("dev-off", "quiet", notification.MessagePending, 2*time.Hour),
		msg("dev-x", "recent", notification.MessagePending, time.Minute),
		msg("dev-x", "done", notification.MessageDelivered, 2*time.Hour),
		msg("dev-x", "ancient", notification.MessagePending, 30*24*time.Hour), // beyond the horizon
		{Source: "test", Record: &off},
	})
	rows, err := st.Pool().Query(ctx, `SELECT message_id, device_status FROM stuck_messages('1 hour') ORDER BY message_id`)
	require.NoError(t, err)
	type r struct {
		ID     string
		Device *string
	}
	var got []r
	for rows.Next() {
		var x r
		require.NoError(t, rows.Scan(&x.ID, &x.Device))
		got = append(got, x)
	}
	require.NoError(t, rows.Err())
	offline := "OFFLINE"
	require.Equal(t, []r{{"quiet", &offline}}, got)
}
