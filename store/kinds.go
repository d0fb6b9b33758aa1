package store

import (
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/notification"
)

// writer stores one kind's records of a batch; a new one serves each
// batch that holds the kind.
type writer interface {
	// add takes the record of the batch's item idx.
	add(it *ingest.Item, idx int)
	// queue queues the statements that store what add took. When changed
	// is not nil, it marks the items whose record created or changed its
	// row; with track, the tracker it returns reads what changed (a kind
	// whose changes nobody is told returns nil).
	queue(b *pgx.Batch, changed []bool, track bool) *tracker
}

// writers are the store's writer for each kind, one line each. Their
// statements are queued in this order, which is part of the lock order
// (see queueTracked). header, for a kind whose history keeps each
// notification header once (headers.go), is where the decoder placed it in
// a record's payload (Body); its writer is a headerWriter and its history's
// columns end in payloadColumns.
var writers = [...]struct {
	kind   string
	new    func() writer
	header func(ingest.Record) (start, end int)
}{
	{notification.KindCommand, func() writer { return &commandWriter{} }, func(r ingest.Record) (int, int) {
		n := r.(*notification.Notification)
		return n.HeaderStart, n.HeaderEnd
	}},
	{notification.KindPresence, func() writer { return &presenceWriter{} }, nil},
	{notification.KindMessage, func() writer { return &messageWriter{} }, func(r ingest.Record) (int, int) {
		m := r.(*notification.Message)
		return m.HeaderStart, m.HeaderEnd
	}},
	{notification.KindCall, func() writer { return &callWriter{} }, nil},
}

const maxKinds = len(writers)

// writerOf is the index of kind's writer. A kind without one is a record
// type added to ingest and not to this table, which the tests catch
// (TestEveryKindHasAWriter); storing nothing for it would lose it.
func writerOf(kind string) int {
	for i := range writers {
		if writers[i].kind == kind {
			return i
		}
	}
	panic(fmt.Sprintf("store: no writer for kind %q; add one to the writers table", kind))
}
