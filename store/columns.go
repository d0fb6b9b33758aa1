package store

import (
	"fmt"
	"strings"
	"time"

	"unsafe"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cmdtrack/cmdtrack/notification"
)

// The statements that write a batch are built from the column tables below:
// each column says its name, its PostgreSQL type and how its values are
// taken from the rows being written, and, for device_commands, how the merge
// rule treats it. Adding a stored column is one line here plus a migration.
//
// Every statement passes each column as one array (unnest), so a batch is
// one parameter per column whatever its size, far from PostgreSQL's 65,535.

// merge is how the merge rule (README, "The merge rule") treats a column of
// device_commands; the other tables have identity and plain columns only.
type merge uint8

const (
	// identity is the row's identity (the conflict target).
	identity merge = iota
	// fact keeps any known value: LEAST ignores NULLs, so a notification
	// that omits the value never erases it, and if two notifications ever
	// disagree the smallest (earliest) value stays. jsonb calls some
	// different values equal (1 and 1.0), so equal jsonb values are ordered
	// by their text (see least).
	fact
	// latest is a fact that keeps the greatest value (GREATEST ignores
	// NULLs): the last time something was seen.
	latest
	// winner takes the value of the winning notification.
	winner
	// order is a winner's value that also decides the winner: the winner is
	// the notification with the greatest tuple of order columns, compared in
	// the table's order.
	order
	// tiebreak is a winner's jsonb value whose text (bytes) is the last
	// element of the winner's order, after the order columns. Two
	// notifications with one key differ at most in how their JSON is
	// written, and jsonb may read two such spellings differently (the key's
	// canonical form sorts members by their keys as written; jsonb unescapes
	// keys and keeps the last of duplicates): without it the first to
	// arrive would stay.
	tiebreak
	// input is fed to the statement but not stored.
	input
	// plain is a column of a table that is only ever inserted, not merged.
	plain
)

// column is one column of a table the store writes, for rows of type R.
type column[R any] struct {
	name  string
	typ   string // the PostgreSQL type of one value
	merge merge
	// arg is the statement's argument for this column: one value per row.
	arg func(rows []R) any
	// expr, when set, is the SELECT expression that computes the stored
	// value from the unnested input u (default u.<name>).
	expr string
}

// noteRow is a notification with what the statements need precomputed.
type noteRow struct {
	n      *notification.Notification
	source string
	key    []byte
	idx    int // the item's index in the batch
}

var noCreation notification.Creation

// creation is what only the command's creation knows, or nothing.
func (r *noteRow) creation() *notification.Creation {
	if r.n.Creation != nil {
		return r.n.Creation
	}
	return &noCreation
}

// commandColumns are device_commands' columns. The order columns, in this
// order, are (status_rank, last_event_time, last_event_key), then result's
// text.
var commandColumns = []column[noteRow]{
	textCol("command_id", identity, func(r *noteRow) string { return r.n.CommandID }),
	textCol("device_id", fact, func(r *noteRow) string { return r.n.DeviceID }),
	textCol("product_id", fact, func(r *noteRow) string { return r.n.ProductID }),
	textCol("app_id", fact, func(r *noteRow) string { return r.n.AppID }),
	textCol("gateway_id", fact, func(r *noteRow) string { return r.n.GatewayID }),
	textCol("node_id", fact, func(r *noteRow) string { return r.n.NodeID }),
	jsonCol("tags", fact, func(r *noteRow) []byte { return r.n.Tags }),
	timeCol("created_time", fact, func(r *noteRow) time.Time { return r.n.CreatedTime }),
	timeCol("sent_time", fact, func(r *noteRow) time.Time { return r.n.SentTime }),
	timeCol("delivered_time", fact, func(r *noteRow) time.Time { return r.n.DeliveredTime }),
	timeCol("response_time", fact, func(r *noteRow) time.Time { return r.n.ResponseTime }),
	textCol("status", winner, func(r *noteRow) string { return string(r.n.Status) }),
	valueCol("status_rank", "int2", order, func(r *noteRow) int16 { return r.n.Rank() }),
	jsonCol("result", tiebreak, func(r *noteRow) []byte { return r.n.Result }),
	withExpr(valueCol("last_event_time", "timestamptz", order, func(r *noteRow) time.Time { return r.n.EventTime }),
		firstReceipt("last_event_key", "last_event_time")),
	valueCol("last_event_key", "bytea", order, func(r *noteRow) []byte { return r.key }),
	textCol("last_request_id", winner, func(r *noteRow) string { return r.n.RequestID }),
	textCol("service_id", fact, func(r *noteRow) string { return r.creation().ServiceID }),
	textCol("command_name", fact, func(r *noteRow) string { return r.creation().CommandName }),
	jsonCol("paras", fact, func(r *noteRow) []byte { return r.creation().Paras }),
	textCol("send_strategy", fact, func(r *noteRow) string { return r.creation().SendStrategy }),
	valueCol("expire_time", "int4", fact, func(r *noteRow) pgtype.Int4 {
		if e := r.creation().ExpireTime; e != nil {
			return pgtype.Int4{Int32: int32(*e), Valid: true}
		}
		return pgtype.Int4{}
	}),
	valueCol("from_receipt", "bool", input, func(r *noteRow) bool { return r.n.TimeFromReceipt }),
}

