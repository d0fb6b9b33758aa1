package console

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pageSize is the rows on one page of a list.
const pageSize = 50

// listStatement is one page of a list: pageSize+1 rows, so that the caller
// knows whether there is a next page.
type listStatement struct {
	sql  string
	args []any
	// inOrder: run it with inOrderOnly, so that the planner takes the index
	// that gives the statement's order, the only plan without a sort.
	inOrder bool
	// dayOrder: run it with dayOrderOnly (a list of a kind's commonStatus).
	dayOrder bool
	// heads: run it with inOrderOnly; it merges the heads of one index range
	// per product, and its one sort is of those (statusByProduct).
	heads bool
	// sorts: it reads one device's rows and sorts them (deviceByKey); run
	// with JIT off, which a plan estimating many rows might otherwise take.
	sorts bool
}

// inOrderOnly leaves a filtered list one plan that needs no sort: the scan of
// the index whose leading columns are the filter's and which then holds the
// list's order, stopping at the page. Without it the planner may prefer
// another index that gives the order with a filter (the day index, or the
// status index for a product and a status), estimating from the filter's
// share of the table that a page comes after a few hundred rows, which is
// wrong when the matching rows are old or the pair is rare: every row
// newer than them is read. A sort over the filter's rows is no better.
//
// JIT is off with them: a plan that sorts all the same carries the
// disabled sort's cost (10^10), far above jit_above_cost, and compiling it
// took 0.8 s of a page that reads 50 rows.
const inOrderOnly = `SELECT set_config('enable_sort', 'off', true), set_config('enable_incremental_sort', 'off', true),
	set_config('jit', 'off', true)`

// dayOrderOnly leaves a list of a common status one plan without a sort of
// the filter's rows: the day index read newest first, its ties of the key
// sorted as they come (an incremental sort, of a few rows). A generic plan
// estimates a window's share of the table from nothing, and with a status
// filtered too preferred reading the whole window to sort it (10,000 rows
// for a page of 50 in console/plans_messages_test.go).
const dayOrderOnly = `SELECT set_config('enable_sort', 'off', true), set_config('jit', 'off', true)`

// settings are what the statement is run with: none, inOrderOnly or
// dayOrderOnly.
func (st listStatement) settings() string {
	switch {
	case st.inOrder, st.heads:
		return inOrderOnly
	case st.dayOrder:
		return dayOrderOnly
	case st.sorts:
		return jitOff
	}
	return ""
}

// jitOff is a sorted list's setting: its plan's estimate grows with the rows
// it expects to sort, and compiling a plan took longer than reading them.
const jitOff = `SELECT set_config('jit', 'off', true)`

// params are a statement's arguments.
type params []any

// add appends v to p and returns its placeholder.
func (p *params) add(v any) string {
	*p = append(*p, v)
	return "$" + strconv.Itoa(len(*p))
}

// queryList runs a list's statement and reads its rows with scan.
func queryList[T any](ctx context.Context, db *pgxpool.Pool, st listStatement, scan func(pgx.Rows) (T, error)) (T, error) {
	settings := st.settings()
	if settings == "" {
		rows, err := db.Query(ctx, st.sql, st.args...)
		if err != nil {
			var zero T
			return zero, err
		}
		return scan(rows)
	}
	var out T
	// The settings are local to this transaction.
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, settings); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, st.sql, st.args...)
		if err != nil {
			return err
		}
		out, err = scan(rows)
		return err
	})
	return out, err
}

// cutPage cuts a list read one row past its page, so that its reader knows
// whether another page follows, to the page; last is the page's last row
// when one follows (the next page's cursor), nil on the last page.
func cutPage[T any](list []T, size int) (page []T, last *T) {
	if len(list) <= size {
		return list, nil
	}
	return list[:size], &list[size-1]
}

// listKind is what a kind's list reads (/commands, /messages): its table,
// the day key it is ordered by, newest first, the columns that name a row
// (the key's tie-break and, with the key, the cursor), every status a row
// of it can have, and its columns.
type listKind struct {
	table string
	// key is the day expression, as the kind's indexes hold it.
	key string
	// ids name a row in the list (the tie-break), in the order of its
	// indexes; each is a column of the table and of columns alike.
	ids      []string
	statuses []string
	// commonStatus, when set, is a status the kind's status index leaves
	// out (a partial index: a message's DELIVERED, migration 026): a list
	// of it alone reads the day index, skipping the other statuses' rows,
	// which are a small share of the rows as long as it is common. The
	// status index then needs the filter's status written into the
	// statement, where the planner can see it is not this one.
	commonStatus string
	// columns are named (expr AS name) and hold list_key, the key; names
	// are their names, in order, as the merge of a status' pages reads them.
	columns, names string
	// deviceByKey: the kind has no list index of a device's rows (a
	// message's, migration 031). A device's list reads its rows through the
	// primary key, which begins with device_id, and sorts them: the
	// device's rows in the retention window, not a page.
	deviceByKey bool
	// statusByProduct: the kind has no status index (a message's, migration
	// 031). A list of a status alone (not commonStatus) reads the head of
	// the status' range in the product index for each product, and merges
	// them: at most a page per product.
	statusByProduct bool
}

