package store_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

func setup(t *testing.T) *store.Store {
	t.Helper()
	st, _, _ := testenv.Schema(t)
	return st
}

// row is a device_commands row as the tests compare it. CommandID and
// LastEventKey are left out where commands are compared with each other.
type row struct {
	CommandID                                          string
	DeviceID, ProductID, AppID, GatewayID, NodeID      *string
	Tags, Result                                       *string
	Status                                             string
	StatusRank                                         int16
	CreatedTime, SentTime, DeliveredTime, ResponseTime *time.Time
	LastEventTime                                      time.Time
	LastRequestID                                      *string
	LastEventKey                                       []byte
}

func readRow(t *testing.T, st *store.Store, id string) row {
	t.Helper()
	var r row
	err := st.Pool().QueryRow(context.Background(), `
		SELECT command_id, device_id, product_id, app_id, gateway_id, node_id, tags::text, result::text,
		       status, status_rank, created_time, sent_time, delivered_time, response_time,
		       last_event_time, last_request_id, last_event_key
		FROM device_commands WHERE command_id = $1`, id).Scan(
		&r.CommandID, &r.DeviceID, &r.ProductID, &r.AppID, &r.GatewayID, &r.NodeID, &r.Tags, &r.Result,
		&r.Status, &r.StatusRank, &r.CreatedTime, &r.SentTime, &r.DeliveredTime, &r.ResponseTime,
		&r.LastEventTime, &r.LastRequestID, &r.LastEventKey)
	require.NoError(t, err)
	for _, p := range []**time.Time{&r.CreatedTime, &r.SentTime, &r.DeliveredTime, &r.ResponseTime} {
		if *p != nil {
			u := (*p).UTC()
			*p = &u
		}
	}
	r.LastEventTime = r.LastEventTime.UTC()
	return r
}

// apply stores items and returns what became of them.
func apply(t *testing.T, st *store.Store, items []ingest.Item) []ingest.Result {
	t.Helper()
	res, err := st.Apply(context.Background(), items)
	require.NoError(t, err)
	require.Len(t, res, len(items))
	return res
}

func count(t *testing.T, st *store.Store, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, st.Pool().QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

// lifecycle makes a plausible, messy set of notifications for one command:
// the usual PENDING -> SENT -> DELIVERED -> terminal path, plus a second
// terminal status, a tie on (status, time), headers and timestamps that
// some notifications omit or contradict.
func lifecycle(rng *rand.Rand, id string) []notification.Notification {
	base := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(rng.IntN(1e6)) * time.Second)
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }
	maybe := func(s string) string {
		if rng.IntN(4) == 0 {
			return ""
		}
		return s
	}
	mk := func(st notification.Status, sec int, result string) notification.Notification {
		n := notification.Notification{
			CommandID: id, Status: st, EventTime: at(sec), RequestID: fmt.Sprintf("req-%d", rng.IntN(3)),
			DeviceID: maybe("dev-" + id), ProductID: maybe("prod-1"), AppID: maybe("app-1"),
			GatewayID: maybe("gw-" + id), NodeID: maybe("node-" + id),
			CreatedTime: at(0),
		}
		if rng.IntN(3) == 0 {
			n.Tags = json.RawMessage(fmt.Sprintf(`[{"tag_key":"k","tag_value":"v%d"}]`, rng.IntN(2)))
		}
		if st != notification.Pending {
			n.SentTime = at(1 + rng.IntN(2)) // contradicting sent times: earliest must win
		}
		if r, _ := st.Rank(); r >= 2 {
			n.DeliveredTime = at(3)
		}
		if r, _ := st.Rank(); r == 3 {
			n.ResponseTime = at(sec)
		}
		if result != "" {
			n.Result = json.RawMessage(result)
		}
		n.Payload, _ = json.Marshal(map[string]any{"command_id": id, "status": st, "sec": sec, "result": n.Result})
		return n
	}
	notes := []notification.Notification{
		mk(notification.Pending, 0, ""),
		mk(notification.Sent, 1, ""),
		mk(notification.Delivered, 3, ""),
		mk(notification.Successful, 5, `{"code":0}`),
		mk(notification.Failed, 5, `{"code":1}`), // same rank, same time: the key decides
		mk(notification.Timeout, 4, ""),
	}
	// Late straggler with an older event time than the terminal ones.
	notes = append(notes, mk(notification.Sent, 2, ""))
	return notes
}

