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

// callRow is a synchronous call's record with its key.
type callRow struct {
	c   *notification.Call
	key []byte
	idx int // the item's index in the batch
}

// callColumns are device_calls' columns (migration 016). The merge is the
// commands' rule with the calls' ranks: the record before the call (PENDING
// 0) never replaces its outcome (1); between two outcomes the later event
// wins, then the greater key, so the row does not depend on the order the
// records are written in. What was sent keeps any known value; the outcome
// (response, HTTP status, error) belongs to the winner, with its status.
var callColumns = []column[callRow]{
	textCol("call_id", identity, func(r *callRow) string { return r.c.CallID }),
	textCol("call_kind", fact, func(r *callRow) string { return r.c.CallKind }),
	textCol("device_id", fact, func(r *callRow) string { return r.c.DeviceID }),
	// Unless given, the product is the device's, as its presence says: so
	// that a call counts in its product's outcomes like a command does.
	withExpr(textCol("product_id", fact, func(r *callRow) string { return r.c.ProductID }),
		`coalesce(u.product_id, (SELECT p.product_id FROM device_presence p WHERE p.device_id = u.device_id))`),
	textCol("service_id", fact, func(r *callRow) string { return r.c.ServiceID }),
	textCol("command_name", fact, func(r *callRow) string { return r.c.CommandName }),
	jsonCol("request", fact, func(r *callRow) []byte { return r.c.Request }),
	textCol("status", winner, func(r *callRow) string { return string(r.c.Status) }),
	valueCol("status_rank", "int2", order, func(r *callRow) int16 { return r.c.Rank() }),
	valueCol("last_event_time", "timestamptz", order, func(r *callRow) time.Time { return r.c.EventTime }),
	valueCol("last_event_key", "bytea", order, func(r *callRow) []byte { return r.key }),
	textCol("command_id", fact, func(r *callRow) string { return r.c.CommandID }),
	jsonCol("response", winner, func(r *callRow) []byte { return r.c.Response }),
	valueCol("http_status", "int4", winner, func(r *callRow) pgtype.Int4 {
		return pgtype.Int4{Int32: int32(r.c.HTTPStatus), Valid: r.c.HTTPStatus != 0}
	}),
	textCol("error_code", winner, func(r *callRow) string { return r.c.ErrorCode }),
	textCol("error_msg", winner, func(r *callRow) string { return r.c.ErrorMsg }),
	timeCol("sent_time", fact, func(r *callRow) time.Time { return r.c.SentTime }),
	timeCol("finished_time", fact, func(r *callRow) time.Time { return r.c.FinishedTime }),
}

// KindCallFinished is the outcome_events kind of calls that reached their
// outcome (migration 013): product_id, status, and the calls' ids in
// command_ids.
const KindCallFinished = "call.finished"

// upsertCalls is the merge, recording in outcome_events, in the same
// statement, the calls it made final for the first time: rows it inserted
// or changed whose status is final and was not before. What the rows were
// before is read from the statement's snapshot (o): exact as long as no two
// writers record outcomes of one call at once, which they do not, since the
// one `cmdtrack send` that makes a call records it, before and after. A
// redelivered record changes nothing and is not returned, so each call is
// counted once. It returns the ids of the rows it inserted or changed.
var upsertCalls = "WITH o AS (SELECT call_id, status FROM device_calls WHERE call_id = ANY($1::text[])),\n" +
	"m AS (\n" + mergeUpsert("device_calls", callColumns) + "\nRETURNING call_id, status, product_id),\n" +
	`e AS (INSERT INTO outcome_events (kind, product_id, status, from_status, command_ids)
	SELECT '` + KindCallFinished + `', coalesce(m.product_id, ''), m.status, '', array_agg(m.call_id ORDER BY m.call_id)
	FROM m LEFT JOIN o ON o.call_id = m.call_id
	WHERE m.status <> '` + string(notification.CallPending) + `' AND coalesce(o.status, '` + string(notification.CallPending) + `') = '` +
	string(notification.CallPending) + `'
	GROUP BY coalesce(m.product_id, ''), m.status)
SELECT call_id FROM m`

// callWriter stores a batch's call records: the merge into device_calls, in
// rounds (one upsert may not touch a row twice), taking its rows in call_id
// order. Calls keep no history: their two records are the row.
type callWriter struct {
	rows []callRow
}

func (w *callWriter) add(it *ingest.Item, idx int) {
	c := it.Record.(*notification.Call)
	w.rows = append(w.rows, callRow{c: c, key: c.Key(), idx: idx})
}

// queue queues the merge. It marks in changed the records that created or
// changed their row; which call changed is told to nobody else.
func (w *callWriter) queue(b *pgx.Batch, changed []bool, _ bool) *tracker {
	rows := w.rows
	slices.SortFunc(rows, func(a, b callRow) int {
		return cmp.Or(strings.Compare(a.c.CallID, b.c.CallID), bytes.Compare(a.key, b.key))
	})
	for _, round := range rounds(rows, func(a, b *callRow) bool { return a.c.CallID == b.c.CallID }) {
		b.Queue(upsertCalls, args(callColumns, round)...).Query(func(res pgx.Rows) error {
			defer res.Close()
			for res.Next() {
				var id string
				if err := res.Scan(&id); err != nil {
					return err
				}
				if j, ok := slices.BinarySearchFunc(round, id, func(r callRow, id string) int {
					return strings.Compare(r.c.CallID, id)
				}); ok && changed != nil {
					changed[round[j].idx] = true
				}
			}
			return res.Err()
		})
	}
	return nil
}