// eventColumns are device_command_events' columns: the history, one row per
// distinct notification. The event time is part of the identity because the
// table is partitioned by it (migration 005).
var eventColumns = []column[noteRow]{
	textCol("command_id", identity, func(r *noteRow) string { return r.n.CommandID }),
	valueCol("event_key", "bytea", identity, func(r *noteRow) []byte { return r.key }),
	textCol("status", plain, func(r *noteRow) string { return string(r.n.Status) }),
	withExpr(valueCol("event_time", "timestamptz", identity, func(r *noteRow) time.Time { return r.n.EventTime }),
		firstReceipt("event_key", "event_time")),
	textCol("request_id", plain, func(r *noteRow) string { return r.n.RequestID }),
	textCol("source", plain, func(r *noteRow) string { return r.source }),
	valueCol("payload", "text", plain, func(r *noteRow) string { return unsafeString(r.n.Payload) }),
	valueCol("from_receipt", "bool", input, func(r *noteRow) bool { return r.n.TimeFromReceipt }),
}

// receiptColumns are device_command_receipts' columns: the first receipt of
// each notification timed by its receipt (legacy callbacks carry no event
// time), by its key. The statement that fills them runs first in a batch, so
// that a concurrent writer of the same notification waits for it, and the
// later statements (with a fresh snapshot) read one first time whoever wins.
var receiptColumns = []column[noteRow]{
	textCol("command_id", identity, func(r *noteRow) string { return r.n.CommandID }),
	valueCol("event_key", "bytea", identity, func(r *noteRow) []byte { return r.key }),
	valueCol("event_time", "timestamptz", plain, func(r *noteRow) time.Time { return r.n.EventTime }),
}

// firstReceipt is the time of a notification: its own, or for one timed by
// its receipt the time it was first received, so that a redelivery neither
// wins the merge again nor lands in another partition of the history.
func firstReceipt(key, at string) string {
	return `CASE WHEN u.from_receipt THEN coalesce((SELECT r.event_time FROM device_command_receipts r
		WHERE r.command_id = u.command_id AND r.event_key = u.` + key + `), u.` + at + `)
	ELSE u.` + at + ` END`
}

// deadRow is a dead letter with what the statement needs precomputed.
type deadRow struct {
	source     string
	class      string
	reason     string
	body       []byte
	length     int64
	sum        []byte
	properties []byte
}

var deadLetterColumns = []column[deadRow]{
	textCol("source", plain, func(r *deadRow) string { return r.source }),
	textCol("reason_class", plain, func(r *deadRow) string { return r.class }),
	textCol("reason", plain, func(r *deadRow) string { return r.reason }),
	valueCol("body", "bytea", plain, func(r *deadRow) []byte { return r.body }),
	valueCol("body_length", "int8", plain, func(r *deadRow) int64 { return r.length }),
	valueCol("body_sha256", "bytea", identity, func(r *deadRow) []byte { return r.sum }),
	jsonCol("properties", plain, func(r *deadRow) []byte { return r.properties }),
}

func textCol[R any](name string, m merge, get func(*R) string) column[R] {
	return valueCol(name, "text", m, func(r *R) pgtype.Text { s := get(r); return pgtype.Text{String: s, Valid: s != ""} })
}

