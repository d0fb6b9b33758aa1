package store

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/notification"
)

// Apply writes the effect of items in one transaction (history rows, the
// merged command rows and dead letters) and says what became of each item,
// index for index. When it returns without error, everything is committed
// and the messages may be settled.
//
// A value PostgreSQL rejects (a data error) must not hold back the rest of a
// batch, so Apply splits the batch until the offending item stands alone and
// stores it as a dead letter with PostgreSQL's reason (its Result says so).
// Any other error is returned for the caller to retry: applying the same
// items again is harmless. ctx bounds the whole call.
func (s *Store) Apply(ctx context.Context, items []ingest.Item) ([]ingest.Result, error) {
	return s.applyAll(ctx, items, false)
}

// ApplyReportingChanges is Apply, and also says which notifications created
// or changed their command's row (Result.Changed).
func (s *Store) ApplyReportingChanges(ctx context.Context, items []ingest.Item) ([]ingest.Result, error) {
	return s.applyAll(ctx, items, true)
}

func (s *Store) applyAll(ctx context.Context, items []ingest.Item, report bool) ([]ingest.Result, error) {
	res := make([]ingest.Result, len(items))
	for i := range items {
		res[i] = items[i].Result()
	}
	if err := s.apply(ctx, items, res, report); err != nil {
		return nil, interpretError(err)
	}
	return res, nil
}

func (s *Store) apply(ctx context.Context, items []ingest.Item, res []ingest.Result, report bool) error {
	if len(items) == 0 {
		return nil
	}
	changed, err := s.applyOnce(ctx, items, report)
	if err == nil {
		for i, c := range changed {
			res[i].Changed = c
		}
		return nil
	}
	if !IsDataError(err) {
		return err
	}
	if len(items) == 1 {
		it := &items[0]
		if it.DeadLetter != nil {
			// A dead letter is built to be storable; if it is not, retrying
			// forever would wedge the stream, so say so loudly instead.
			return fmt.Errorf("store dead letter: %w", err)
		}
		dl := &ingest.DeadLetter{
			Class:  notification.ClassRejected,
			Reason: "PostgreSQL rejected the notification: " + err.Error(),
			Body:   it.Payload(),
		}
		if _, err := s.applyOnce(ctx, []ingest.Item{{Source: it.Source, DeadLetter: dl}}, false); err != nil {
			return err
		}
		res[0] = ingest.Result{Outcome: ingest.DeadLettered, DeadLetter: dl}
		return nil
	}
	mid := len(items) / 2
	if err := s.apply(ctx, items[:mid], res[:mid], report); err != nil {
		return err
	}
	return s.apply(ctx, items[mid:], res[mid:], report)
}

// applyOnce writes items in one transaction and says, index for index,
// which notifications created or changed their command's row. Once it has
// committed, it tells the store's ChangeFunc what the batch changed: a
// batch rolled back tells nothing.
func (s *Store) applyOnce(ctx context.Context, items []ingest.Item, report bool) ([]bool, error) {
	b := &pgx.Batch{}
	var changed []bool
	if report {
		changed = make([]bool, len(items))
	}
	if hs := s.headers.unknown(batchHeaders(items)); len(hs) > 0 {
		// The batch's new headers commit on their own, before it: in the
		// batch's transaction, two writers bringing one new device's header
		// each waited for the other's whole batch (7 ms a statement over a
		// 200,000-notification drain, 5,800 devices). Committed early, a
		// header the batch then fails to use is kept, unused: harmless,
		// as a header is only ever put back where a row names it.
		if err := s.storeHeaders(ctx, hs); err != nil {
			return nil, fmt.Errorf("store the headers of a batch of %d: %w", len(items), err)
		}
	}
	tr := queueTracked(b, items, changed, report || s.onChange != nil, &s.headers)
	// pgx sends the batch in one round trip and runs it as one implicit
	// transaction: all of it commits or none of it does.
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("apply batch of %d: %w", len(items), err)
	}
	if tr != nil && s.onChange != nil {
		if c := tr.changes(); len(c) > 0 {
			s.onChange(c)
		}
	}
	return changed, nil
}

// queueWrites queues the statements that store items, and marks in changed
// (when not nil) the notifications whose merge created or changed their
// command's row.
func queueWrites(b *pgx.Batch, items []ingest.Item, changed []bool) {
	queueTracked(b, items, changed, changed != nil, nil)
}

// storeHeaders stores hs (those stored already, under their id, are left as
// they are) and learns the text stored under each id, which is what a
// history row is cut against.
func (s *Store) storeHeaders(ctx context.Context, hs []headerRow) error {
	if _, err := s.pool.Exec(ctx, insertHeaders, args(headerColumns, hs)...); err != nil {
		return err
	}
	ids := make([]int64, len(hs))
	for i, h := range hs {
		ids[i] = h.id
	}
	rows, err := s.pool.Query(ctx, `SELECT id, header FROM notification_headers WHERE id = ANY ($1)`, ids)
	if err != nil {
		return err
	}
	stored, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (headerRow, error) {
		var h headerRow
		var text string
		err := r.Scan(&h.id, &text)
		h.text = []byte(text)
		return h, err
	})
	if err != nil {
		return err
	}
	s.headers.learn(stored)
	return nil
}

// batchHeaders are the distinct headers the notifications of items bring,
// of every kind whose history keeps them once (writers' header).
func batchHeaders(items []ingest.Item) []headerRow {
	var cuts []headerCut
	for i := range items {
		if rec := items[i].Record; rec != nil {
			if c := placed(rec); c.header != nil {
				cuts = append(cuts, c)
			}
		}
	}
	return headers(cuts)
}

