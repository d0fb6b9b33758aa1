package store

import (
	"bytes"
	"cmp"
	"time"

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
// rows are sorted by command id; the result is too. A folded row is a new
// notification; the history is written from the original rows.
func fold(rows []noteRow) []noteRow {
	out := make([]noteRow, 0, len(rows))
	start := 0 // the first row of out for the current command
	for i := range rows {
		r := rows[i]
		if len(out) == 0 || out[start].n.CommandID != r.n.CommandID {
			start = len(out)
			out = append(out, r)
			continue
		}
		folded := false
		for j := start; j < len(out) && !folded; j++ {
			if m, ok := foldPair(&out[j], &r); ok {
				out[j], folded = m, true
			}
		}
		if !folded {
			out = append(out, r)
		}
	}
	return out
}

// foldPair is a and b as one row, if the merge rule gives the same row
// whichever is written first and Go can tell which values it keeps.
func foldPair(a, b *noteRow) (noteRow, bool) {
	x, y := a.n, b.n
	if x.TimeFromReceipt || y.TimeFromReceipt || !agree(x, y) {
		return noteRow{}, false
	}
	if bytes.Equal(a.key, b.key) && bytes.Equal(x.Result, y.Result) {
		return *a, true // the same notification twice
	}
	// One key and two results: the same result written two ways, which
	// jsonb may read as two values (duplicate keys, one escaped). The SQL
	// orders them by their text, which Go does not know: the loser's result
	// check below leaves them to it.
	win, lose := a, b
	if beats(b, a) {
		win, lose = b, a
	}
	if lose.n.Result != nil && !bytes.Equal(lose.n.Result, win.n.Result) {
		// The loser's result would not be written, and so not checked:
		// one PostgreSQL refuses (a number jsonb cannot hold) must still
		// make its notification a dead letter, as it does unfolded.
		return noteRow{}, false
	}
	n := *win.n // the winner's status, result, request id and time
	l := lose.n
	n.DeviceID = orText(n.DeviceID, l.DeviceID)
	n.ProductID = orText(n.ProductID, l.ProductID)
	n.AppID = orText(n.AppID, l.AppID)
	n.GatewayID = orText(n.GatewayID, l.GatewayID)
	n.NodeID = orText(n.NodeID, l.NodeID)
	n.Tags = orJSON(n.Tags, l.Tags)
	n.CreatedTime = orTime(n.CreatedTime, l.CreatedTime)
	n.SentTime = orTime(n.SentTime, l.SentTime)
	n.DeliveredTime = orTime(n.DeliveredTime, l.DeliveredTime)
	n.ResponseTime = orTime(n.ResponseTime, l.ResponseTime)
	if l.Creation != nil {
		if n.Creation == nil {
			n.Creation = l.Creation
		} else {
			c := *n.Creation
			c.ServiceID = orText(c.ServiceID, l.Creation.ServiceID)
			c.CommandName = orText(c.CommandName, l.Creation.CommandName)
			c.Paras = orJSON(c.Paras, l.Creation.Paras)
			c.SendStrategy = orText(c.SendStrategy, l.Creation.SendStrategy)
			if c.ExpireTime == nil {
				c.ExpireTime = l.Creation.ExpireTime
			}
			n.Creation = &c
		}
	}
	return noteRow{n: &n, source: win.source, key: win.key, idx: win.idx}, true
}

// beats reports whether a wins the merge over b: the greater (status rank,
// event time, key), the time as PostgreSQL stores it.
func beats(a, b *noteRow) bool {
	return cmp.Or(cmp.Compare(a.n.Rank(), b.n.Rank()), cmp.Compare(a.n.EventTime.UnixMicro(), b.n.EventTime.UnixMicro()),
		bytes.Compare(a.key, b.key)) > 0
}

// agree reports whether no fact of x contradicts one of y: each is equal,
// or missing on one side.
func agree(x, y *notification.Notification) bool {
	ok := sameText(x.DeviceID, y.DeviceID) && sameText(x.ProductID, y.ProductID) && sameText(x.AppID, y.AppID) &&
		sameText(x.GatewayID, y.GatewayID) && sameText(x.NodeID, y.NodeID) && sameJSON(x.Tags, y.Tags) &&
		sameTime(x.CreatedTime, y.CreatedTime) && sameTime(x.SentTime, y.SentTime) &&
		sameTime(x.DeliveredTime, y.DeliveredTime) && sameTime(x.ResponseTime, y.ResponseTime)
	if !ok || x.Creation == nil || y.Creation == nil {
		return ok
	}
	c, d := x.Creation, y.Creation
	return sameText(c.ServiceID, d.ServiceID) && sameText(c.CommandName, d.CommandName) && sameJSON(c.Paras, d.Paras) &&
		sameText(c.SendStrategy, d.SendStrategy) && (c.ExpireTime == nil || d.ExpireTime == nil || *c.ExpireTime == *d.ExpireTime)
}

func sameText(a, b string) bool { return a == "" || b == "" || a == b }

func sameJSON(a, b []byte) bool { return a == nil || b == nil || bytes.Equal(a, b) }

func sameTime(a, b time.Time) bool { return a.IsZero() || b.IsZero() || a.UnixMicro() == b.UnixMicro() }

func orText(a, b string) string {
	if a == "" {
		return b
	}
	return a
}

func orJSON(a, b []byte) []byte {
	if a == nil {
		return b
	}
	return a
}

func orTime(a, b time.Time) time.Time {
	if a.IsZero() {
		return b
	}
	return a
}