// expected computes the row from the merge rule as the README states it,
// independently of the SQL.
func expected(notes []notification.Notification) row {
	win := slices.MaxFunc(notes, func(a, b notification.Notification) int {
		return cmp.Or(cmp.Compare(a.Rank(), b.Rank()), a.EventTime.Compare(b.EventTime), bytes.Compare(a.Key(), b.Key()))
	})
	least := func(get func(n notification.Notification) string) *string {
		var out *string
		for _, n := range notes {
			if v := get(n); v != "" && (out == nil || v < *out) {
				out = &v
			}
		}
		return out
	}
	earliest := func(get func(n notification.Notification) time.Time) *time.Time {
		var out *time.Time
		for _, n := range notes {
			if v := get(n); !v.IsZero() && (out == nil || v.Before(*out)) {
				out = &v
			}
		}
		return out
	}
	r := row{
		CommandID:     win.CommandID,
		DeviceID:      least(func(n notification.Notification) string { return n.DeviceID }),
		ProductID:     least(func(n notification.Notification) string { return n.ProductID }),
		AppID:         least(func(n notification.Notification) string { return n.AppID }),
		GatewayID:     least(func(n notification.Notification) string { return n.GatewayID }),
		NodeID:        least(func(n notification.Notification) string { return n.NodeID }),
		Status:        string(win.Status),
		StatusRank:    win.Rank(),
		CreatedTime:   earliest(func(n notification.Notification) time.Time { return n.CreatedTime }),
		SentTime:      earliest(func(n notification.Notification) time.Time { return n.SentTime }),
		DeliveredTime: earliest(func(n notification.Notification) time.Time { return n.DeliveredTime }),
		ResponseTime:  earliest(func(n notification.Notification) time.Time { return n.ResponseTime }),
		LastEventTime: win.EventTime,
		LastEventKey:  win.Key(),
	}
	if win.RequestID != "" {
		r.LastRequestID = &win.RequestID
	}
	return r
}

// TestMergeOrderIndependent feeds random permutations of a command's
// notifications, with duplicates, split into random batches, and requires
// the stored row to be the same every time and equal to the rule's answer.
func TestMergeOrderIndependent(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))

	const commands, perms = 20, 12
	for c := range commands {
		template := lifecycle(rng, "")
		var first *row
		id := fmt.Sprintf("cmd-%d", c)
		for p := range perms {
			// Same command each time, from scratch: the key (and so the
			// tie-break) depends on the command id.
			_, err := st.Pool().Exec(ctx, `DELETE FROM device_commands WHERE command_id = $1`, id)
			require.NoError(t, err)
			_, err = st.Pool().Exec(ctx, `DELETE FROM device_command_events WHERE command_id = $1`, id)
			require.NoError(t, err)
			notes := slices.Clone(template)
			for i := range notes {
				notes[i].CommandID = id
				notes[i].DeviceID = deviceFor(notes[i].DeviceID, id)
			}
			// Duplicates, then a shuffle, then random batch boundaries.
			for range rng.IntN(4) {
				notes = append(notes, notes[rng.IntN(len(notes))])
			}
			rng.Shuffle(len(notes), func(i, j int) { notes[i], notes[j] = notes[j], notes[i] })
			for len(notes) > 0 {
				k := 1 + rng.IntN(len(notes))
				items := make([]ingest.Item, k)
				for i := range k {
					items[i] = ingest.Item{Source: "test", Record: &notes[i]}
				}
				apply(t, st, items)
				notes = notes[k:]
			}

			got := readRow(t, st, id)
			want := expected(withID(template, id))
			require.Equal(t, want.Status, got.Status, "command %s", id)
			require.Equal(t, want.LastEventKey, got.LastEventKey, "command %s", id)
			require.Equal(t, want.LastEventTime, got.LastEventTime, "command %s", id)
			require.Equal(t, want.CreatedTime, got.CreatedTime)
			require.Equal(t, want.SentTime, got.SentTime)
			require.Equal(t, want.DeliveredTime, got.DeliveredTime)
			require.Equal(t, want.ResponseTime, got.ResponseTime)
			require.Equal(t, want.ProductID, got.ProductID)
			require.Equal(t, len(template), count(t, st, `SELECT count(*) FROM device_command_events WHERE command_id = $1`, id),
				"history must hold each distinct notification once")

			if first == nil {
				first = &got
				continue
			}
			require.Equal(t, *first, got, "permutation %d of command %d differs", p, c)
		}
	}
}

// deviceFor is the device id a template's device becomes for command id
// (none stays none).
func deviceFor(v, id string) string {
	if v == "" {
		return ""
	}
	return "dev-" + id
}

func withID(notes []notification.Notification, id string) []notification.Notification {
	out := slices.Clone(notes)
	for i := range out {
		out[i].CommandID = id
		out[i].DeviceID = deviceFor(out[i].DeviceID, id)
	}
	return out
}