// queueTracked is queueWrites; with track, the merge also reads each row's
// state before and after (see tracker), and the tracker is returned.
// Each kind's writer queues its statements in the order of the writers
// table, and every statement takes its rows in a fixed order (command_id,
// then key), so that two workers writing overlapping batches lock rows in
// the same order and cannot deadlock. A history row's payload is stored
// without its header where known holds that header's text under its id;
// with known nil (a caller's own transaction), every payload whole.
func queueTracked(b *pgx.Batch, items []ingest.Item, changed []bool, track bool, known *knownHeaders) *tracker {
	var ws [maxKinds]writer
	var dead []deadRow
	for i := range items {
		switch it := &items[i]; {
		case it.Record != nil:
			k := writerOf(it.Record.Kind())
			if ws[k] == nil {
				ws[k] = writers[k].new()
				if hw, ok := ws[k].(headerWriter); ok {
					hw.knowHeaders(known)
				}
			}
			ws[k].add(it, i)
		case it.DeadLetter != nil:
			dead = append(dead, newDeadRow(it.Source, it.DeadLetter))
		}
	}
	var tr *tracker
	for _, w := range ws {
		if w != nil {
			if t := w.queue(b, changed, track); t != nil {
				tr = t
			}
		}
	}
	if len(dead) > 0 {
		b.Queue(insertDeadLetters, args(deadLetterColumns, dead)...)
	}
	return tr
}

// commandWriter stores a batch's command status notifications: the merge
// into device_commands and the history in command_events.
type commandWriter struct {
	notes []noteRow
	headerCutter
}

func (w *commandWriter) add(it *ingest.Item, idx int) {
	n := it.Record.(*notification.Notification)
	w.notes = append(w.notes, noteRow{n: n, source: it.Source, key: n.Key(), idx: idx, headerCut: placed(n)})
}

func (w *commandWriter) queue(b *pgx.Batch, changed []bool, track bool) *tracker {
	notes := w.notes
	for i := range notes {
		w.cut(&notes[i].headerCut, notes[i].n.Payload)
	}
	slices.SortFunc(notes, func(a, b noteRow) int {
		return cmp.Or(strings.Compare(a.n.CommandID, b.n.CommandID), bytes.Compare(a.key, b.key),
			a.n.EventTime.Compare(b.n.EventTime))
	})
	if receipts := receiptTimed(notes); len(receipts) > 0 {
		// First: the statements after it read these (firstReceipt).
		b.Queue(insertReceipts, args(receiptColumns, receipts)...)
	}
	merged := notes
	if changed == nil {
		// Which notification changed a row is not told once they
		// are folded; nobody asked.
		merged = commandFold.fold(notes)
	}
	rs := rounds(merged, func(a, b *noteRow) bool { return a.n.CommandID == b.n.CommandID })
	var tr *tracker
	if track {
		tr = newTracker(rs[0], changed)
		tr.queue(b, rs)
	} else {
		for _, round := range rs {
			b.Queue(upsertCounting, args(commandColumns, round)...)
		}
	}
	b.Queue(insertEvents, args(eventColumns, notes)...)
	return tr
}

// receiptTimed are the rows timed by their receipt (legacy callbacks).
func receiptTimed(rows []noteRow) []noteRow {
	var out []noteRow
	for _, r := range rows {
		if r.n.TimeFromReceipt {
			out = append(out, r)
		}
	}
	return out
}

// rounds splits rows, sorted so that the rows of one merged row (one
// command, one device) stand together, so that no merged row appears twice
// in a round: one INSERT ... ON CONFLICT DO UPDATE may not touch a row
// twice. Round k holds the k-th row of every merged row that has k or more.
// The merge rules are order-independent, so how rows are spread over rounds
// does not change the result, and it stays decided in SQL (fold only joins
// rows where Go decides as the SQL does).
func rounds[T any](rows []T, same func(a, b *T) bool) [][]T {
	var out [][]T
	run := 0
	for i := range rows {
		if i > 0 && same(&rows[i], &rows[i-1]) {
			run++
		} else {
			run = 0
		}
		if run == len(out) {
			out = append(out, make([]T, 0, len(rows)/(run+1)))
		}
		out[run] = append(out[run], rows[i])
	}
	return out
}

func newDeadRow(source string, d *ingest.DeadLetter) deadRow {
	body := d.Body
	if body == nil {
		body = []byte{} // NOT NULL: an empty body is still a body
	}
	r := deadRow{source: storable(source), class: string(d.Class), reason: storable(d.Reason),
		body: body, length: int64(len(body)), sum: d.SHA256, properties: propertiesJSON(d.Properties)}
	if d.Length > 0 {
		r.length = int64(d.Length)
	}
	if r.sum == nil {
		sum := sha256.Sum256(body)
		r.sum = sum[:]
	}
	return r
}

// propertiesJSON renders message properties so that PostgreSQL accepts them
// whatever a sender put there.
func propertiesJSON(p map[string]string) json.RawMessage {
	if len(p) == 0 {
		return nil
	}
	clean := make(map[string]string, len(p))
	for k, v := range p {
		clean[storable(k)] = storable(v)
	}
	out, _ := json.Marshal(clean) // a map of strings always marshals
	return out
}

// storable makes s valid UTF-8 without NUL, the only text PostgreSQL takes.
func storable(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
