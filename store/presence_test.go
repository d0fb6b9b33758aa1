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

// presenceRow is a device_presence row as the tests compare it.
type presenceRow struct {
	Status                          string
	StatusSince, LastEventTime      time.Time
	LastEventKey                    []byte
	LastRequestID                   *string
	LastOnlineTime, LastOfflineTime *time.Time
	ProductID, AppID, GatewayID     *string
	NodeID, Tags                    *string
}

func readPresence(t *testing.T, st *store.Store, device string) presenceRow {
	t.Helper()
	var r presenceRow
	require.NoError(t, st.Pool().QueryRow(context.Background(), `
		SELECT status, status_since, last_event_time, last_event_key, last_request_id,
		       last_online_time, last_offline_time, product_id, app_id, gateway_id, node_id, tags::text
		FROM device_presence WHERE device_id = $1`, device).Scan(
		&r.Status, &r.StatusSince, &r.LastEventTime, &r.LastEventKey, &r.LastRequestID,
		&r.LastOnlineTime, &r.LastOfflineTime, &r.ProductID, &r.AppID, &r.GatewayID, &r.NodeID, &r.Tags))
	r.StatusSince, r.LastEventTime = r.StatusSince.UTC(), r.LastEventTime.UTC()
	for _, p := range []**time.Time{&r.LastOnlineTime, &r.LastOfflineTime} {
		if *p != nil {
			u := (*p).UTC()
			*p = &u
		}
	}
	return r
}

// changes makes a messy set of status changes for one device: online and
// offline in turn, two changes at the same time (the key decides), one
// without status_update_time, headers some changes omit or contradict.
func changes(rng *rand.Rand, device string) []notification.Presence {
	base := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(rng.IntN(1e6)) * time.Second)
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }
	maybe := func(s string) string {
		if rng.IntN(3) == 0 {
			return ""
		}
		return s
	}
	mk := func(st notification.PresenceStatus, sec int) notification.Presence {
		p := notification.Presence{
			DeviceID: device, Status: st, Since: at(sec), EventTime: at(sec + rng.IntN(2)),
			RequestID: fmt.Sprintf("req-%d", rng.IntN(3)), ProductID: maybe("prod-1"), AppID: maybe("app-1"),
			GatewayID: maybe(fmt.Sprintf("gw-%d", rng.IntN(2))), NodeID: maybe("node-" + device),
		}
		if rng.IntN(2) == 0 {
			p.LastOnlineTime = at(sec - 1 - rng.IntN(5))
		}
		if rng.IntN(3) == 0 {
			p.Tags = json.RawMessage(fmt.Sprintf(`[{"tag_key":"k","tag_value":"v%d"}]`, rng.IntN(2)))
		}
		p.Payload, _ = json.Marshal(map[string]any{"device_id": device, "status": st, "sec": sec})
		return p
	}
	return []notification.Presence{
		mk(notification.Inactive, 0),
		mk(notification.Online, 10),
		mk(notification.Offline, 20),
		mk(notification.Online, 30),
		mk(notification.Abnormal, 40),
		mk(notification.Offline, 40), // same time as ABNORMAL: the key decides
		mk(notification.Online, 25),  // a late straggler
	}
}

