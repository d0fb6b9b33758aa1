package store

import (
	"bytes"
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/notification"
)

// presenceRow is a device status change with its key.
type presenceRow struct {
	p   *notification.Presence
	key []byte
}

// presenceColumns are device_presence's columns. The merge is the command
// merge's, with (status_since, last_event_key) as the order: the latest
// change wins, and between changes of the same time the greater key, so the
// row is the same whatever the arrival order; duplicates change nothing.
var presenceColumns = []column[presenceRow]{
	textCol("device_id", identity, func(r *presenceRow) string { return r.p.DeviceID }),
	textCol("status", winner, func(r *presenceRow) string { return string(r.p.Status) }),
	valueCol("status_since", "timestamptz", order, func(r *presenceRow) time.Time { return r.p.Since }),
	valueCol("last_event_key", "bytea", order, func(r *presenceRow) []byte { return r.key }),
	valueCol("last_event_time", "timestamptz", winner, func(r *presenceRow) time.Time { return r.p.EventTime }),
	textCol("last_request_id", winner, func(r *presenceRow) string { return r.p.RequestID }),
	timeCol("last_online_time", latest, func(r *presenceRow) time.Time {
		if r.p.Status == notification.Online && r.p.Since.After(r.p.LastOnlineTime) {
			return r.p.Since
		}
		return r.p.LastOnlineTime
	}),
	valueCol("last_offline_time", "timestamptz", latest, func(r *presenceRow) pgtype.Timestamptz {
		return pgtype.Timestamptz{Time: r.p.Since, Valid: r.p.Status == notification.Offline}
	}),
	textCol("product_id", fact, func(r *presenceRow) string { return r.p.ProductID }),
	textCol("app_id", fact, func(r *presenceRow) string { return r.p.AppID }),
	textCol("gateway_id", fact, func(r *presenceRow) string { return r.p.GatewayID }),
	textCol("node_id", fact, func(r *presenceRow) string { return r.p.NodeID }),
	jsonCol("tags", fact, func(r *presenceRow) []byte { return r.p.Tags }),
}

var upsertPresence = mergeUpsert("device_presence", presenceColumns)

// presenceWriter stores a batch's device status changes: the merge into
// device_presence, in rounds (as commands are: one upsert may not touch a
// row twice), each taking its rows in device_id order.
type presenceWriter struct {
	rows []presenceRow
}

func (w *presenceWriter) add(it *ingest.Item, _ int) {
	p := it.Record.(*notification.Presence)
	w.rows = append(w.rows, presenceRow{p: p, key: p.Key()})
}

// queue queues the merge; presence changes are told to nobody, so it
// returns no tracker.
func (w *presenceWriter) queue(b *pgx.Batch, _ []bool, _ bool) *tracker {
	rows := w.rows
	slices.SortFunc(rows, func(a, b presenceRow) int {
		return cmp.Or(strings.Compare(a.p.DeviceID, b.p.DeviceID), bytes.Compare(a.key, b.key))
	})
	for _, round := range rounds(rows, func(a, b *presenceRow) bool { return a.p.DeviceID == b.p.DeviceID }) {
		b.Queue(upsertPresence, args(presenceColumns, round)...)
	}
	return nil
}
