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
// (see queueTracked).
var writers = [...]struct {
	kind string
	new  func() writer
}{
	{notification.KindCommand, func() writer { return &commandWriter{} }},
	{notification.KindPresence, func() writer { return &presenceWriter{} }},
	{notification.KindMessage, func() writer { return &messageWriter{} }},
	{notification.KindCall, func() writer { return &callWriter{} }},
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