func timeCol[R any](name string, m merge, get func(*R) time.Time) column[R] {
	return valueCol(name, "timestamptz", m, func(r *R) pgtype.Timestamptz {
		t := get(r)
		return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()}
	})
}

// jsonCol is a jsonb column; nil is NULL. The value is a plain []byte, which
// pgx sends as the JSON text it is: through a pointer (pointerArray), a
// json.RawMessage is a json.Marshaler, and a nil one would be stored as the
// JSON value null instead of NULL.
func jsonCol[R any](name string, m merge, get func(*R) []byte) column[R] {
	return valueCol(name, "jsonb", m, get)
}

func valueCol[R, V any](name, typ string, m merge, get func(*R) V) column[R] {
	return column[R]{name: name, typ: typ, merge: m, arg: func(rows []R) any {
		out := make(pointerArray[V], len(rows))
		for i := range rows {
			out[i] = get(&rows[i])
		}
		return out
	}}
}

// pointerArray is a statement argument pgx encodes as a one-dimensional
// array without reflection or an allocation per element: a plain slice of a
// type pgx has no fast path for (pgtype.Text, []byte, ...) is walked with
// reflect and each element boxed, which cost the worker about 30
// allocations per notification (BenchmarkEncodeArgs). A pointer to an
// element boxes for free, and pgx encodes through it.
type pointerArray[V any] []V

func (a pointerArray[V]) Dimensions() []pgtype.ArrayDimension {
	return []pgtype.ArrayDimension{{Length: int32(len(a)), LowerBound: 1}}
}

func (a pointerArray[V]) Index(i int) any { return &a[i] }

func (a pointerArray[V]) IndexType() any { return new(V) }

// unsafeString views b as a string without copying it: the payload is
// encoded into the statement's arguments and not kept.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func withExpr[R any](c column[R], expr string) column[R] {
	c.expr = expr
	return c
}

// selected is the column's value in a SELECT over the unnested input u.
func (c column[R]) selected() string {
	if c.expr != "" {
		return c.expr
	}
	return "u." + c.name
}

// args are a statement's arguments for rows, one per column.
func args[R any](cols []column[R], rows []R) []any {
	out := make([]any, len(cols))
	for i, c := range cols {
		out[i] = c.arg(rows)
	}
	return out
}

// unnest is `unnest($1::type[], ...) AS u(name, ...)` over every column.
func unnest[R any](cols []column[R]) string {
	params := make([]string, len(cols))
	names := make([]string, len(cols))
	for i, c := range cols {
		params[i] = fmt.Sprintf("$%d::%s[]", i+1, c.typ)
		names[i] = c.name
	}
	return "unnest(" + strings.Join(params, ", ") + ") AS u(" + strings.Join(names, ", ") + ")"
}

// insertOnce is an INSERT of every row that is not there yet (by the
// identity columns), taken in the order of the identity columns so that
// concurrent writers lock rows in the same order.
func insertOnce[R any](table string, cols []column[R]) string {
	var names, selects, key []string
	for _, c := range cols {
		if c.merge == input {
			continue
		}
		names = append(names, c.name)
		selects = append(selects, c.selected())
		if c.merge == identity {
			key = append(key, fmt.Sprint(len(names))) // by position: the value selected, not the input
		}
	}
	conflict := make([]string, 0, len(key))
	for _, c := range cols {
		if c.merge == identity {
			conflict = append(conflict, c.name)
		}
	}
	return fmt.Sprintf("INSERT INTO %s (%s)\nSELECT %s FROM %s\nORDER BY %s\nON CONFLICT (%s) DO NOTHING",
		table, strings.Join(names, ", "), strings.Join(selects, ",\n\t"), unnest(cols),
		strings.Join(key, ", "), strings.Join(conflict, ", "))
}

