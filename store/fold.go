package store

import (
	"fmt"

	"github.com/cmdtrack/cmdtrack/notification"
)

// fold merges, before they are written, the notifications of one row that a
// batch holds (one command's, one device message's), wherever the merge
// rule gives the same row whichever of them is written first: then one row
// version is written per row instead of one per notification, and each with
// the indexes' entries. A backlog holds whole lifecycles close together: in
// make bench's stream a third of a 256-notification batch shares its
// command with another.
//
// It folds only what the SQL rule decides by values Go compares the same
// way: facts that agree (the same bytes) or are missing on one side (not two
// that disagree, which the SQL decides by collation or by jsonb order and
// then jsonb's text), the winner by status rank, event time to the
// microsecond PostgreSQL keeps and key (bytes), no loser with a result of
// its own (every value is still written, so still checked by PostgreSQL;
// and of two with the same key, the SQL decides by the result's jsonb
// text), and no notification timed by its receipt (its time is read in the
// statement).
// Anything else stays a row of its own, for the next round. So the stored
// row is the same as without folding, and the rule is still decided in SQL
// whenever Go could decide it differently.
//
// Which columns name the row, which are facts, which decide the winner and
// how each is read is the column table's (commandColumns, messageColumns),
// read by newFoldRule: a column added there is folded as the SQL merges it,
// or, if fold cannot tell how, nothing is folded (TestFoldKnowsEveryColumn
// fails).
//
// rows are sorted by the table's identity; the result is too. A folded row
// is a new notification; the history is written from the original rows.
func (f *foldRule[R]) fold(rows []R) []R {
	if f.err != nil {
		return rows
	}
	out := make([]R, 0, len(rows))
	start := 0 // the first row of out for the current identity
	for i := range rows {
		r := &rows[i] // not a copy: the fold's functions would move it to the heap
		if len(out) == 0 || !f.same(&out[start], r) {
			start = len(out)
			out = append(out, *r)
			continue
		}
		folded := false
		for j := start; j < len(out) && !folded; j++ {
			if m, ok := f.pair(&out[j], r); ok {
				out[j], folded = m, true
			}
		}
		if !folded {
			out = append(out, *r)
		}
	}
	return out
}

// foldRule is the merge rule of a column table as fold applies it: its
// columns by what the merge does with them, and what fold needs of the
// kind beyond them.
type foldRule[R any] struct {
	ids    []foldOps[R] // the identity: rows of one stored row are equal in each
	facts  []foldOps[R] // keep any known value; fold joins them only where equal
	orders []foldOps[R] // the winner is the greater tuple of these
	ties   []foldOps[R] // then of these, by their text, which Go does not order
	kind   foldKind[R]
	err    error // a column fold cannot merge: fold does nothing
}

// foldKind is what fold needs of a kind that its column table does not
// say.
type foldKind[R any] struct {
	// inputs are the input columns fold knows, each read by apart.
	inputs map[string]bool
	// apart, if set, is a row fold leaves to the SQL (one timed by its
	// receipt, whose time is read in the statement).
	apart func(*R) bool
	// joined is a new row that starts as win, sharing nothing with it that
	// the fact columns' take writes into, so that fold fills it with lose's
	// facts and leaves win and lose as they were.
	joined func(win, lose *R) *R
}

var (
	commandFold = newFoldRule(commandColumns, commandFoldKind)
	messageFold = newFoldRule(messageColumns, messageFoldKind)
)

// commandFoldKind: rows timed by their receipt (from_receipt) are never
// folded.
var commandFoldKind = foldKind[noteRow]{
	inputs: map[string]bool{"from_receipt": true},
	apart:  func(r *noteRow) bool { return r.n.TimeFromReceipt },
	joined: func(win, lose *noteRow) *noteRow {
		// One allocation for the row and its notification, which starts
		// as the winner's (status, result, request id, time).
		m := &struct {
			r noteRow
			n notification.Notification
		}{n: *win.n}
		m.r = noteRow{n: &m.n, source: win.source, key: win.key, idx: win.idx}
		switch l := lose.n.Creation; {
		case l == nil:
		case m.n.Creation == nil:
			// Shared: where the loser knows a creation fact, so does the
			// row, so nothing is written into it.
			m.n.Creation = l
		default:
			c := *m.n.Creation // a copy, which the loser's creation facts fill in
			m.n.Creation = &c
		}
		return &m.r
	},
}