// expectedPresence is the row by the rule as the README states it,
// independently of the SQL.
func expectedPresence(ps []notification.Presence) presenceRow {
	win := slices.MaxFunc(ps, func(a, b notification.Presence) int {
		return cmp.Or(a.Since.Compare(b.Since), bytes.Compare(a.Key(), b.Key()))
	})
	least := func(get func(p notification.Presence) string) *string {
		var out *string
		for _, p := range ps {
			if v := get(p); v != "" && (out == nil || v < *out) {
				out = &v
			}
		}
		return out
	}
	latestOf := func(get func(p notification.Presence) time.Time) *time.Time {
		var out *time.Time
		for _, p := range ps {
			if v := get(p); !v.IsZero() && (out == nil || v.After(*out)) {
				out = &v
			}
		}
		return out
	}
	r := presenceRow{
		Status: string(win.Status), StatusSince: win.Since, LastEventTime: win.EventTime, LastEventKey: win.Key(),
		LastOnlineTime: latestOf(func(p notification.Presence) time.Time {
			if p.Status == notification.Online && p.Since.After(p.LastOnlineTime) {
				return p.Since
			}
			return p.LastOnlineTime
		}),
		LastOfflineTime: latestOf(func(p notification.Presence) time.Time {
			if p.Status == notification.Offline {
				return p.Since
			}
			return time.Time{}
		}),
		ProductID: least(func(p notification.Presence) string { return p.ProductID }),
		AppID:     least(func(p notification.Presence) string { return p.AppID }),
		GatewayID: least(func(p notification.Presence) string { return p.GatewayID }),
		NodeID:    least(func(p notification.Presence) string { return p.NodeID }),
	}
	if win.RequestID != "" {
		r.LastRequestID = &win.RequestID
	}
	return r
}

// TestPresenceMergeOrderIndependent feeds random permutations of a device's
// status changes, with duplicates, split into random batches mixed with
// command notifications, and requires the stored row to be the rule's
// answer every time.
func TestPresenceMergeOrderIndependent(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	const devices, perms = 10, 12
	for d := range devices {
		device := fmt.Sprintf("dev-%d", d)
		template := changes(rng, device)
		want := expectedPresence(template)
		for p := range perms {
			_, err := st.Pool().Exec(ctx, `DELETE FROM device_presence WHERE device_id = $1`, device)
			require.NoError(t, err)
			var items []ingest.Item
			for _, i := range rng.Perm(len(template)) {
				c := template[i]
				items = append(items, ingest.Item{Source: "test", Record: &c})
				if rng.IntN(3) == 0 { // a duplicate
					items = append(items, ingest.Item{Source: "test", Record: &c})
				}
				if rng.IntN(3) == 0 { // a command notification in the same batch
					n := notification.Notification{CommandID: fmt.Sprintf("c-%d-%d-%d", d, p, i), Status: notification.Sent,
						EventTime: c.Since, DeviceID: device, Payload: []byte(`{}`)}
					items = append(items, ingest.Item{Source: "test", Record: &n})
				}
			}
			for len(items) > 0 {
				k := 1 + rng.IntN(len(items))
				res := apply(t, st, items[:k])
				for _, r := range res {
					require.Equal(t, ingest.Applied, r.Outcome)
				}
				items = items[k:]
			}
			got := readPresence(t, st, device)
			// Tags are a fact like the others, compared by jsonb's order:
			// here only whether any change carried some.
			hasTags := slices.ContainsFunc(template, func(c notification.Presence) bool { return c.Tags != nil })
			require.Equal(t, hasTags, got.Tags != nil)
			want.Tags = got.Tags
			require.Equal(t, want, got, "device %s, permutation %d", device, p)
		}
	}
}

// A redelivered change changes nothing: not even updated_at.
func TestPresenceDuplicateChangesNothing(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	p := changes(rand.New(rand.NewPCG(5, 6)), "dev-dup")[1]
	apply(t, st, []ingest.Item{{Record: &p}})
	var before time.Time
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT updated_at FROM device_presence`).Scan(&before))
	apply(t, st, []ingest.Item{{Record: &p}, {Record: &p}})
	var after time.Time
	var rows int
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT updated_at, count(*) OVER () FROM device_presence`).Scan(&after, &rows))
	require.Equal(t, before, after)
	require.Equal(t, 1, rows)
}

// A value PostgreSQL refuses dead-letters that change alone, with its body.
func TestPresenceRejectedIsDeadLettered(t *testing.T) {
	t.Parallel()
	st := setup(t)
	good := changes(rand.New(rand.NewPCG(7, 8)), "dev-good")[1]
	bad := good
	bad.DeviceID = "dev-bad"
	bad.Tags = json.RawMessage(`[1,`) // invalid jsonb
	bad.Payload = []byte(`{"bad":true}`)
	res := apply(t, st, []ingest.Item{{Source: "test", Record: &good}, {Source: "test", Record: &bad}})
	require.Equal(t, ingest.Applied, res[0].Outcome)
	require.Equal(t, ingest.DeadLettered, res[1].Outcome)
	require.Equal(t, notification.ClassRejected, res[1].DeadLetter.Class)
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM device_presence`))
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM dead_letters WHERE body = '{"bad":true}'`))
}

