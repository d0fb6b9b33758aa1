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
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cmdtrack/cmdtrack/notification"
)

// Item is the effect of one received message: a notification to merge into
// its command's row and history, or a dead letter.
type Item struct {
	// Source names where the message came from ("amqp:DefaultQueue", "http").
	Source       string
	Notification *notification.Notification
	DeadLetter   *DeadLetter
}

// DeadLetter is a message cmdtrack could not use, kept whole for replay.
type DeadLetter struct {
	Class      notification.Class
	Reason     string
	Body       []byte
	Properties map[string]string
}

// Apply writes the effect of items in one transaction: history rows, the
// merged command rows and dead letters. When it returns nil, everything is
// committed and the messages may be settled.
//
// A value PostgreSQL rejects (a data error) must not hold back the rest of a
// batch, so Apply splits the batch until the offending item stands alone and
// dead-letters it with PostgreSQL's reason; such items are changed in place.
// Any other error is returned for the caller to retry: applying the same
// items again is harmless. ctx bounds the whole call.
func (s *Store) Apply(ctx context.Context, items []Item) error {
	if len(items) == 0 {
		return nil
	}
	err := s.applyOnce(ctx, items)
	if err == nil || !IsDataError(err) {
		return err
	}
	if len(items) == 1 {
		it := &items[0]
		if it.DeadLetter != nil {
			// A dead letter is built to be storable; if it is not, retrying
			// forever would wedge the stream, so say so loudly instead.
			return fmt.Errorf("store dead letter: %w", err)
		}
		it.DeadLetter = &DeadLetter{
			Class:  notification.ClassRejected,
			Reason: "PostgreSQL rejected the notification: " + err.Error(),
			Body:   it.Notification.Payload,
		}
		it.Notification = nil
		return s.applyOnce(ctx, items)
	}
	mid := len(items) / 2
	if err := s.Apply(ctx, items[:mid]); err != nil {
		return err
	}
	return s.Apply(ctx, items[mid:])
}

func (s *Store) applyOnce(ctx context.Context, items []Item) error {
	b := &pgx.Batch{}
	queueWrites(b, items)
	// pgx sends the batch in one round trip and runs it as one implicit
	// transaction: all of it commits or none of it does.
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("apply batch of %d: %w", len(items), err)
	}
	return nil
}

// queueWrites queues the statements that store items. Every statement takes
// its rows in a fixed order (command_id, then key), so that two workers
// writing overlapping batches lock rows in the same order and cannot deadlock.
func queueWrites(b *pgx.Batch, items []Item) {
	var notes []*notification.Notification
	var sources []string
	var dead []*Item
	for i := range items {
		switch it := &items[i]; {
		case it.Notification != nil:
			notes = append(notes, it.Notification)
			sources = append(sources, it.Source)
		case it.DeadLetter != nil:
			dead = append(dead, it)
		}
	}
	if len(notes) > 0 {
		rows := newNoteRows(notes, sources)
		queueEvents(b, rows)
		for _, round := range rows.rounds() {
			queueUpsert(b, round)
		}
	}
	if len(dead) > 0 {
		queueDeadLetters(b, dead)
	}
}

// noteRow is a notification with what the statements need precomputed.
type noteRow struct {
	n      *notification.Notification
	source string
	key    []byte
}

type noteRows []noteRow

func newNoteRows(notes []*notification.Notification, sources []string) noteRows {
	rows := make(noteRows, len(notes))
	for i, n := range notes {
		rows[i] = noteRow{n: n, source: sources[i], key: n.Key()}
	}
	slices.SortFunc(rows, func(a, b noteRow) int {
		return cmp.Or(strings.Compare(a.n.CommandID, b.n.CommandID), bytes.Compare(a.key, b.key))
	})
	return rows
}

// rounds splits sorted rows so that no command appears twice in a round: one
// INSERT ... ON CONFLICT DO UPDATE may not touch a row twice. Round k holds
// the k-th notification of every command that has k or more. The merge rule
// is order-independent, so how notifications are spread over rounds does not
// change the result, and it stays implemented once, in SQL.
func (rows noteRows) rounds() []noteRows {
	var out []noteRows
	run := 0
	for i := range rows {
		if i > 0 && rows[i].n.CommandID == rows[i-1].n.CommandID {
			run++
		} else {
			run = 0
		}
		if run == len(out) {
			out = append(out, make(noteRows, 0, len(rows)/(run+1)))
		}
		out[run] = append(out[run], rows[i])
	}
	return out
}

const insertEvents = `
INSERT INTO device_command_events (command_id, event_key, status, event_time, request_id, source, payload)
SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::jsonb[])
ORDER BY 1, 2
ON CONFLICT (command_id, event_key) DO NOTHING`