// TestStatusNeverMovesBack applies a terminal status, then older ones.
func TestStatusNeverMovesBack(t *testing.T) {
	t.Parallel()
	st := setup(t)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := func(s notification.Status, sec int) ingest.Item {
		return ingest.Item{Source: "test", Record: &notification.Notification{
			CommandID: "c1", Status: s, EventTime: at.Add(time.Duration(sec) * time.Second), Payload: []byte(`{}`)}}
	}
	apply(t, st, []ingest.Item{n(notification.Successful, 10)})
	// A later event time does not lift a lower rank over a higher one.
	apply(t, st, []ingest.Item{n(notification.Sent, 20), n(notification.Pending, 30)})
	r := readRow(t, st, "c1")
	require.Equal(t, "SUCCESSFUL", r.Status)
	require.Equal(t, at.Add(10*time.Second), r.LastEventTime)
	require.Equal(t, 3, count(t, st, `SELECT count(*) FROM device_command_events`))
}

// TestDataErrorPoisonsOnlyItsMessage sends a batch where PostgreSQL rejects
// one payload and requires the rest to be stored and the bad one
// dead-lettered with PostgreSQL's reason.
func TestDataErrorPoisonsOnlyItsMessage(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var items []ingest.Item
	for i := range 9 {
		result := json.RawMessage(`{"ok":true}`)
		if i == 4 {
			result = json.RawMessage(`{"bad":"\ud800"}`) // lone surrogate: jsonb refuses it
		}
		items = append(items, ingest.Item{Source: "test", Record: &notification.Notification{
			CommandID: fmt.Sprintf("c%d", i), Status: notification.Sent, EventTime: at, Result: result, Payload: []byte(`{}`)}})
	}
	res := apply(t, st, items)
	require.Equal(t, 8, count(t, st, `SELECT count(*) FROM device_commands`))
	for i, r := range res {
		if i == 4 {
			require.Equal(t, ingest.DeadLettered, r.Outcome)
			require.Equal(t, notification.ClassRejected, r.DeadLetter.Class)
			continue
		}
		require.Equal(t, ingest.Applied, r.Outcome, "item %d", i)
	}
	require.NotNil(t, items[4].Notification(), "Apply leaves its input alone")
	var reason string
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT reason FROM dead_letters WHERE reason_class = 'rejected_by_database'`).Scan(&reason))
	require.Contains(t, reason, "invalid input syntax for type json")

	// A refused result on a notification that loses the merge to another of
	// its command in the same batch is refused all the same (the batch's
	// notifications of one command are folded into one row where they can
	// be): the winner is stored, the loser is a dead letter.
	loser := &notification.Notification{CommandID: "c9", Status: notification.Sent, EventTime: at,
		Result: json.RawMessage(`{"v":1e200000}`), Payload: []byte(`{"loser":1}`)} // numeric overflow
	winner := &notification.Notification{CommandID: "c9", Status: notification.Delivered, EventTime: at.Add(time.Second),
		Payload: []byte(`{"winner":1}`)}
	res = apply(t, st, []ingest.Item{{Source: "test", Record: winner}, {Source: "test", Record: loser}})
	require.Equal(t, ingest.Applied, res[0].Outcome)
	require.Equal(t, ingest.DeadLettered, res[1].Outcome)
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM device_commands WHERE command_id = 'c9' AND status = 'DELIVERED'`))
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM dead_letters WHERE reason LIKE '%overflows numeric%'`))
}

// TestDeadLettersAreIdempotent stores the same poison body twice.
func TestDeadLettersAreIdempotent(t *testing.T) {
	t.Parallel()
	st := setup(t)
	dl := func() ingest.Item {
		return ingest.Item{Source: "test", DeadLetter: &ingest.DeadLetter{
			Class: notification.ClassInvalidJSON, Reason: "bad", Body: []byte("{nope"),
			Properties: map[string]string{"message_id": "m\x00\xff1"}}}
	}
	apply(t, st, []ingest.Item{dl(), dl()})
	apply(t, st, []ingest.Item{dl()})
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM dead_letters`))
}

// TestReceiptTimedRedelivery: a legacy callback carries no event time, so
// cmdtrack orders it by receipt. Its redelivery must change nothing, even
// though it is received later: TIMEOUT, then SUCCESS, then TIMEOUT again
// must leave SUCCESSFUL.
func TestReceiptTimedRedelivery(t *testing.T) {
	t.Parallel()
	st := setup(t)
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	legacy := func(code string, at time.Time) ingest.Item {
		body := []byte(`{"deviceId":"d","commandId":"legacy-1","result":{"resultCode":"` + code + `"}}`)
		n, err := notification.DecodeAt(body, at)
		require.NoError(t, err)
		return ingest.Item{Source: "http", Record: &n}
	}
	apply(t, st, []ingest.Item{legacy("TIMEOUT", t0)})
	apply(t, st, []ingest.Item{legacy("SUCCESS", t0.Add(time.Minute))})
	before := readRow(t, st, "legacy-1")
	require.Equal(t, "SUCCESSFUL", before.Status)
	apply(t, st, []ingest.Item{legacy("TIMEOUT", t0.Add(time.Hour))})
	apply(t, st, []ingest.Item{legacy("SUCCESS", t0.Add(2*time.Hour))})
	require.Equal(t, before, readRow(t, st, "legacy-1"))
	require.Equal(t, 2, count(t, st, `SELECT count(*) FROM device_command_events`))
}