// stuck_commands and command_durations show the device's status beside
// each command; a device never heard of shows NULL.
func TestViewsShowPresence(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	cmd := func(id, device string) ingest.Item {
		return ingest.Item{Source: "test", Record: &notification.Notification{CommandID: id, Status: notification.Delivered,
			EventTime: now.Add(-time.Hour), DeviceID: device, Payload: []byte(`{}`)}}
	}
	off := notification.Presence{DeviceID: "dev-off", Status: notification.Offline, Since: now.Add(-2 * time.Hour),
		EventTime: now.Add(-2 * time.Hour), Payload: []byte(`{}`)}
	on := notification.Presence{DeviceID: "dev-on", Status: notification.Online, Since: now.Add(-3 * time.Hour),
		EventTime: now.Add(-3 * time.Hour), Payload: []byte(`{}`)}
	apply(t, st, []ingest.Item{cmd("c-off", "dev-off"), cmd("c-on", "dev-on"), cmd("c-unknown", "dev-unknown"),
		{Record: &off}, {Record: &on}})

	for _, view := range []string{"stuck_commands", "command_durations"} {
		rows, err := st.Pool().Query(ctx, `SELECT command_id, device_status, device_status_since FROM `+view+` ORDER BY command_id`)
		require.NoError(t, err)
		type r struct {
			ID     string
			Status *string
			Since  *time.Time
		}
		var got []r
		for rows.Next() {
			var x r
			require.NoError(t, rows.Scan(&x.ID, &x.Status, &x.Since))
			got = append(got, x)
		}
		require.NoError(t, rows.Err())
		require.Len(t, got, 3, view)
		require.Equal(t, "c-off", got[0].ID)
		require.Equal(t, "OFFLINE", *got[0].Status, view)
		require.True(t, off.Since.Equal(*got[0].Since), view)
		require.Equal(t, "ONLINE", *got[1].Status, view)
		require.True(t, on.Since.Equal(*got[1].Since), view)
		require.Nil(t, got[2].Status, view)
		require.Nil(t, got[2].Since, view)
	}
	// The README's cookbook query: stuck commands whose device is online.
	require.Equal(t, 1, count(t, st, `SELECT count(*) FROM (SELECT command_id, device_id, status, stuck_for, device_status_since
		FROM stuck_commands WHERE device_status = 'ONLINE' AND last_event_time < now() - interval '10 minutes'
		ORDER BY last_event_time LIMIT 100) q`))
}

// A device status change left as a dead letter (by an older cmdtrack, which
// had no presence) is applied when replayed.
func TestPresenceReplayed(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	body := []byte(`{"resource":"device.status","event":"update","event_time":"20260301T000000Z",` +
		`"notify_data":{"header":{"device_id":"dev-replayed"}},"body":{"status":"OFFLINE"}}`)
	_, err := st.Pool().Exec(ctx, `INSERT INTO dead_letters (source, reason_class, reason, body, body_sha256)
		VALUES ('amqp:q', 'x', 'older', $1::bytea, sha256($1::bytea))`, body)
	require.NoError(t, err)
	now := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	_, res, err := st.ReplaceDeadLetter(ctx, 0, func(dl store.StoredDeadLetter) ingest.Item {
		return ingest.Reclassify(dl.Body, dl.Source, dl.ReceivedAt, now, ingest.Limits{MaxBodyBytes: 1 << 20})
	})
	require.NoError(t, err)
	require.Equal(t, ingest.Applied, res.Outcome)
	require.Equal(t, "OFFLINE", readPresence(t, st, "dev-replayed").Status)
	require.Zero(t, count(t, st, `SELECT count(*) FROM dead_letters`))
}