// newFoldRule reads cols' merge for fold; its err names a column fold
// cannot merge (the column table's constructors textKey, fact and orderBy
// say how).
func newFoldRule[R any](cols []column[R], kind foldKind[R]) foldRule[R] {
	f := foldRule[R]{kind: kind}
	for _, c := range cols {
		var ok bool
		switch ops := c.fold; c.merge {
		case identity:
			ok = ops.equal != nil
			f.ids = append(f.ids, ops)
		case fact:
			ok = ops.missing != nil && ops.equal != nil && ops.take != nil
			f.facts = append(f.facts, ops)
		case order:
			ok = ops.compare != nil
			f.orders = append(f.orders, ops)
		case tiebreak:
			ok = ops.missing != nil && ops.equal != nil
			f.ties = append(f.ties, ops)
		case winner:
			ok = true // the winner's row is taken whole
		case input:
			ok = kind.inputs[c.name] && kind.apart != nil
		}
		if !ok {
			f.err = fmt.Errorf("fold cannot merge column %s (merge kind %d): give it its fold operations in the column table, "+
				"or teach newFoldRule its merge kind", c.name, c.merge)
		}
	}
	if f.err == nil && (len(f.ids) == 0 || kind.joined == nil) {
		f.err = fmt.Errorf("fold cannot tell which rows are one: give the table identity columns with fold operations (textKey), and the kind its joined")
	}
	return f
}

// same reports whether a and b are notifications of one stored row.
func (f *foldRule[R]) same(a, b *R) bool {
	for i := range f.ids {
		if !f.ids[i].equal(a, b) {
			return false
		}
	}
	return true
}

// pair is a and b as one row, if the merge rule gives the same row
// whichever is written first and Go can tell which values it keeps.
func (f *foldRule[R]) pair(a, b *R) (R, bool) {
	var none R
	if f.kind.apart != nil && (f.kind.apart(a) || f.kind.apart(b)) {
		return none, false
	}
	for i := range f.facts {
		c := &f.facts[i]
		if !c.missing(a) && !c.missing(b) && !c.equal(a, b) {
			return none, false // two values the SQL orders by collation or jsonb order
		}
	}
	win, lose := a, b
	switch f.compare(b, a) {
	case 1:
		win, lose = b, a
	case 0:
		if f.sameTies(a, b) {
			return *a, true // the same notification twice (the order holds its key)
		}
	}
	for i := range f.ties {
		// The loser's value would not be written, and so not checked: one
		// PostgreSQL refuses (a number jsonb cannot hold) must still make
		// its notification a dead letter, as it does unfolded. And of two
		// with one key (the same result written two ways, which jsonb may
		// read as two values), the SQL decides by their text.
		if c := &f.ties[i]; !c.missing(lose) && !c.equal(lose, win) {
			return none, false
		}
	}
	m := f.kind.joined(win, lose)
	for i := range f.facts {
		if c := &f.facts[i]; c.missing(m) && !c.missing(lose) {
			c.take(m, lose)
		}
	}
	return *m, true
}

// compare orders a and b as the merge does: by the tuple of order columns.
func (f *foldRule[R]) compare(a, b *R) int {
	for i := range f.orders {
		if c := f.orders[i].compare(a, b); c != 0 {
			return c
		}
	}
	return 0
}

// sameTies reports whether a and b have the same tiebreak values.
func (f *foldRule[R]) sameTies(a, b *R) bool {
	for i := range f.ties {
		c := &f.ties[i]
		if c.missing(a) != c.missing(b) || !c.equal(a, b) {
			return false
		}
	}
	return true
}