// listFilter is a list's filter and its keyset cursor: rows strictly after
// (Before, BeforeIDs...) in the list's order (newest first). BeforeIDs are
// of the ids' types (a command's id a string, a message's seq an int64).
type listFilter struct {
	Device, Product, Status string
	Since, Until, Before    *time.Time
	BeforeIDs               []any
}

// query is the statement of one page of the kind's list: limit rows.
//
// The list is newest first by the kind's day key, with the ids as the
// tie-break; the cursor is the last row's key and ids (keyset: a page costs
// the same however deep it is). Each filter has an index that begins with
// its columns and then holds that order: (device, status, day, ids),
// (product, status, day, ids), (status, day, ids) (for commands migrations
// 008 and 012, for messages 018), and the day index without a filter. The
// filter's first column is compared with ANY and leads the ORDER BY: an
// equality would make it a constant to the planner and every index holding
// the day order after it would do; this way only the intended one gives the
// order without a sort (a device's product, the one filter left out of its
// index, is checked on the device's rows). A device or a product without a
// status is read as one page per status, each the head of its index range,
// merged as they come: about a page of rows, where one scan of the
// device's or the product's rows would read all of them.
func (k listKind) query(f listFilter, limit int) listStatement {
	switch {
	case f.Device != "" && k.deviceByKey:
		return k.deviceQuery(f, limit)
	case f.Device == "" && f.Product == "" && f.Status != "" && f.Status != k.commonStatus && k.statusByProduct:
		return k.statusQuery(f, limit)
	}
	var where []string
	var args params
	arg := args.add
	var lead string
	switch {
	case f.Device != "":
		lead = "device_id"
		where = append(where, "device_id = ANY("+arg([]string{f.Device})+"::text[])")
		if f.Product != "" {
			where = append(where, "product_id = "+arg(f.Product))
		}
	case f.Product != "":
		lead = "product_id"
		where = append(where, "product_id = ANY("+arg([]string{f.Product})+"::text[])")
	case f.Status != "" && f.Status != k.commonStatus:
		lead = "status"
	}
	if f.Status != "" {
		switch {
		case lead == "status" && k.commonStatus != "" && slices.Contains(k.statuses, f.Status):
			// A literal of the kind's statuses: even a generic plan proves
			// the partial index's predicate.
			where = append(where, "status = ANY('{"+f.Status+"}'::text[])")
		case lead == "status":
			where = append(where, "status = ANY("+arg([]string{f.Status})+"::text[])")
		default:
			where = append(where, "status = "+arg(f.Status))
		}
	}
	where = append(where, k.bounds(f, arg)...)
	lim := " LIMIT " + strconv.Itoa(limit)
	tie := k.tie()
	order := k.key + " DESC" + tie
	if lead != "" {
		order = lead + " DESC, " + order
	}
	page := func(where []string, columns string) string {
		q := `SELECT ` + columns + ` FROM ` + k.table
		if len(where) > 0 {
			q += " WHERE " + strings.Join(where, " AND ")
		}
		return q + " ORDER BY " + order + lim
	}
	if lead == "" {
		// The day index, in order but for ties of the key (an incremental
		// sort of those): without a filter no other index can serve it, so
		// no setting.
		return listStatement{sql: page(where, k.columns), args: args, dayOrder: f.Status != ""}
	}
	if f.Status != "" {
		return listStatement{sql: page(where, k.columns), args: args, inOrder: true}
	}
	// The statuses are every status a row of the kind can have: a
	// notification with another is a dead letter
	// (notification.ClassUnknownStatus). They are written into the
	// statement, not passed, so that even a generic plan knows each
	// branch's status.
	//
	// The merge is ordered by the lead column as the branches give it: a
	// column of their own where the kind lists it (a message's device_id),
	// else one more (a command's device_id, listed as coalesced). Given as
	// a second column beside its own, the planner does not see the two as
	// one order, and sorts the branches' rows instead of merging them.
	leadCol, leadAs := "lead", ", "+lead+" AS lead"
	if slices.Contains(k.ids, lead) {
		leadCol, leadAs = lead, ""
	}
	branches := make([]string, len(k.statuses))
	for i, s := range k.statuses {
		branches[i] = "(" + page(append(slices.Clip(where), "status = '"+s+"'"), k.columns+leadAs) + ")"
	}
	return listStatement{
		sql: `SELECT ` + k.names + ` FROM (` + strings.Join(branches, "\nUNION ALL ") + `) c ORDER BY ` + leadCol +
			` DESC, list_key DESC` + tie + lim,
		args:    args,
		inOrder: true,
	}
}