func queueEvents(b *pgx.Batch, rows noteRows) {
	n := len(rows)
	var (
		ids      = make([]string, n)
		keys     = make([][]byte, n)
		statuses = make([]string, n)
		times    = make([]time.Time, n)
		reqs     = make([]pgtype.Text, n)
		sources  = make([]string, n)
		payloads = make([]json.RawMessage, n)
	)
	for i, r := range rows {
		ids[i], keys[i], statuses[i], times[i] = r.n.CommandID, r.key, string(r.n.Status), r.n.EventTime
		reqs[i], sources[i], payloads[i] = text(r.n.RequestID), r.source, r.n.Payload
	}
	b.Queue(insertEvents, ids, keys, statuses, times, reqs, sources, payloads)
}

// upsertCommands is the merge rule (README, "The merge rule"):
//   - the notification with the greater (status_rank, event time, key) wins
//     and sets status, result, last_event_time and last_request_id;
//   - facts (header fields, tags, the four lifecycle times) keep any known
//     value; LEAST ignores NULLs, and if two notifications ever disagree the
//     smallest (earliest) value stays.
//
// Both parts are commutative, associative and idempotent, so the row is the
// same for any arrival order and any number of duplicates. The WHERE clause
// skips no-op updates so that duplicates do not churn the table.
const upsertCommands = `
INSERT INTO device_commands AS d (
	command_id, device_id, product_id, app_id, gateway_id, node_id, tags,
	created_time, sent_time, delivered_time, response_time,
	status, status_rank, result, last_event_time, last_event_key, last_request_id,
	service_id, command_name, paras, send_strategy, expire_time)
SELECT u.command_id, u.device_id, u.product_id, u.app_id, u.gateway_id, u.node_id, u.tags,
	u.created_time, u.sent_time, u.delivered_time, u.response_time, u.status, u.status_rank, u.result,
	-- A notification timed by its receipt (legacy callbacks) keeps the time
	-- it was first received, which its history row (written just before, in
	-- this transaction) holds: a redelivery must not win the merge again.
	CASE WHEN u.from_receipt THEN coalesce((SELECT e.event_time FROM device_command_events e
		WHERE e.command_id = u.command_id AND e.event_key = u.last_event_key), u.last_event_time)
	ELSE u.last_event_time END,
	u.last_event_key, u.last_request_id, u.service_id, u.command_name, u.paras, u.send_strategy, u.expire_time
FROM unnest(
	$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[],
	$8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[],
	$12::text[], $13::int2[], $14::jsonb[], $15::timestamptz[], $16::bytea[], $17::text[],
	$18::text[], $19::text[], $20::jsonb[], $21::text[], $22::int4[], $23::bool[])
	AS u(command_id, device_id, product_id, app_id, gateway_id, node_id, tags,
	     created_time, sent_time, delivered_time, response_time, status, status_rank, result,
	     last_event_time, last_event_key, last_request_id, service_id, command_name, paras, send_strategy, expire_time,
	     from_receipt)
ORDER BY 1
ON CONFLICT (command_id) DO UPDATE SET
	device_id      = LEAST(d.device_id, EXCLUDED.device_id),
	product_id     = LEAST(d.product_id, EXCLUDED.product_id),
	app_id         = LEAST(d.app_id, EXCLUDED.app_id),
	gateway_id     = LEAST(d.gateway_id, EXCLUDED.gateway_id),
	node_id        = LEAST(d.node_id, EXCLUDED.node_id),
	tags           = LEAST(d.tags, EXCLUDED.tags),
	created_time   = LEAST(d.created_time, EXCLUDED.created_time),
	sent_time      = LEAST(d.sent_time, EXCLUDED.sent_time),
	delivered_time = LEAST(d.delivered_time, EXCLUDED.delivered_time),
	response_time  = LEAST(d.response_time, EXCLUDED.response_time),
	service_id     = LEAST(d.service_id, EXCLUDED.service_id),
	command_name   = LEAST(d.command_name, EXCLUDED.command_name),
	paras          = LEAST(d.paras, EXCLUDED.paras),
	send_strategy  = LEAST(d.send_strategy, EXCLUDED.send_strategy),
	expire_time    = LEAST(d.expire_time, EXCLUDED.expire_time),
	status          = CASE WHEN ` + wins + ` THEN EXCLUDED.status ELSE d.status END,
	status_rank     = CASE WHEN ` + wins + ` THEN EXCLUDED.status_rank ELSE d.status_rank END,
	result          = CASE WHEN ` + wins + ` THEN EXCLUDED.result ELSE d.result END,
	last_event_time = CASE WHEN ` + wins + ` THEN EXCLUDED.last_event_time ELSE d.last_event_time END,
	last_request_id = CASE WHEN ` + wins + ` THEN EXCLUDED.last_request_id ELSE d.last_request_id END,
	last_event_key  = CASE WHEN ` + wins + ` THEN EXCLUDED.last_event_key ELSE d.last_event_key END,
	updated_at      = now()
WHERE ` + wins + `
	OR (d.device_id, d.product_id, d.app_id, d.gateway_id, d.node_id, d.tags,
	    d.created_time, d.sent_time, d.delivered_time, d.response_time,
	    d.service_id, d.command_name, d.paras, d.send_strategy, d.expire_time)
	IS DISTINCT FROM
	   (LEAST(d.device_id, EXCLUDED.device_id), LEAST(d.product_id, EXCLUDED.product_id),
	    LEAST(d.app_id, EXCLUDED.app_id), LEAST(d.gateway_id, EXCLUDED.gateway_id),
	    LEAST(d.node_id, EXCLUDED.node_id), LEAST(d.tags, EXCLUDED.tags),
	    LEAST(d.created_time, EXCLUDED.created_time), LEAST(d.sent_time, EXCLUDED.sent_time),
	    LEAST(d.delivered_time, EXCLUDED.delivered_time), LEAST(d.response_time, EXCLUDED.response_time),
	    LEAST(d.service_id, EXCLUDED.service_id), LEAST(d.command_name, EXCLUDED.command_name),
	    LEAST(d.paras, EXCLUDED.paras), LEAST(d.send_strategy, EXCLUDED.send_strategy),
	    LEAST(d.expire_time, EXCLUDED.expire_time))`

