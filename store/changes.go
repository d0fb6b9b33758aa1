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
func (c *CommandState) Final() bool { return c.Status.Final() }

// Previous is what the outcome metrics need of a command's row before a
// change: its status, and which stage times were known.
type Previous struct {
	Status                             notification.Status
	Created, Sent, Delivered, Response bool
}

// Final reports whether the status was final (rank 3).
func (p *Previous) Final() bool { return p.Status.Final() }

// Previous is what a Change's Before says of c.
func (c *CommandState) Previous() Previous {
	return Previous{Status: c.Status, Created: !c.Created.IsZero(), Sent: !c.Sent.IsZero(),
		Delivered: !c.Delivered.IsZero(), Response: !c.Response.IsZero()}
}

// Change is what one committed transaction did to one command's row: the row
// before the transaction (Existed false: there was none) and after it. Only
// the transaction that changed a row reports it, so changes summed over every
// writer and replica count each change of a row once.
type Change struct {
	CommandID string
	Existed   bool
	Before    Previous
	After     CommandState
}

// ChangeFunc is told, after each commit, the rows that commit changed. It
// runs on the writer's goroutine, so it must be quick; it must not keep the
// slice.
type ChangeFunc func([]Change)

// stateColumns are the columns a change is read from, in scan order.
const stateColumns = "command_id, status, product_id, created_time, sent_time, delivered_time, response_time, last_event_time, " +
	"previous_status, previous_known"

// The merge upsert records, in the row it writes, what the row was before
// (migration 010): in the UPDATE, d is the row version being replaced, the
// latest committed one, locked, so this is exact whatever other writers do,
// and it costs no statement of its own. A row inserted keeps both NULL.
var previousSets = []string{
	"previous_status = d.status",
	"previous_known = (CASE WHEN d.created_time IS NULL THEN 0 ELSE 1 END) + (CASE WHEN d.sent_time IS NULL THEN 0 ELSE 2 END)" +
		" + (CASE WHEN d.delivered_time IS NULL THEN 0 ELSE 4 END) + (CASE WHEN d.response_time IS NULL THEN 0 ELSE 8 END)",
}

// The kinds of outcome_events' rows (migrations 013 and 019), as issue 29's
// webhooks name their events.
const (
	// KindFinished: commands that reached their first final status.
	KindFinished = "command.finished"
	// KindFinalChanged: commands' final statuses replaced by another final
	// status.
	KindFinalChanged = "command.final_changed"
	// KindMessageFinished: device messages that reached their first final
	// status.
	KindMessageFinished = "message.finished"
	// KindMessageFinalChanged: device messages' final statuses replaced by
	// another final status.
	KindMessageFinalChanged = "message.final_changed"
)

// outcomeRule is what recordOutcomes needs to know of one table the merge
// writes: the kinds it records, which statuses are final, how a row is named
// in outcome_events.command_ids, and where retention leaves its tombstones.
type outcomeRule struct {
	finished, finalChanged string
	// finals are the final statuses, as an SQL list of literals.
	finals string
	// id is a row's name in command_ids, an SQL expression over m.
	id string
	// tombstone is an SQL condition over m: retention deleted the row when
	// it was final (it finished already).
	tombstone string
}

var (
	commandOutcomes = outcomeRule{
		finished: KindFinished, finalChanged: KindFinalChanged,
		finals:    finalList(allStatuses(), func(s string) bool { return notification.Status(s).Final() }),
		id:        "m.command_id",
		tombstone: "EXISTS (SELECT 1 FROM command_tombstones t WHERE t.command_id = m.command_id)",
	}
	// A message id is unique per device only; IoTDA's device ids hold no
	// '/', so the first one splits the name (migration 019).
	messageOutcomes = outcomeRule{
		finished: KindMessageFinished, finalChanged: KindMessageFinalChanged,
		finals: finalList([]string{string(notification.MessagePending), string(notification.MessageDelivered),
			string(notification.MessageFailed), string(notification.MessageTimeout)},
			func(s string) bool { return notification.MessageStatus(s).Final() }),
		id:        "m.device_id || '/' || m.message_id",
		tombstone: "EXISTS (SELECT 1 FROM message_tombstones t WHERE t.device_id = m.device_id AND t.message_id = m.message_id)",
	}
)

