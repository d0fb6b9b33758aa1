package store

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
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
// a table written by mergeUpsert; the tables only inserted into have
// identity and plain columns only.
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
	// fold is how fold (fold.go) reads and merges the column in Go.
	fold foldOps[R]
}

// foldOps are a column's values as fold (fold.go) sees them, each function
// given rows: set on the identity, fact, order and tiebreak columns of the
// tables fold merges (device_commands, device_messages) by the
// constructors below (textKey, foldable, orderBy), read by newFoldRule,
// which says which columns it needs them on.
type foldOps[R any] struct {
	// missing: the row has no value (NULL).
	missing func(*R) bool
	// equal: a's value and b's are the same to PostgreSQL, as bytes.
	equal func(a, b *R) bool
	// take gives dst src's value.
	take func(dst, src *R)
	// compare orders two rows' values as PostgreSQL does (an order
	// column's).
	compare func(a, b *R) int
}

// noteRow is a notification with what the statements need precomputed.
type noteRow struct {
	n      *notification.Notification
	source string
	key    []byte
	idx    int // the item's index in the batch
	// The header the history keeps once, and the payload without it.
	headerCut
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
//
// Its fact, order and tiebreak columns say where a notification holds their
// value (foldable, orderBy): fold (fold.go) merges by them in Go what the
// statement would merge in SQL, and a column it cannot merge so stops it
// from folding at all (foldRule).
var commandColumns = []column[noteRow]{
	textKey("command_id", func(r *noteRow) *string { return &r.n.CommandID }),
	textFact("device_id", func(r *noteRow) *string { return &r.n.DeviceID }),
	textFact("product_id", func(r *noteRow) *string { return &r.n.ProductID }),
	textFact("app_id", func(r *noteRow) *string { return &r.n.AppID }),
	textFact("gateway_id", func(r *noteRow) *string { return &r.n.GatewayID }),
	textFact("node_id", func(r *noteRow) *string { return &r.n.NodeID }),
	jsonFact("tags", fact, func(r *noteRow) *[]byte { return (*[]byte)(&r.n.Tags) }),
	timeFact("created_time", func(r *noteRow) *time.Time { return &r.n.CreatedTime }),
	timeFact("sent_time", func(r *noteRow) *time.Time { return &r.n.SentTime }),
	timeFact("delivered_time", func(r *noteRow) *time.Time { return &r.n.DeliveredTime }),
	timeFact("response_time", func(r *noteRow) *time.Time { return &r.n.ResponseTime }),
	textCol("status", winner, func(r *noteRow) string { return string(r.n.Status) }),
	orderBy(valueCol("status_rank", "int2", order, func(r *noteRow) int16 { return r.n.Rank() }),
		func(a, b *noteRow) int { return cmp.Compare(a.n.Rank(), b.n.Rank()) }),
	jsonFact("result", tiebreak, func(r *noteRow) *[]byte { return (*[]byte)(&r.n.Result) }),
	// A row timed by its receipt is not folded (its time is read in the
	// statement): the time compared is the notification's own, to the
	// microsecond PostgreSQL keeps.
	orderBy(withExpr(valueCol("last_event_time", "timestamptz", order, func(r *noteRow) time.Time { return r.n.EventTime }),
		firstReceipt("last_event_key", "last_event_time")),
		func(a, b *noteRow) int { return cmp.Compare(a.n.EventTime.UnixMicro(), b.n.EventTime.UnixMicro()) }),
	orderBy(valueCol("last_event_key", "bytea", order, func(r *noteRow) []byte { return r.key }),
		func(a, b *noteRow) int { return bytes.Compare(a.key, b.key) }),
	textCol("last_request_id", winner, func(r *noteRow) string { return r.n.RequestID }),
	textFact("service_id", func(r *noteRow) *string { return &r.creation().ServiceID }),
	textFact("command_name", func(r *noteRow) *string { return &r.creation().CommandName }),
	jsonFact("paras", fact, func(r *noteRow) *[]byte { return (*[]byte)(&r.creation().Paras) }),
	textFact("send_strategy", func(r *noteRow) *string { return &r.creation().SendStrategy }),
	foldable(valueCol("expire_time", "int4", fact, func(r *noteRow) pgtype.Int4 {
		if e := r.creation().ExpireTime; e != nil {
			return pgtype.Int4{Int32: int32(*e), Valid: true}
		}
		return pgtype.Int4{}
	}), func(r *noteRow) **int { return &r.creation().ExpireTime },
		func(e *int) bool { return e == nil }, func(a, b *int) bool { return *a == *b }),
	valueCol("from_receipt", "bool", input, func(r *noteRow) bool { return r.n.TimeFromReceipt }),
}

// eventColumns are device_command_events' columns: the history, one row per
// distinct notification. The event time is part of the identity because the
// table is partitioned by it (migration 005).
var eventColumns = slices.Concat([]column[noteRow]{
	textCol("command_id", identity, func(r *noteRow) string { return r.n.CommandID }),
	valueCol("event_key", "bytea", identity, func(r *noteRow) []byte { return r.key }),
	textCol("status", plain, func(r *noteRow) string { return string(r.n.Status) }),
	withExpr(valueCol("event_time", "timestamptz", identity, func(r *noteRow) time.Time { return r.n.EventTime }),
		firstReceipt("event_key", "event_time")),
	textCol("request_id", plain, func(r *noteRow) string { return r.n.RequestID }),
	textCol("source", plain, func(r *noteRow) string { return r.source }),
	valueCol("from_receipt", "bool", input, func(r *noteRow) bool { return r.n.TimeFromReceipt }),
}, payloadColumns(func(r *noteRow) *headerCut { return &r.headerCut }, func(r *noteRow) []byte { return r.n.Payload }))

// headerRow is a header notification_headers keeps once (migration 027).
type headerRow struct {
	id   int64
	text []byte
}

var headerColumns = []column[headerRow]{
	valueCol("id", "int8", identity, func(r *headerRow) int64 { return r.id }),
	valueCol("header", "text", plain, func(r *headerRow) string { return unsafeString(r.text) }),
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

// foldable is c with how fold reads and merges it: field is where a row holds
// its value, missing says when it is NULL, equal when two are one value
// (as bytes, where PostgreSQL's order could tell them apart).
func foldable[R, V any](c column[R], field func(*R) *V, missing func(V) bool, equal func(a, b V) bool) column[R] {
	c.fold = foldOps[R]{
		missing: func(r *R) bool { return missing(*field(r)) },
		equal:   func(a, b *R) bool { return equal(*field(a), *field(b)) },
		take:    func(dst, src *R) { *field(dst) = *field(src) },
	}
	return c
}

// orderBy is the order column c with how Go compares its values.
func orderBy[R any](c column[R], compare func(a, b *R) int) column[R] {
	c.fold.compare = compare
	return c
}

// textKey is a text identity column that fold (fold.go) compares.
func textKey[R any](name string, field func(*R) *string) column[R] {
	return foldable(textCol(name, identity, func(r *R) string { return *field(r) }), field,
		func(s string) bool { return s == "" }, func(a, b string) bool { return a == b })
}

// textFact is a text fact column; "" is NULL.
func textFact[R any](name string, field func(*R) *string) column[R] {
	return foldable(textCol(name, fact, func(r *R) string { return *field(r) }), field,
		func(s string) bool { return s == "" }, func(a, b string) bool { return a == b })
}

// timeFact is a timestamptz fact column; the zero time is NULL. PostgreSQL
// keeps microseconds.
func timeFact[R any](name string, field func(*R) *time.Time) column[R] {
	return foldable(timeCol(name, fact, func(r *R) time.Time { return *field(r) }), field,
		time.Time.IsZero, func(a, b time.Time) bool { return a.UnixMicro() == b.UnixMicro() })
}

// jsonFact is a jsonb column (a fact, or a tiebreak) that fold can read:
// two values are one only if they are the same text.
func jsonFact[R any](name string, m merge, field func(*R) *[]byte) column[R] {
	return foldable(jsonCol(name, m, func(r *R) []byte { return *field(r) }), field,
		func(b []byte) bool { return b == nil }, bytes.Equal)
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
	insertHeaders     = insertOnce("notification_headers", headerColumns)
	insertReceipts    = insertOnce("device_command_receipts", receiptColumns)
	upsertCommands    = mergeUpsert("device_commands", commandColumns, previousSets...)
	insertDeadLetters = insertOnce("dead_letters", deadLetterColumns)
)
