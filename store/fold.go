package store

import (
	"fmt"

	"github.com/cmdtrack/cmdtrack/notification"
)

// fold merges, before they are written, the notifications of one command
// that a batch holds, wherever the merge rule gives the same row whichever
// of them is written first: then one row version is written per command
// instead of one per notification, and each with the indexes' entries. A
// backlog holds whole lifecycles close together: in make bench's stream a
// third of a 256-notification batch shares its command with another.
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
// Which columns are facts, which decide the winner and how each is read
// is the column table's (commandColumns, through commandFold): a column
// added there is folded as the SQL merges it, or, if fold cannot tell how,
// nothing is folded (TestFoldKnowsEveryColumn fails).
//
// rows are sorted by command id; the result is too. A folded row is a new
// notification; the history is written from the original rows.
func fold(rows []noteRow) []noteRow {
	if commandFold.err != nil {
		return rows
	}
	out := make([]noteRow, 0, len(rows))
	start := 0 // the first row of out for the current command
	for i := range rows {
		r := &rows[i] // not a copy: the fold's functions would move it to the heap
		if len(out) == 0 || out[start].n.CommandID != r.n.CommandID {
			start = len(out)
			out = append(out, *r)
			continue
		}
		folded := false
		for j := start; j < len(out) && !folded; j++ {
			if m, ok := commandFold.pair(&out[j], r); ok {
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
// columns by what the merge does with them.
type foldRule struct {
	facts  []foldOps[noteRow] // keep any known value; fold joins them only where equal
	orders []foldOps[noteRow] // the winner is the greater tuple of these
	ties   []foldOps[noteRow] // then of these, by their text, which Go does not order
	err    error              // a column fold cannot merge: fold does nothing
}

// foldIdentity is the identity fold groups rows by (their CommandID).
const foldIdentity = "command_id"

// foldInputs are the input columns fold knows: from_receipt, because rows
// timed by their receipt are never folded.
var foldInputs = map[string]bool{"from_receipt": true}

var commandFold = newFoldRule(commandColumns)

// newFoldRule reads cols' merge for fold; its err names a column fold
// cannot merge (the column table's constructors fact and orderBy say how).
func newFoldRule(cols []column[noteRow]) foldRule {
	var f foldRule
	for _, c := range cols {
		var ok bool
		switch ops := c.fold; c.merge {
		case identity:
			ok = c.name == foldIdentity
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
			ok = foldInputs[c.name]
		}
		if !ok {
			f.err = fmt.Errorf("fold cannot merge column %s (merge kind %d): give it its fold operations in the column table, "+
				"or teach newFoldRule its merge kind", c.name, c.merge)
		}
	}
	return f
}

// pair is a and b as one row, if the merge rule gives the same row
// whichever is written first and Go can tell which values it keeps.
func (f *foldRule) pair(a, b *noteRow) (noteRow, bool) {
	if a.n.TimeFromReceipt || b.n.TimeFromReceipt {
		return noteRow{}, false
	}
	for i := range f.facts {
		c := &f.facts[i]
		if !c.missing(a) && !c.missing(b) && !c.equal(a, b) {
			return noteRow{}, false // two values the SQL orders by collation or jsonb order
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
			return noteRow{}, false
		}
	}
	// One allocation for the row and its notification, which starts as the
	// winner's (status, result, request id, time).
	m := &struct {
		r noteRow
		n notification.Notification
	}{n: *win.n}
	m.r = noteRow{n: &m.n, source: win.source, key: win.key, idx: win.idx}
	switch l := lose.n.Creation; {
	case l == nil:
	case m.n.Creation == nil:
		// Shared: where the loser knows a creation fact, so does the row,
		// so nothing is written into it below.
		m.n.Creation = l
	default:
		c := *m.n.Creation // a copy, which the loser's creation facts fill in
		m.n.Creation = &c
	}
	for i := range f.facts {
		if c := &f.facts[i]; c.missing(&m.r) && !c.missing(lose) {
			c.take(&m.r, lose)
		}
	}
	return m.r, true
}

// compare orders a and b as the merge does: by the tuple of order columns.
func (f *foldRule) compare(a, b *noteRow) int {
	for i := range f.orders {
		if c := f.orders[i].compare(a, b); c != 0 {
			return c
		}
	}
	return 0
}

// sameTies reports whether a and b have the same tiebreak values.
func (f *foldRule) sameTies(a, b *noteRow) bool {
	for i := range f.ties {
		c := &f.ties[i]
		if c.missing(a) != c.missing(b) || !c.equal(a, b) {
			return false
		}
	}
	return true
}