// recordOutcomes is the INSERT that follows the merge m in the same
// statement: it writes to outcome_events what the rows m inserted or changed
// say of their outcome, one row per kind, product and status. m returns only
// the rows the merge changed, each with its id columns, status, product_id
// and its status before (previous_status, NULL for a row inserted), and the
// merge can only raise a row's rank, so a row reaches its first final status
// in one statement only, whichever writer, replica or redelivery runs it:
// each is written once. Unless the row was deleted by retention as final (a
// tombstone) and recreated since: that one finished already.
func recordOutcomes(r outcomeRule) string {
	return `INSERT INTO outcome_events (kind, product_id, status, from_status, command_ids)
SELECT o.kind, o.product_id, o.status, o.from_status, array_agg(o.id ORDER BY o.id)
FROM (
	SELECT CASE WHEN p.was_final THEN '` + r.finalChanged + `' ELSE '` + r.finished + `' END AS kind,
		coalesce(m.product_id, '') AS product_id, m.status,
		CASE WHEN p.was_final THEN m.previous_status ELSE '' END AS from_status, ` + r.id + ` AS id
	FROM m, LATERAL (SELECT coalesce(m.previous_status IN (` + r.finals + `), false) AS was_final) p
	WHERE m.status IN (` + r.finals + `) AND CASE WHEN p.was_final THEN m.previous_status <> m.status
		ELSE NOT ` + r.tombstone + ` END
) o
GROUP BY o.kind, o.product_id, o.status, o.from_status`
}

// upsertCounting is the merge, recording outcomes.
var upsertCounting = "WITH m AS (\n" + upsertCommands +
	"\nRETURNING command_id, status, product_id, previous_status)\n" + recordOutcomes(commandOutcomes)

// upsertTracking is the merge, recording outcomes and returning each row it
// inserted or changed.
var upsertTracking = "WITH m AS (\n" + upsertCommands + "\nRETURNING " + stateColumns + "),\n" +
	"e AS (" + recordOutcomes(commandOutcomes) + ")\nSELECT " + stateColumns + " FROM m"

// finalList is the statuses final says are final, as an SQL list of
// literals.
func finalList(statuses []string, final func(string) bool) string {
	var out []string
	for _, s := range statuses {
		if final(s) {
			out = append(out, "'"+s+"'")
		}
	}
	return strings.Join(out, ", ")
}

// tracker follows the commands of one batch through its rounds. Its slots
// are the first round's rows: every command once, in command_id order. A
// round changes a command's row at most once; the first round that returns
// a row gives the state before the batch (rounds before it changed nothing,
// and the row stays locked from the first round on), the last the state after.
type tracker struct {
	ids     []string
	slots   []slot
	changed []bool // by item index: the notification created or changed its row (reconcile)
}

type slot struct {
	changed bool
	existed bool
	before  Previous
	after   CommandState
}

func newTracker(first []noteRow, changed []bool) *tracker {
	t := &tracker{ids: make([]string, len(first)), slots: make([]slot, len(first)), changed: changed}
	for i := range first {
		t.ids[i] = first[i].n.CommandID
	}
	return t
}

// queue queues the merge's rounds, each returning the rows it changed.
func (t *tracker) queue(b *pgx.Batch, rounds [][]noteRow) {
	for _, round := range rounds {
		b.Queue(upsertTracking, args(commandColumns, round)...).Query(func(rows pgx.Rows) error {
			return t.scan(rows, round)
		})
	}
}

// scan reads the rows a round changed into their slots, and marks the items
// of round whose command came back as changed. It allocates only for a
// product id that differs from the one the state holds: the text is read in
// place.
func (t *tracker) scan(rows pgx.Rows, round []noteRow) error {
	defer rows.Close()
	var (
		id, status, product, prevStatus          pgtype.DriverBytes
		created, sent, delivered, response, last pgtype.Timestamptz
		prevKnown                                pgtype.Int2
	)
	for rows.Next() {
		if err := rows.Scan(&id, &status, &product, &created, &sent, &delivered, &response, &last, &prevStatus, &prevKnown); err != nil {
			return err
		}
		key := unsafe.String(unsafe.SliceData(id), len(id)) // only compared, not kept
		i, ok := slices.BinarySearch(t.ids, key)
		if !ok {
			continue
		}
		s := &t.slots[i]
		if !s.changed {
			s.changed, s.existed = true, prevKnown.Valid
			if prevKnown.Valid {
				k := prevKnown.Int16
				s.before = Previous{Status: knownStatus(prevStatus), Created: k&1 != 0, Sent: k&2 != 0, Delivered: k&4 != 0, Response: k&8 != 0}
			}
		}
		st := &s.after
		st.Status = knownStatus(status)
		if st.ProductID != string(product) {
			st.ProductID = string(product)
		}
		st.Created, st.Sent, st.Delivered, st.Response, st.LastEvent = created.Time, sent.Time, delivered.Time, response.Time, last.Time
		if t.changed != nil {
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