const wins = `(EXCLUDED.status_rank, EXCLUDED.last_event_time, EXCLUDED.last_event_key) > (d.status_rank, d.last_event_time, d.last_event_key)`

func queueUpsert(b *pgx.Batch, rows noteRows) {
	n := len(rows)
	var (
		ids                                 = make([]string, n)
		devices, products, apps, gws, nodes = make([]pgtype.Text, n), make([]pgtype.Text, n), make([]pgtype.Text, n), make([]pgtype.Text, n), make([]pgtype.Text, n)
		tags, results                       = make([]json.RawMessage, n), make([]json.RawMessage, n)
		created, sent, delivered, responded = make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
		statuses                            = make([]string, n)
		ranks                               = make([]int16, n)
		eventTimes                          = make([]time.Time, n)
		keys                                = make([][]byte, n)
		reqs                                = make([]pgtype.Text, n)
		services, names, strategies         = make([]pgtype.Text, n), make([]pgtype.Text, n), make([]pgtype.Text, n)
		paras                               = make([]json.RawMessage, n)
		expires                             = make([]pgtype.Int4, n)
		fromReceipt                         = make([]bool, n)
	)
	for i, r := range rows {
		x := r.n
		ids[i] = x.CommandID
		devices[i], products[i], apps[i], gws[i], nodes[i] = text(x.DeviceID), text(x.ProductID), text(x.AppID), text(x.GatewayID), text(x.NodeID)
		tags[i], results[i] = x.Tags, x.Result
		created[i], sent[i], delivered[i], responded[i] = tstz(x.CreatedTime), tstz(x.SentTime), tstz(x.DeliveredTime), tstz(x.ResponseTime)
		statuses[i], ranks[i], eventTimes[i], keys[i], reqs[i] = string(x.Status), x.Rank(), x.EventTime, r.key, text(x.RequestID)
		fromReceipt[i] = x.TimeFromReceipt
		if c := x.Creation; c != nil {
			services[i], names[i], strategies[i], paras[i] = text(c.ServiceID), text(c.CommandName), text(c.SendStrategy), c.Paras
			if c.ExpireTime != nil {
				expires[i] = pgtype.Int4{Int32: int32(*c.ExpireTime), Valid: true}
			}
		}
	}
	b.Queue(upsertCommands, ids, devices, products, apps, gws, nodes, tags,
		created, sent, delivered, responded, statuses, ranks, results, eventTimes, keys, reqs,
		services, names, paras, strategies, expires, fromReceipt)
}

const insertDeadLetters = `
INSERT INTO dead_letters (source, reason_class, reason, body, body_sha256, properties)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bytea[], $6::jsonb[])
ORDER BY 5
ON CONFLICT (body_sha256) DO NOTHING`

func queueDeadLetters(b *pgx.Batch, items []*Item) {
	n := len(items)
	var (
		sources = make([]string, n)
		classes = make([]string, n)
		reasons = make([]string, n)
		bodies  = make([][]byte, n)
		sums    = make([][]byte, n)
		props   = make([]json.RawMessage, n)
	)
	for i, it := range items {
		d := it.DeadLetter
		if d.Body == nil {
			d.Body = []byte{} // NOT NULL: an empty body is still a body
		}
		sum := sha256.Sum256(d.Body)
		sources[i], classes[i], reasons[i] = storable(it.Source), string(d.Class), storable(d.Reason)
		bodies[i], sums[i], props[i] = d.Body, sum[:], propertiesJSON(d.Properties)
	}
	b.Queue(insertDeadLetters, sources, classes, reasons, bodies, sums, props)
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

func text(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

func tstz(t time.Time) pgtype.Timestamptz {
	return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()}
}