// bounds are the conditions of f's window and cursor, their values added
// with arg.
func (k listKind) bounds(f listFilter, arg func(any) string) []string {
	var where []string
	if f.Since != nil {
		where = append(where, k.key+" >= "+arg(*f.Since))
	}
	if f.Until != nil {
		where = append(where, k.key+" < "+arg(*f.Until))
	}
	if f.Before != nil {
		b := arg(*f.Before)
		cursor := []string{b}
		for i := range k.ids {
			cursor = append(cursor, arg(f.BeforeIDs[i]))
		}
		// The first bound is the one the day index can use; the others
		// take the row comparison whole.
		where = append(where, k.key+" <= "+b,
			"("+k.key+", "+strings.Join(k.ids, ", ")+") < ("+strings.Join(cursor, ", ")+")")
	}
	return where
}

// tie is the list order's tie-break, after the key: its ids, newest first.
func (k listKind) tie() string {
	tie := ""
	for _, id := range k.ids {
		tie += ", " + id + " DESC"
	}
	return tie
}

// deviceQuery is a device's list of a kind without a device list index
// (deviceByKey): the device's rows, read through the primary key, filtered
// and sorted. The fence (OFFSET 0) leaves the planner the device's rows to
// read and nothing else: with the device's product or a status filtered
// too, it could otherwise prefer the product index, and read the product's
// rows for a page of the device's.
func (k listKind) deviceQuery(f listFilter, limit int) listStatement {
	var args params
	arg := args.add
	q := `SELECT ` + k.columns + ` FROM (SELECT * FROM ` + k.table + ` WHERE device_id = ` + arg(f.Device) +
		` OFFSET 0) AS ` + k.table
	var where []string
	if f.Product != "" {
		where = append(where, "product_id = "+arg(f.Product))
	}
	if f.Status != "" {
		where = append(where, "status = "+arg(f.Status))
	}
	where = append(where, k.bounds(f, arg)...)
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY " + k.key + " DESC" + k.tie() + " LIMIT " + strconv.Itoa(limit)
	return listStatement{sql: q, args: args, sorts: true}
}

// statusQuery is the list of one status of a kind without a status index
// (statusByProduct): for each product, the head of the status' range in
// the product index (product_id, status, key, ids), which holds the list's
// order, and the same of the rows without a product; merged, newest first.
// The products are found in the same index, one probe each (a loose scan:
// the recursive CTE), so a page reads at most a page per product.
func (k listKind) statusQuery(f listFilter, limit int) listStatement {
	var args params
	arg := args.add
	where := k.bounds(f, arg)
	// A literal of the kind's statuses, so that even a generic plan knows it.
	status := "status = '" + f.Status + "'"
	if !slices.Contains(k.statuses, f.Status) {
		status = "status = " + arg(f.Status)
	}
	lim := " LIMIT " + strconv.Itoa(limit)
	// lead: the head of the rows without a product is ordered by the index's
	// first columns too, as a backward scan gives them (NULLs first): the
	// planner takes IS NULL for a range, not one value, and would sort the
	// range.
	head := func(product, lead string) string {
		return `SELECT ` + k.columns + ` FROM ` + k.table + ` WHERE ` +
			strings.Join(append(slices.Clip(where), product, status), " AND ") +
			` ORDER BY ` + lead + k.key + ` DESC` + k.tie() + lim
	}
	sql := `WITH RECURSIVE products (p) AS (
	SELECT min(product_id) FROM ` + k.table + `
	UNION ALL
	SELECT (SELECT min(product_id) FROM ` + k.table + ` WHERE product_id > p) FROM products WHERE p IS NOT NULL
)
SELECT ` + k.names + ` FROM (
	SELECT h.* FROM products, LATERAL (` + head("product_id = products.p", "") + `) h
	UNION ALL
	(` + head("product_id IS NULL", "product_id DESC, status DESC, ") + `)
) c ORDER BY list_key DESC` + k.tie() + lim
	return listStatement{sql: sql, args: args, heads: true}
}
