package store

import (
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cmdtrack/cmdtrack/notification"
)

// CommandState is what the outcome metrics read of a command's stored row.
// Zero times are unknown (NULL).
type CommandState struct {
	Status    notification.Status
	ProductID string
	Created   time.Time
	Sent      time.Time
	Delivered time.Time
	Response  time.Time
	// LastEvent is the time of the notification that set Status.
	LastEvent time.Time
}

// Final reports whether the state's status is final (rank 3).
func (c *CommandState) Final() bool {
	r, ok := c.Status.Rank()
	return ok && r == 3
}

// Change is what one committed transaction did to one command's row: the row
// before the transaction (Existed false: there was none) and after it. Only
// the transaction that changed a row reports it, so changes summed over every
// writer and replica count each change of a row once. Before.ProductID is
// left empty (not read): the product is After's.
type Change struct {
	CommandID string
	Existed   bool
	Before    CommandState
	After     CommandState
}

// ChangeFunc is told, after each commit, the rows that commit changed. It
// runs on the writer's goroutine, so it must be quick; it must not keep the
// slice.
type ChangeFunc func([]Change)

// stateColumns are the columns a CommandState is read from, in scan order.
const stateColumns = "command_id, status, product_id, created_time, sent_time, delivered_time, response_time, last_event_time"

// To know each row's state before and after a batch, exactly, with other
// writers at work:
//
//  1. insertCommandsFirst inserts every command of the batch that has no row
//     yet, with its first notification, and returns those rows (before: none).
//     It waits for a concurrent writer inserting the same command, so after
//     it every command of the batch has a committed or our own row.
//  2. lockCommands (a new statement, so a new snapshot in READ COMMITTED that
//     sees those rows) reads the latest version of each row and locks it
//     until the commit: what it reads is the state before the batch, and no
//     other writer can change it meanwhile.
//  3. every round of the merge returns the rows it changed (after).
//
// Without step 1, a row another writer inserted after this statement's
// snapshot would be updated without ever being read, and its change counted
// by both writers.
var (
	insertCommandsFirst = insertOnce("device_commands", commandColumns) + "\nRETURNING " + stateColumns
	// The state before needs no product (the counters label the state after).
	// One lookup of the primary key per command, in the order given (the
	// batch's, command_id order): `command_id = ANY($1)` can be planned as a
	// scan of the table comparing each row with the whole array, as it is
	// while a new table has no statistics.
	lockCommands = "SELECT d.* FROM unnest($1::text[]) AS u(id) CROSS JOIN LATERAL (SELECT " +
		strings.Replace(stateColumns, "product_id", "NULL::text", 1) +
		" FROM device_commands x WHERE x.command_id = u.id FOR UPDATE) d"
	upsertTracking = upsertCommands + "\nRETURNING " + stateColumns
)

// tracker follows the commands of one batch through its statements. Its
// slots are the first round's rows: every command once, in command_id order.
type tracker struct {
	ids     []string
	slots   []slot
	changed []bool // by item index: the notification created or changed its row (reconcile)
	round   []noteRow
}

type slot struct {
	read    bool // before is known (or the row was inserted by this batch)
	existed bool
	changed bool
	before  CommandState
	after   CommandState
}

func newTracker(first []noteRow, changed []bool) *tracker {
	t := &tracker{ids: make([]string, len(first)), slots: make([]slot, len(first)), changed: changed, round: first}
	for i := range first {
		t.ids[i] = first[i].n.CommandID
	}
	return t
}

// queue queues the statements of steps 1 to 3 in place of the plain merge.
func (t *tracker) queue(b *pgx.Batch, rounds [][]noteRow) {
	first := args(commandColumns, t.round) // steps 1 and 3 share the first round's arguments
	b.Queue(insertCommandsFirst, first...).Query(func(rows pgx.Rows) error {
		return t.scan(rows, t.round, func(s *slot) *CommandState {
			s.read, s.existed, s.changed = true, false, true
			return &s.after
		})
	})
	b.Queue(lockCommands, t.ids).Query(func(rows pgx.Rows) error {
		return t.scan(rows, nil, func(s *slot) *CommandState {
			if s.read { // inserted by step 1
				return nil
			}
			s.read, s.existed = true, true
			return &s.before
		})
	})
	for i, round := range rounds {
		a := first
		if i > 0 {
			a = args(commandColumns, round)
		}
		b.Queue(upsertTracking, a...).Query(func(rows pgx.Rows) error {
			return t.scan(rows, round, func(s *slot) *CommandState {
				if !s.changed {
					s.changed, s.after = true, s.before // the product is only read here if it changed
				}
				return &s.after
			})
		})
	}
}

// scan reads state rows into the states into returns for their slots (nil:
// skip the row); when round is given, it also marks the items of round
// whose command came back as changed. It allocates only for a product id
// that differs from the one the state holds: the text is read in place.
func (t *tracker) scan(rows pgx.Rows, round []noteRow, into func(*slot) *CommandState) error {
	defer rows.Close()
	var (
		id, status, product                      pgtype.DriverBytes
		created, sent, delivered, response, last pgtype.Timestamptz
	)
	for rows.Next() {
		if err := rows.Scan(&id, &status, &product, &created, &sent, &delivered, &response, &last); err != nil {
			return err
		}
		key := unsafe.String(unsafe.SliceData(id), len(id)) // only compared, not kept
		i, ok := slices.BinarySearch(t.ids, key)
		if !ok {
			continue
		}
		if st := into(&t.slots[i]); st != nil {
			st.Status = knownStatus(status)
			if st.ProductID != string(product) {
				st.ProductID = string(product)
			}
			st.Created, st.Sent, st.Delivered, st.Response, st.LastEvent = created.Time, sent.Time, delivered.Time, response.Time, last.Time
		}
		if round != nil && t.changed != nil {
			if j, ok := slices.BinarySearchFunc(round, key, func(r noteRow, id string) int {
				return strings.Compare(r.n.CommandID, id)
			}); ok {
				t.changed[round[j].idx] = true
			}
		}
	}
	return rows.Err()
}

// knownStatus is the Status constant b spells, without allocating for it.
func knownStatus(b []byte) notification.Status {
	switch string(b) {
	case string(notification.Pending):
		return notification.Pending
	case string(notification.Sent):
		return notification.Sent
	case string(notification.Delivered):
		return notification.Delivered
	case string(notification.Successful):
		return notification.Successful
	case string(notification.Failed):
		return notification.Failed
	case string(notification.Timeout):
		return notification.Timeout
	case string(notification.Expired):
		return notification.Expired
	case string(notification.Canceled):
		return notification.Canceled
	}
	return notification.Status(b)
}

// changes are the batch's changed rows, once committed.
func (t *tracker) changes() []Change {
	var out []Change
	for i := range t.slots {
		s := &t.slots[i]
		if !s.changed {
			continue
		}
		if out == nil {
			out = make([]Change, 0, len(t.slots)-i)
		}
		c := Change{CommandID: t.ids[i], Existed: s.existed, After: s.after}
		if s.existed {
			c.Before = s.before
		}
		out = append(out, c)
	}
	return out
}