// mergeUpsert is the merge rule as one INSERT ... ON CONFLICT DO UPDATE:
//   - the notification with the greater tuple of order columns (then
//     tiebreak columns' text) wins and sets the winner, order and tiebreak
//     columns;
//   - fact columns keep any known value, the smallest if two disagree.
//
// Both parts are commutative, associative and idempotent, so the row is the
// same for any arrival order and any number of duplicates. The WHERE clause
// skips no-op updates so that duplicates do not churn the table, and so the
// statement returns the identity of exactly the rows it inserted or changed.
// Rows are taken in identity order, so concurrent writers cannot deadlock.
// extraSets are further assignments of the update (they may read d, the row
// being replaced).
func mergeUpsert[R any](table string, cols []column[R], extraSets ...string) string {
	var names, selects, key, sets, olds, news, oldTies, newTies, factOld, factLeast []string
	for _, c := range cols {
		if c.merge == input {
			continue
		}
		names = append(names, c.name)
		selects = append(selects, c.selected())
		switch c.merge {
		case identity:
			key = append(key, c.name)
		case fact:
			least := least(c.name, c.typ)
			sets = append(sets, c.name+" = "+least)
			if c.typ == "jsonb" {
				// Changed means another text: jsonb's = would call the
				// smaller of two equal spellings no change.
				factOld = append(factOld, byText("d."+c.name))
				factLeast = append(factLeast, byText("("+least+")"))
			} else {
				factOld = append(factOld, "d."+c.name)
				factLeast = append(factLeast, least)
			}
		case latest:
			greatest := fmt.Sprintf("GREATEST(d.%[1]s, EXCLUDED.%[1]s)", c.name)
			sets = append(sets, c.name+" = "+greatest)
			factOld = append(factOld, "d."+c.name)
			factLeast = append(factLeast, greatest)
		case order:
			olds = append(olds, "d."+c.name)
			news = append(news, "EXCLUDED."+c.name)
		case tiebreak:
			oldTies = append(oldTies, byText("d."+c.name))
			newTies = append(newTies, byText("EXCLUDED."+c.name))
		}
	}
	olds, news = append(olds, oldTies...), append(news, newTies...)
	wins := "(" + strings.Join(news, ", ") + ") > (" + strings.Join(olds, ", ") + ")"
	for _, c := range cols {
		if c.merge == winner || c.merge == order || c.merge == tiebreak {
			sets = append(sets, fmt.Sprintf("%[1]s = CASE WHEN %[2]s THEN EXCLUDED.%[1]s ELSE d.%[1]s END", c.name, wins))
		}
	}
	sets = append(sets, "updated_at = now()")
	sets = append(sets, extraSets...)
	return fmt.Sprintf(`INSERT INTO %s AS d (%s)
SELECT %s
FROM %s
ORDER BY %s
ON CONFLICT (%s) DO UPDATE SET
	%s
WHERE %s
	OR (%s) IS DISTINCT FROM (%s)`,
		table, strings.Join(names, ", "), strings.Join(selects, ",\n\t"), unnest(cols),
		strings.Join(key, ", "), strings.Join(key, ", "), strings.Join(sets, ",\n\t"),
		wins, strings.Join(factOld, ", "), strings.Join(factLeast, ", "))
}

// least is a fact's merge: the smaller of the row's value and the new one,
// NULL only if both are. LEAST keeps the first of two equal values, the
// row's; for jsonb, which calls different values equal (1, 1.0 and 10E-1;
// {"v":1} and {"v":1.00}), that would keep whichever arrived first, so
// equal jsonb values are ordered by their text, as bytes: the smallest is
// one value whatever the order. (The row comparison is NULL, so false, when
// EXCLUDED's is NULL.)
func least(name, typ string) string {
	if typ != "jsonb" {
		return fmt.Sprintf("LEAST(d.%[1]s, EXCLUDED.%[1]s)", name)
	}
	return fmt.Sprintf("CASE WHEN d.%[1]s IS NULL OR (EXCLUDED.%[1]s, %[2]s) < (d.%[1]s, %[3]s) THEN EXCLUDED.%[1]s ELSE d.%[1]s END",
		name, byText("EXCLUDED."+name), byText("d."+name))
}

// byText is a value's text ordered as bytes, whatever the database's
// collation.
func byText(v string) string { return v + `::text COLLATE "C"` }

var (
	insertEvents      = insertOnce("device_command_events", eventColumns)
	insertReceipts    = insertOnce("device_command_receipts", receiptColumns)
	upsertCommands    = mergeUpsert("device_commands", commandColumns, previousSets...)
	insertDeadLetters = insertOnce("dead_letters", deadLetterColumns)
)