// TestEmptyDeadLetterBody stores a dead letter with no body at all.
func TestEmptyDeadLetterBody(t *testing.T) {
	t.Parallel()
	st := setup(t)
	apply(t, st, []ingest.Item{{Source: "test",
		DeadLetter: &ingest.DeadLetter{Class: notification.ClassEmpty, Reason: "empty body"}}})
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM dead_letters WHERE body = ''`))
}

// Of a message larger than the limit only a prefix is stored, with its
// whole length; a redelivery lands once.
func TestTruncatedDeadLetter(t *testing.T) {
	t.Parallel()
	st := setup(t)
	body := []byte(`{"pad":"` + strings.Repeat("y", 300<<10) + `"}`)
	item := func() ingest.Item {
		return ingest.Classify(body, "amqp:q", time.Now(), ingest.Limits{MaxBodyBytes: 100 << 10})
	}
	apply(t, st, []ingest.Item{item()})
	apply(t, st, []ingest.Item{item()})
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM dead_letters`))
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM dead_letters
		WHERE length(body) = $1 AND body_length = $2 AND body_sha256 = sha256($3::bytea)`,
		ingest.DeadLetterPrefix, len(body), body))
}

// A value the notification does not carry is stored as NULL, never as the
// JSON value null or an empty string: the merge keeps "any known value", and
// the cookbook's IS NULL tests depend on it.
func TestMissingValuesAreNULL(t *testing.T) {
	t.Parallel()
	st := setup(t)
	apply(t, st, []ingest.Item{{Source: "test", Record: &notification.Notification{
		CommandID: "c1", Status: notification.Sent, EventTime: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Payload: []byte(`{}`)}}})
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM device_commands WHERE command_id = 'c1'
		AND tags IS NULL AND result IS NULL AND paras IS NULL AND device_id IS NULL AND created_time IS NULL
		AND expire_time IS NULL AND previous_status IS NULL AND previous_known IS NULL`))
}

// A batch that holds a command's whole lifecycle writes its row once (the
// row it replaced is none: previous_status stays NULL) and stores the same
// row as the notifications one batch each; two that disagree on a fact are
// still merged by the statement, in two writes.
func TestBatchWritesACommandOnce(t *testing.T) {
	t.Parallel()
	st := setup(t)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lifecycle := func(id string) []ingest.Item {
		var items []ingest.Item
		for i, s := range []notification.Status{notification.Pending, notification.Sent, notification.Delivered, notification.Successful} {
			n := &notification.Notification{CommandID: id, Status: s, EventTime: at.Add(time.Duration(i) * time.Second),
				CreatedTime: at, RequestID: fmt.Sprint("req-", i), Payload: []byte(`{}`)}
			// Each knows a fact the others do not: no one of them alone
			// gives the row.
			*[]*string{&n.ProductID, &n.DeviceID, &n.AppID, &n.NodeID}[i] = "x"
			if i >= 1 {
				n.SentTime = at.Add(time.Second)
			}
			if i >= 2 {
				n.DeliveredTime = at.Add(2 * time.Second)
			}
			if i == 3 {
				n.ResponseTime, n.Result = n.EventTime, json.RawMessage(`{"code":0}`)
			}
			items = append(items, ingest.Item{Source: "test", Record: n})
		}
		return items
	}
	whole := lifecycle("c1")
	slices.Reverse(whole)
	apply(t, st, whole)
	for _, it := range lifecycle("c2") {
		apply(t, st, []ingest.Item{it})
	}
	one, each := readRow(t, st, "c1"), readRow(t, st, "c2")
	one.CommandID, one.LastEventKey, each.CommandID, each.LastEventKey = "", nil, "", nil
	require.Equal(t, each, one)
	require.Equal(t, "SUCCESSFUL", one.Status)
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM device_commands WHERE command_id = 'c1' AND previous_status IS NULL`),
		"the batch wrote c1 more than once")
	require.Equal(t, 4, count(t, st, `SELECT count(*) FROM device_command_events WHERE command_id = 'c1'`))

	split := lifecycle("c3")[1:3]
	split[1].Notification().SentTime = at.Add(1500 * time.Millisecond) // the earlier one stays
	apply(t, st, split)
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM device_commands WHERE command_id = 'c3'
		AND previous_status IS NOT NULL AND status = 'DELIVERED' AND sent_time = $1`, at.Add(time.Second)))
}
