package console

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Every query here reads through an index bounded by the page's own limits
// (a page of rows, a command's own times, the rollup's days), so that no
// page costs more with 10 million commands than with a thousand:
// `make bench/scale` times each page and shows its plans.

// statuses are the lifecycle's statuses, in order.
var statuses = []string{"PENDING", "SENT", "DELIVERED", "SUCCESSFUL", "FAILED", "TIMEOUT", "EXPIRED", "CANCELED"}

// timelineMargin widens a command's timeline query beyond the command's own
// times (created, sent, delivered, responded, last event, first seen and
// last written). A notification's event time is one of those times or lies
// between them (a late one of a lower rank carries its own earlier time),
// but for a legacy callback, timed by its receipt, which may come later
// without changing the row: a day covers those. The history is partitioned
// by event time, and the bound lets PostgreSQL read only the partitions of
// those days rather than every partition retention keeps.
const timelineMargin = 24 * time.Hour

// deviceSample is how many of a device's newest commands its page counts.
const deviceSample = 1000

// pageSize is the rows on one page of a list.
const pageSize = 50

// stuckQuiet is how long a command has not moved before the overview and
// /stuck call it stuck, unless ?quiet= says otherwise.
const stuckQuiet = 10 * time.Minute

// errNotFound is an unknown command, device or dead letter: a 404 page.
var errNotFound = errors.New("not found")

// Command is a row of device_commands with the durations between its stages.
type Command struct {
	CommandID     string          `json:"command_id"`
	DeviceID      string          `json:"device_id"`
	ProductID     string          `json:"product_id"`
	AppID         string          `json:"app_id"`
	GatewayID     string          `json:"gateway_id"`
	NodeID        string          `json:"node_id"`
	Tags          json.RawMessage `json:"tags"`
	Status        string          `json:"status"`
	CreatedTime   *time.Time      `json:"created_time"`
	SentTime      *time.Time      `json:"sent_time"`
	DeliveredTime *time.Time      `json:"delivered_time"`
	ResponseTime  *time.Time      `json:"response_time"`
	Result        json.RawMessage `json:"result"`
	LastEventTime time.Time       `json:"last_event_time"`
	LastRequestID string          `json:"last_request_id"`
	FirstSeenAt   time.Time       `json:"first_seen_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
	// What `cmdtrack send` recorded; empty for commands sent otherwise.
	ServiceID    string          `json:"service_id"`
	CommandName  string          `json:"command_name"`
	Paras        json.RawMessage `json:"paras"`
	SendStrategy string          `json:"send_strategy"`
	ExpireTime   *int32          `json:"expire_time"`
	// Durations between the stages, in milliseconds; null where a stage
	// time is missing.
	QueuedForMS    *int64 `json:"queued_for_ms"`
	DeliveryTookMS *int64 `json:"delivery_took_ms"`
	DeviceTookMS   *int64 `json:"device_took_ms"`
	TotalMS        *int64 `json:"total_ms"`
}

// Sent reports whether `cmdtrack send` recorded the command.
func (c *Command) Sent() bool { return c.ServiceID != "" || c.CommandName != "" || c.Paras != nil }

func msBetween(a, b *time.Time) *int64 {
	if a == nil || b == nil {
		return nil
	}
	ms := b.Sub(*a).Milliseconds()
	return &ms
}

func (c *Command) durations() {
	c.QueuedForMS = msBetween(c.CreatedTime, c.SentTime)
	c.DeliveryTookMS = msBetween(c.SentTime, c.DeliveredTime)
	c.DeviceTookMS = msBetween(c.DeliveredTime, c.ResponseTime)
	end := c.ResponseTime
	if end == nil {
		end = &c.LastEventTime
	}
	c.TotalMS = msBetween(c.CreatedTime, end)
}

const commandColumns = `command_id, coalesce(device_id, ''), coalesce(product_id, ''), coalesce(app_id, ''),
	coalesce(gateway_id, ''), coalesce(node_id, ''), tags, status, created_time, sent_time, delivered_time,
	response_time, result, last_event_time, coalesce(last_request_id, ''), first_seen_at, updated_at,
	coalesce(service_id, ''), coalesce(command_name, ''), paras, coalesce(send_strategy, ''), expire_time`

func scanCommand(row pgx.Row) (*Command, error) {
	var c Command
	err := row.Scan(&c.CommandID, &c.DeviceID, &c.ProductID, &c.AppID, &c.GatewayID, &c.NodeID, &c.Tags, &c.Status,
		&c.CreatedTime, &c.SentTime, &c.DeliveredTime, &c.ResponseTime, &c.Result, &c.LastEventTime, &c.LastRequestID,
		&c.FirstSeenAt, &c.UpdatedAt, &c.ServiceID, &c.CommandName, &c.Paras, &c.SendStrategy, &c.ExpireTime)
	if err != nil {
		return nil, err
	}
	c.durations()
	return &c, nil
}

// timelinePage is how many notifications one page of a command's timeline
// shows; the page links to the next.
const timelinePage = 50

// payloadPreview is how many characters of each payload the timeline shows;
// the whole payload is a link away. A page of them stays under about half a
// megabyte whatever the payloads hold (html/template writes " as &#34;).
const payloadPreview = 2048

// Event is one notification in a command's history.
type Event struct {
	EventTime time.Time `json:"event_time"`
	Status    string    `json:"status"`
	Source    string    `json:"source"`
	RequestID string    `json:"request_id"`
	// ReceivedAt is when cmdtrack first stored it.
	ReceivedAt time.Time `json:"received_at"`
	// SincePreviousMS is the time since the event before it; null for the
	// first.
	SincePreviousMS *int64 `json:"since_previous_ms"`
	// EventKey (hex) tells the command's notifications apart.
	EventKey string `json:"event_key"`
	// Payload is the notification byte for byte as received: its first
	// payloadPreview characters when PayloadTruncated. PayloadURL serves
	// it whole, PayloadBytes long.
	Payload          string `json:"payload"`
	PayloadBytes     int64  `json:"payload_bytes"`
	PayloadTruncated bool   `json:"payload_truncated"`
	PayloadURL       string `json:"payload_url"`
}

// TimelineCursor is where a page of a timeline continues: after this
// notification, in the timeline's order.
type TimelineCursor struct {
	EventTime  time.Time
	ReceivedAt time.Time
	Key        []byte
}

// query is the cursor as a command page's query string.
func (c *TimelineCursor) query(all bool) string {
	v := url.Values{}
	if all {
		v.Set("history", "all")
	}
	v.Set("after", c.EventTime.UTC().Format(time.RFC3339Nano))
	v.Set("after_received", c.ReceivedAt.UTC().Format(time.RFC3339Nano))
	v.Set("after_key", hex.EncodeToString(c.Key))
	return v.Encode()
}

// CommandPage is /commands/{id}.
type CommandPage struct {
	Command *Command `json:"command"`
	// Timeline holds a page of the command's notifications in event order,
	// from TimelineFrom to TimelineUntil (all of the history when
	// TimelineAll); Next is the query string of the next page, empty on
	// the last. Continued: this page is not the first.
	Timeline []Event `json:"timeline"`
	Next     string  `json:"next"`
	// Presence is its device's last known status; null when cmdtrack has
	// heard of no status change of that device.
	Presence      *Presence  `json:"presence"`
	TimelineFrom  *time.Time `json:"timeline_from"`
	TimelineUntil *time.Time `json:"timeline_until"`
	TimelineAll   bool       `json:"timeline_all"`
	Continued     bool       `json:"continued"`
}

// timelineBounds are the event times a command's notifications can carry:
// its own times, widened by timelineMargin on each side.
func timelineBounds(c *Command) (from, until time.Time) {
	from, until = c.FirstSeenAt, c.UpdatedAt
	for _, t := range []*time.Time{c.CreatedTime, c.SentTime, c.DeliveredTime, c.ResponseTime, &c.LastEventTime, &c.FirstSeenAt} {
		if t == nil {
			continue
		}
		if t.Before(from) {
			from = *t
		}
		if t.After(until) {
			until = *t
		}
	}
	return from.Add(-timelineMargin), until.Add(timelineMargin)
}

func loadCommand(ctx context.Context, db *pgxpool.Pool, id string, all bool, after *TimelineCursor) (*CommandPage, error) {
	c, err := scanCommand(db.QueryRow(ctx, `SELECT `+commandColumns+` FROM device_commands WHERE command_id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read command: %w", err)
	}
	p := &CommandPage{Command: c, TimelineAll: all, Continued: after != nil}
	if p.Presence, err = loadPresence(ctx, db, c.DeviceID); err != nil {
		return nil, err
	}
	// A page of keys first, in order, without the payloads; then the first
	// characters of those payloads alone, so that neither PostgreSQL nor the
	// console reads more of them than a page shows.
	var where []string
	args := []any{id}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if !all {
		from, until := timelineBounds(c)
		p.TimelineFrom, p.TimelineUntil = &from, &until
		// Bounds on the partition key: only the partitions of these days
		// are read.
		where = append(where, ` AND event_time >= `+arg(from)+` AND event_time <= `+arg(until))
	}
	if after != nil {
		where = append(where, ` AND (event_time, received_at, event_key) > (`+arg(after.EventTime)+`, `+arg(after.ReceivedAt)+`, `+arg(after.Key)+`)`)
	}
	q := `SELECT k.event_time, k.status, k.source, coalesce(k.request_id, ''), k.received_at, k.event_key,
			left(e.payload, ` + strconv.Itoa(payloadPreview) + `), octet_length(e.payload)
		FROM (SELECT event_time, status, source, request_id, received_at, event_key FROM device_command_events
			WHERE command_id = $1` + strings.Join(where, "") + `
			ORDER BY event_time, received_at, event_key LIMIT ` + strconv.Itoa(timelinePage+1) + `) k
		JOIN device_command_events e ON e.command_id = $1 AND e.event_key = k.event_key AND e.event_time = k.event_time
		ORDER BY k.event_time, k.received_at, k.event_key`
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read timeline: %w", err)
	}
	p.Timeline, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
		var e Event
		var key []byte
		err := r.Scan(&e.EventTime, &e.Status, &e.Source, &e.RequestID, &e.ReceivedAt, &key, &e.Payload, &e.PayloadBytes)
		e.EventKey = hex.EncodeToString(key)
		e.PayloadTruncated = int64(len(e.Payload)) < e.PayloadBytes
		e.PayloadURL = "/commands/" + url.PathEscape(id) + "/payload/" + e.EventKey + "?" +
			url.Values{"at": {e.EventTime.UTC().Format(time.RFC3339Nano)}}.Encode()
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("read timeline: %w", err)
	}
	if len(p.Timeline) > timelinePage {
		p.Timeline = p.Timeline[:timelinePage]
		last := p.Timeline[timelinePage-1]
		key, _ := hex.DecodeString(last.EventKey)
		p.Next = (&TimelineCursor{EventTime: last.EventTime, ReceivedAt: last.ReceivedAt, Key: key}).query(all)
	}
	var prev *time.Time
	if after != nil {
		prev = &after.EventTime
	}
	for i := range p.Timeline {
		if prev != nil {
			ms := p.Timeline[i].EventTime.Sub(*prev).Milliseconds()
			p.Timeline[i].SincePreviousMS = &ms
		}
		prev = &p.Timeline[i].EventTime
	}
	if p.Timeline == nil {
		p.Timeline = []Event{}
	}
	return p, nil
}

// payloadChunk is how many characters of a payload are read at a time.
const payloadChunk = 64 << 10

// writePayload writes a notification's payload, byte for byte, in chunks
// read in one read-only transaction, so that its size bounds neither the
// console's memory nor the time before the first byte. start is called
// once the payload is found, with its length in bytes, and returns where to
// write it; an error before start is the caller's to answer.
func writePayload(ctx context.Context, db *pgxpool.Pool, id string, key []byte, at time.Time, start func(size int64) io.Writer) (started bool, err error) {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return false, fmt.Errorf("read payload: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	const where = ` FROM device_command_events WHERE command_id = $1 AND event_key = $2 AND event_time = $3`
	var chars, size int64
	err = tx.QueryRow(ctx, `SELECT length(payload), octet_length(payload)`+where, id, key, at).Scan(&chars, &size)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, errNotFound
	}
	if err != nil {
		return false, fmt.Errorf("read payload: %w", err)
	}
	w := start(size)
	var chunk []byte
	for pos := int64(1); pos <= chars; pos += payloadChunk {
		if err := tx.QueryRow(ctx, `SELECT substr(payload, $4, $5)`+where, id, key, at, pos, payloadChunk).Scan(&chunk); err != nil {
			return true, fmt.Errorf("read payload: %w", err)
		}
		if _, err := w.Write(chunk); err != nil {
			return true, err
		}
	}
	return true, nil
}

// CommandSummary is a command in a list.
type CommandSummary struct {
	CommandID     string     `json:"command_id"`
	DeviceID      string     `json:"device_id"`
	ProductID     string     `json:"product_id"`
	Status        string     `json:"status"`
	CreatedTime   *time.Time `json:"created_time"`
	FirstSeenAt   time.Time  `json:"first_seen_at"`
	LastEventTime time.Time  `json:"last_event_time"`
	// TotalMS is from creation to the response (or the last event).
	TotalMS *int64 `json:"total_ms"`
	// Key is the time the list is ordered by: created_time, or first_seen_at
	// without one.
	Key time.Time `json:"key"`
}

// CommandFilter is /commands' query string.
type CommandFilter struct {
	Device  string     `json:"device,omitempty"`
	Product string     `json:"product,omitempty"`
	Status  string     `json:"status,omitempty"`
	Since   *time.Time `json:"since,omitempty"`
	Until   *time.Time `json:"until,omitempty"`
	// Before and BeforeID are the keyset cursor: rows strictly after it in
	// the list's order (newest first).
	Before   *time.Time `json:"before,omitempty"`
	BeforeID string     `json:"before_id,omitempty"`
}

// CommandsPage is /commands.
type CommandsPage struct {
	Filter   CommandFilter    `json:"filter"`
	Commands []CommandSummary `json:"commands"`
	// Next is the query string of the next page; empty on the last.
	Next string `json:"next"`
}

const summaryColumns = `command_id, coalesce(device_id, ''), coalesce(product_id, ''), status, created_time,
	first_seen_at, last_event_time, response_time, coalesce(created_time, first_seen_at)`

func scanSummaries(rows pgx.Rows) ([]CommandSummary, error) {
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (CommandSummary, error) {
		var s CommandSummary
		var resp *time.Time
		err := r.Scan(&s.CommandID, &s.DeviceID, &s.ProductID, &s.Status, &s.CreatedTime, &s.FirstSeenAt,
			&s.LastEventTime, &resp, &s.Key)
		if resp == nil {
			resp = &s.LastEventTime
		}
		s.TotalMS = msBetween(s.CreatedTime, resp)
		return s, err
	})
	if out == nil {
		out = []CommandSummary{}
	}
	return out, err
}

// listStatement is one page of a list: pageSize+1 rows, so that the caller
// knows whether there is a next page.
type listStatement struct {
	sql  string
	args []any
	// inOrder: run it with inOrderOnly, so that the planner takes the index
	// that gives the statement's order, the only plan without a sort.
	inOrder bool
}

// inOrderOnly leaves a filtered list one plan that needs no sort: the scan of
// the index whose leading columns are the filter's and which then holds the
// list's order, stopping at the page. Without it the planner may prefer
// another index that gives the order with a filter (the day index, or the
// status index for a product and a status), estimating from the filter's
// share of the table that a page comes after a few hundred rows, which is
// wrong when the matching rows are old or the pair is rare: every row
// newer than them is read. A sort over the filter's rows is no better.
const inOrderOnly = `SELECT set_config('enable_sort', 'off', true), set_config('enable_incremental_sort', 'off', true)`

// listColumns are summaryColumns, named so that merged pages are read by
// name.
const listColumns = `command_id, coalesce(device_id, '') AS device, coalesce(product_id, '') AS product, status,
	created_time, first_seen_at, last_event_time, response_time, coalesce(created_time, first_seen_at) AS list_key`

// commandsQuery is the statement of one page of /commands.
//
// The list is newest first by a command's day key, with command_id as the
// tie-break; the cursor is the last row's key and id (keyset: a page costs
// the same however deep it is). Each filter has an index that begins with
// its columns and then holds that order: (device, status, day),
// (product, status, day), (status, day) (migrations 008 and 012), and the
// day index without a filter. The filter's first column is compared with
// ANY and leads the ORDER BY: an equality would make it a constant to the
// planner and every index holding the day order after it would do; this
// way only the intended one gives the order without a sort (a device's
// product, the one filter left out of its index, is checked on the
// device's rows). A device or a product without a status is read as eight
// pages, one per status, each the head of its index range, merged as
// they come: about a page of rows, where one scan of the device's or the
// product's commands would read all of them.
func commandsQuery(f CommandFilter) listStatement {
	const key = `coalesce(created_time, first_seen_at)`
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
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
	case f.Status != "":
		lead = "status"
	}
	if f.Status != "" {
		if lead == "status" {
			where = append(where, "status = ANY("+arg([]string{f.Status})+"::text[])")
		} else {
			where = append(where, "status = "+arg(f.Status))
		}
	}
	if f.Since != nil {
		where = append(where, key+" >= "+arg(*f.Since))
	}
	if f.Until != nil {
		where = append(where, key+" < "+arg(*f.Until))
	}
	if f.Before != nil {
		b := arg(*f.Before)
		// The first bound is the one the day index can use; the others
		// take the row comparison whole.
		where = append(where, key+" <= "+b, "("+key+", command_id) < ("+b+", "+arg(f.BeforeID)+")")
	}
	limit := " LIMIT " + strconv.Itoa(pageSize+1)
	order := key + " DESC, command_id DESC"
	if lead != "" {
		order = lead + " DESC, " + order
	}
	page := func(where []string, columns string) string {
		q := `SELECT ` + columns + ` FROM device_commands`
		if len(where) > 0 {
			q += " WHERE " + strings.Join(where, " AND ")
		}
		return q + " ORDER BY " + order + limit
	}
	if lead == "" {
		// The day index, in order but for ties of the key (an incremental
		// sort of those): no other index can serve it, so no setting.
		return listStatement{sql: page(where, summaryColumns), args: args}
	}
	if f.Status != "" {
		return listStatement{sql: page(where, summaryColumns), args: args, inOrder: true}
	}
	// statuses are every status a command can have: a notification with
	// another is a dead letter (notification.ClassUnknownStatus). They are
	// written into the statement, not passed, so that even a generic plan
	// knows each branch's status.
	branches := make([]string, len(statuses))
	for i, s := range statuses {
		branches[i] = "(" + page(append(slices.Clip(where), "status = '"+s+"'"), listColumns+", "+lead+" AS lead") + ")"
	}
	return listStatement{
		sql: `SELECT command_id, device, product, status, created_time, first_seen_at, last_event_time, response_time, list_key
			FROM (` + strings.Join(branches, "\nUNION ALL ") + `) c ORDER BY lead DESC, list_key DESC, command_id DESC` + limit,
		args:    args,
		inOrder: true,
	}
}

// queryList runs a list's statement and reads its rows with scan.
func queryList[T any](ctx context.Context, db *pgxpool.Pool, st listStatement, scan func(pgx.Rows) (T, error)) (T, error) {
	if !st.inOrder {
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
		if _, err := tx.Exec(ctx, inOrderOnly); err != nil {
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

func listCommands(ctx context.Context, db *pgxpool.Pool, f CommandFilter) (*CommandsPage, error) {
	list, err := queryList(ctx, db, commandsQuery(f), scanSummaries)
	if err != nil {
		return nil, fmt.Errorf("list commands: %w", err)
	}
	p := &CommandsPage{Filter: f, Commands: list}
	if len(list) > pageSize {
		p.Commands = list[:pageSize]
		last := p.Commands[pageSize-1]
		next := f
		next.Before, next.BeforeID = &last.Key, last.CommandID
		p.Next = next.query()
	}
	return p, nil
}

// StatusCount is a number of commands in one status.
type StatusCount struct {
	Status   string `json:"status"`
	Commands int64  `json:"commands"`
}

// Rates are a set of commands' outcome counts and rates (0 to 1, of all the
// commands counted, final or not).
type Rates struct {
	Commands    int64   `json:"commands"`
	Successful  int64   `json:"successful"`
	Failed      int64   `json:"failed"`
	TimedOut    int64   `json:"timed_out"`
	SuccessRate float64 `json:"success_rate"`
	FailureRate float64 `json:"failure_rate"`
	TimeoutRate float64 `json:"timeout_rate"`
}

func (r *Rates) add(status string, n int64) {
	r.Commands += n
	switch status {
	case "SUCCESSFUL":
		r.Successful += n
	case "FAILED":
		r.Failed += n
	case "TIMEOUT":
		r.TimedOut += n
	}
	r.SuccessRate, r.FailureRate, r.TimeoutRate = ratio(r.Successful, r.Commands), ratio(r.Failed, r.Commands), ratio(r.TimedOut, r.Commands)
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// ProductRates are one product's rates.
type ProductRates struct {
	ProductID string `json:"product_id"`
	Rates
}

// Window is the overview of the commands created in a sliding window, to
// the hour: From is the start of the hour it begins with (UTC).
type Window struct {
	Name     string         `json:"name"`
	From     time.Time      `json:"from"`
	Statuses []StatusCount  `json:"statuses"`
	Total    Rates          `json:"total"`
	Products []ProductRates `json:"products"`
}

// ClassCount is the dead letters of one reason class.
type ClassCount struct {
	Class  string    `json:"class"`
	Count  int64     `json:"count"`
	Newest time.Time `json:"newest"`
}

// QueueMark is when a queue's messages were last settled by a worker.
type QueueMark struct {
	Queue      string    `json:"queue"`
	ConsumedAt time.Time `json:"consumed_at"`
}

// Overview is /.
type Overview struct {
	Now time.Time `json:"now"`
	// Windows: "24 hours" and "7 days", sliding, to the hour (the current
	// hour and the 23 or 167 before it), from the hourly outcome rollup.
	Windows []Window `json:"windows"`
	// StuckNow counts the commands in stuck_commands quiet for more than
	// ten minutes, up to stuckCountCap (StuckCapped: at least that many).
	StuckNow    int64 `json:"stuck_now"`
	StuckCapped bool  `json:"stuck_capped"`
	// DeadLetters counts the last 7 days' dead letters by class.
	DeadLetters []ClassCount `json:"dead_letters"`
	// NewestEventTime is the latest last_event_time of any command: when the
	// newest notification that moved a command happened.
	NewestEventTime *time.Time  `json:"newest_event_time"`
	NewestEventAgeS *float64    `json:"newest_event_age_s"`
	Queues          []QueueMark `json:"queues"`
}

func loadOverview(ctx context.Context, db *pgxpool.Pool, now time.Time) (*Overview, error) {
	o := &Overview{Now: now, DeadLetters: []ClassCount{}, Queues: []QueueMark{}}
	hour := now.UTC().Truncate(time.Hour)
	week := hour.Add(-167 * time.Hour)
	rows, err := db.Query(ctx, `SELECT hour, product_id, status, commands FROM command_outcomes_hourly
		WHERE hour >= $1 ORDER BY product_id`, week)
	if err != nil {
		return nil, fmt.Errorf("read outcomes: %w", err)
	}
	type cell struct {
		hour            time.Time
		product, status string
		n               int64
	}
	cells, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cell, error) {
		var c cell
		return c, r.Scan(&c.hour, &c.product, &c.status, &c.n)
	})
	if err != nil {
		return nil, fmt.Errorf("read outcomes: %w", err)
	}
	for _, w := range []struct {
		name string
		from time.Time
	}{{"24 hours", hour.Add(-23 * time.Hour)}, {"7 days", week}} {
		win := Window{Name: w.name, From: w.from, Products: []ProductRates{}}
		byStatus := map[string]int64{}
		var products []ProductRates
		for _, c := range cells {
			if c.hour.Before(w.from) {
				continue
			}
			byStatus[c.status] += c.n
			win.Total.add(c.status, c.n)
			if len(products) == 0 || products[len(products)-1].ProductID != c.product {
				products = append(products, ProductRates{ProductID: c.product})
			}
			products[len(products)-1].add(c.status, c.n)
		}
		for _, s := range statuses {
			win.Statuses = append(win.Statuses, StatusCount{Status: s, Commands: byStatus[s]})
		}
		if products != nil {
			win.Products = products
		}
		o.Windows = append(o.Windows, win)
	}

	if o.StuckNow, o.StuckCapped, err = countStuck(ctx, db, stuckQuiet); err != nil {
		return nil, err
	}
	rows, err = db.Query(ctx, `SELECT reason_class, count(*), max(received_at) FROM dead_letters
		WHERE received_at > $1 GROUP BY 1 ORDER BY 2 DESC, 1`, now.Add(-7*24*time.Hour))
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	o.DeadLetters, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (ClassCount, error) {
		var c ClassCount
		return c, r.Scan(&c.Class, &c.Count, &c.Newest)
	})
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	// The newest of each status' newest, each the end of the status index.
	if err := db.QueryRow(ctx, `SELECT max(m) FROM unnest($1::text[]) s(status),
		LATERAL (SELECT max(last_event_time) AS m FROM device_commands c WHERE c.status = s.status) x`,
		statuses).Scan(&o.NewestEventTime); err != nil {
		return nil, fmt.Errorf("read the newest event: %w", err)
	}
	if o.NewestEventTime != nil {
		age := now.Sub(*o.NewestEventTime).Seconds()
		o.NewestEventAgeS = &age
	}
	rows, err = db.Query(ctx, `SELECT queue, consumed_at FROM queue_watermarks ORDER BY queue`)
	if err != nil {
		return nil, fmt.Errorf("read queue watermarks: %w", err)
	}
	o.Queues, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (QueueMark, error) {
		var q QueueMark
		return q, r.Scan(&q.Queue, &q.ConsumedAt)
	})
	if err != nil {
		return nil, fmt.Errorf("read queue watermarks: %w", err)
	}
	return o, nil
}

// DevicePage is /devices/{id}.
type DevicePage struct {
	DeviceID string `json:"device_id"`
	// Presence is the device's last known status; null when cmdtrack has
	// heard of no status change of it.
	Presence *Presence `json:"presence"`
	// Counted over the device's newest commands, at most Sampled of them.
	Sampled  int           `json:"sampled"`
	Rates    Rates         `json:"rates"`
	Statuses []StatusCount `json:"statuses"`
	// Commands are its newest commands, at most 50; /commands?device= has
	// them all.
	Commands []CommandSummary `json:"commands"`
	More     bool             `json:"more"`
}

func loadDevice(ctx context.Context, db *pgxpool.Pool, id string) (*DevicePage, error) {
	rows, err := db.Query(ctx, `SELECT `+summaryColumns+` FROM device_commands WHERE device_id = $1
		ORDER BY created_time DESC NULLS LAST, command_id DESC LIMIT `+strconv.Itoa(deviceSample), id)
	if err != nil {
		return nil, fmt.Errorf("read device: %w", err)
	}
	list, err := scanSummaries(rows)
	if err != nil {
		return nil, fmt.Errorf("read device: %w", err)
	}
	if len(list) == 0 {
		// A device may be known from its status changes alone.
		pr, err := loadPresence(ctx, db, id)
		if err != nil {
			return nil, err
		}
		if pr == nil {
			return nil, errNotFound
		}
		return &DevicePage{DeviceID: id, Presence: pr, Statuses: []StatusCount{}, Commands: list}, nil
	}
	// The list page orders by the day key; keep the same order here.
	slices.SortStableFunc(list, func(a, b CommandSummary) int {
		if c := b.Key.Compare(a.Key); c != 0 {
			return c
		}
		return strings.Compare(b.CommandID, a.CommandID)
	})
	p := &DevicePage{DeviceID: id, Sampled: len(list)}
	if p.Presence, err = loadPresence(ctx, db, id); err != nil {
		return nil, err
	}
	by := map[string]int64{}
	for _, c := range list {
		p.Rates.add(c.Status, 1)
		by[c.Status]++
	}
	for _, s := range statuses {
		if by[s] > 0 {
			p.Statuses = append(p.Statuses, StatusCount{Status: s, Commands: by[s]})
		}
	}
	p.Commands = list[:min(len(list), pageSize)]
	p.More = len(list) > pageSize
	return p, nil
}

// interval is d as PostgreSQL reads an interval.
func interval(d time.Duration) string {
	return strconv.FormatInt(d.Microseconds(), 10) + " microseconds"
}

// Stuck is a command in stuck_commands.
type Stuck struct {
	CommandID     string     `json:"command_id"`
	DeviceID      string     `json:"device_id"`
	ProductID     string     `json:"product_id"`
	Status        string     `json:"status"`
	CreatedTime   *time.Time `json:"created_time"`
	LastEventTime time.Time  `json:"last_event_time"`
	StuckForS     float64    `json:"stuck_for_s"`
	// DeviceStatus is the device's presence (ONLINE, OFFLINE, ...), empty
	// when cmdtrack has heard of no status change of it.
	DeviceStatus      string     `json:"device_status,omitempty"`
	DeviceStatusSince *time.Time `json:"device_status_since,omitempty"`
}

// StuckPage is /stuck.
type StuckPage struct {
	QuietS float64 `json:"quiet_s"`
	// Count is every stuck command quiet that long; Commands the 200 stuck
	// longest.
	Count int64 `json:"count"`
	// Capped: there are at least Count (stuckCountCap) of them.
	Capped   bool    `json:"capped"`
	Commands []Stuck `json:"commands"`
}

func loadStuck(ctx context.Context, db *pgxpool.Pool, quiet time.Duration) (*StuckPage, error) {
	p := &StuckPage{QuietS: quiet.Seconds()}
	iv := interval(quiet)
	var err error
	if p.Count, p.Capped, err = countStuck(ctx, db, quiet); err != nil {
		return nil, err
	}
	// The cookbook's form: the open commands' index (migration 008) in the
	// order of their last move, quiet longest first.
	rows, err := db.Query(ctx, `SELECT command_id, coalesce(device_id, ''), coalesce(product_id, ''), status, created_time,
		last_event_time, extract(epoch FROM stuck_for)::float8, coalesce(device_status, ''), device_status_since
		FROM stuck_commands WHERE last_event_time < now() - $1::interval ORDER BY last_event_time, command_id LIMIT 200`, iv)
	if err != nil {
		return nil, fmt.Errorf("list stuck commands: %w", err)
	}
	p.Commands, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Stuck, error) {
		var s Stuck
		return s, r.Scan(&s.CommandID, &s.DeviceID, &s.ProductID, &s.Status, &s.CreatedTime, &s.LastEventTime, &s.StuckForS,
			&s.DeviceStatus, &s.DeviceStatusSince)
	})
	if err != nil {
		return nil, fmt.Errorf("list stuck commands: %w", err)
	}
	return p, nil
}

// DeadLetter is a row of dead_letters. Its body is shown as text where it is
// UTF-8 and as hex where it is not.
type DeadLetter struct {
	ID          int64           `json:"id"`
	ReceivedAt  time.Time       `json:"received_at"`
	Source      string          `json:"source"`
	ReasonClass string          `json:"reason_class"`
	Reason      string          `json:"reason"`
	BodyLength  int64           `json:"body_length"`
	BodyStored  int64           `json:"body_stored"`
	BodySHA256  string          `json:"body_sha256,omitempty"`
	Properties  json.RawMessage `json:"properties,omitempty"`
	ReplayCount int32           `json:"replay_count"`
	LastReplay  *time.Time      `json:"last_replay_at,omitempty"`
	// BodyText is the body when it is UTF-8 (on the list page, its first
	// 160 bytes); BodyHex, a hex dump, when it is not.
	BodyUTF8 bool   `json:"body_utf8"`
	BodyText string `json:"body_text,omitempty"`
	BodyHex  string `json:"body_hex,omitempty"`
}

// DeadLettersPage is /dead-letters.
type DeadLettersPage struct {
	Class       string       `json:"class,omitempty"`
	Classes     []ClassCount `json:"classes"`
	DeadLetters []DeadLetter `json:"dead_letters"`
	Next        string       `json:"next"`
}

const previewBytes = 160

// deadLettersQuery is the statement of one page of /dead-letters, newest
// first. A class has its index in that order (migration 012), the only plan
// without a sort as commandsQuery's are; without one, the index by when
// they came, with an incremental sort of the ties.
func deadLettersQuery(class string, before *time.Time, beforeID int64) listStatement {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	order := "received_at DESC, id DESC"
	if class != "" {
		where = append(where, "reason_class = ANY("+arg([]string{class})+"::text[])")
		order = "reason_class DESC, " + order
	}
	if before != nil {
		b := arg(*before)
		where = append(where, "received_at <= "+b, "(received_at, id) < ("+b+", "+arg(beforeID)+")")
	}
	q := `SELECT id, received_at, source, reason_class, reason, coalesce(body_length, length(body)), length(body),
		substring(body FROM 1 FOR ` + strconv.Itoa(previewBytes) + `), replay_count FROM dead_letters`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return listStatement{sql: q + " ORDER BY " + order + " LIMIT " + strconv.Itoa(pageSize+1), args: args, inOrder: class != ""}
}

func listDeadLetters(ctx context.Context, db *pgxpool.Pool, class string, before *time.Time, beforeID int64) (*DeadLettersPage, error) {
	p := &DeadLettersPage{Class: class}
	var err error
	p.DeadLetters, err = queryList(ctx, db, deadLettersQuery(class, before, beforeID), func(rows pgx.Rows) ([]DeadLetter, error) {
		return pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeadLetter, error) {
			var d DeadLetter
			var body []byte
			err := r.Scan(&d.ID, &d.ReceivedAt, &d.Source, &d.ReasonClass, &d.Reason, &d.BodyLength, &d.BodyStored, &body, &d.ReplayCount)
			d.setBody(body, true)
			return d, err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	if len(p.DeadLetters) > pageSize {
		p.DeadLetters = p.DeadLetters[:pageSize]
		last := p.DeadLetters[pageSize-1]
		p.Next = deadLetterQuery(class, &last.ReceivedAt, last.ID)
	}
	rows, err := db.Query(ctx, `SELECT reason_class, count(*), max(received_at) FROM dead_letters
		WHERE received_at > now() - interval '7 days' GROUP BY 1 ORDER BY 2 DESC, 1`)
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	p.Classes, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (ClassCount, error) {
		var c ClassCount
		return c, r.Scan(&c.Class, &c.Count, &c.Newest)
	})
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	return p, nil
}

func loadDeadLetter(ctx context.Context, db *pgxpool.Pool, id int64) (*DeadLetter, error) {
	var d DeadLetter
	var body, sum []byte
	err := db.QueryRow(ctx, `SELECT id, received_at, source, reason_class, reason, coalesce(body_length, length(body)),
		length(body), body, body_sha256, properties, replay_count, last_replay_at FROM dead_letters WHERE id = $1`, id).
		Scan(&d.ID, &d.ReceivedAt, &d.Source, &d.ReasonClass, &d.Reason, &d.BodyLength, &d.BodyStored, &body, &sum,
			&d.Properties, &d.ReplayCount, &d.LastReplay)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read dead letter: %w", err)
	}
	d.BodySHA256 = fmt.Sprintf("%x", sum)
	d.setBody(body, false)
	return &d, nil
}

// OutcomeDay is one product's outcomes on one day.
type OutcomeDay struct {
	Day         string  `json:"day"`
	Commands    int64   `json:"commands"`
	Successful  int64   `json:"successful"`
	Failed      int64   `json:"failed"`
	TimedOut    int64   `json:"timed_out"`
	Expired     int64   `json:"expired"`
	Canceled    int64   `json:"canceled"`
	FailureRate float64 `json:"failure_rate"`
	TimeoutRate float64 `json:"timeout_rate"`
}

// ProductOutcomes are a product's days.
type ProductOutcomes struct {
	ProductID string       `json:"product_id"`
	Days      []OutcomeDay `json:"days"`
	Chart     *Chart       `json:"-"`
}

// OutcomesPage is /outcomes.
type OutcomesPage struct {
	Product  string            `json:"product,omitempty"`
	Days     int               `json:"days"`
	FromDay  string            `json:"from_day"`
	Products []ProductOutcomes `json:"products"`
}

func loadOutcomes(ctx context.Context, db *pgxpool.Pool, product string, days int, now time.Time) (*OutcomesPage, error) {
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	from := today.AddDate(0, 0, -days+1)
	p := &OutcomesPage{Product: product, Days: days, FromDay: from.Format(time.DateOnly), Products: []ProductOutcomes{}}
	q := `SELECT coalesce(product_id, ''), day, commands, successful, failed, timed_out, expired, canceled,
		failure_rate::float8, timeout_rate::float8 FROM product_daily_outcomes WHERE day >= $1::date`
	args := []any{from}
	if product != "" {
		q += ` AND coalesce(product_id, '') = $2`
		args = append(args, product)
	}
	rows, err := db.Query(ctx, q+` ORDER BY 1, day`, args...)
	if err != nil {
		return nil, fmt.Errorf("read outcomes: %w", err)
	}
	var d OutcomeDay
	var pid string
	var day time.Time
	_, err = pgx.ForEachRow(rows, []any{&pid, &day, &d.Commands, &d.Successful, &d.Failed, &d.TimedOut, &d.Expired,
		&d.Canceled, &d.FailureRate, &d.TimeoutRate}, func() error {
		d.Day = day.Format(time.DateOnly)
		if n := len(p.Products); n == 0 || p.Products[n-1].ProductID != pid {
			p.Products = append(p.Products, ProductOutcomes{ProductID: pid})
		}
		last := &p.Products[len(p.Products)-1]
		last.Days = append(last.Days, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read outcomes: %w", err)
	}
	for i := range p.Products {
		p.Products[i].Chart = outcomeChart(p.Products[i], from, days)
	}
	return p, nil
}

// Presence is a device's last known status, from device.status
// notifications (README "Device presence").
type Presence struct {
	Status          string     `json:"status"`
	StatusSince     time.Time  `json:"status_since"`
	LastOnlineTime  *time.Time `json:"last_online_time"`
	LastOfflineTime *time.Time `json:"last_offline_time"`
}

// loadPresence reads a device's presence: nil, without an error, when none
// is stored (or the command names no device).
func loadPresence(ctx context.Context, db *pgxpool.Pool, deviceID string) (*Presence, error) {
	if deviceID == "" {
		return nil, nil
	}
	var p Presence
	err := db.QueryRow(ctx, `SELECT status, status_since, last_online_time, last_offline_time
		FROM device_presence WHERE device_id = $1`, deviceID).Scan(&p.Status, &p.StatusSince, &p.LastOnlineTime, &p.LastOfflineTime)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read device presence: %w", err)
	}
	return &p, nil
}

// stuckCountCap bounds how many stuck commands a page counts: past it, the
// page says "at least" (the metric cmdtrack_commands_stuck has the exact
// figure). Counting every open command within the stuck horizon took 237 ms
// at 10 M commands.
const stuckCountCap = 10_000

// countStuck counts the commands of stuck_commands quiet for longer than
// quiet, up to stuckCountCap. The bound is on last_event_time, not on
// stuck_for (now() minus it), so that an index can serve it.
func countStuck(ctx context.Context, db *pgxpool.Pool, quiet time.Duration) (n int64, capped bool, err error) {
	err = db.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM stuck_commands
		WHERE last_event_time < now() - $1::interval LIMIT $2) s`, interval(quiet), stuckCountCap+1).Scan(&n)
	if err != nil {
		return 0, false, fmt.Errorf("count stuck commands: %w", err)
	}
	if n > stuckCountCap {
		return stuckCountCap, true, nil
	}
	return n, false, nil
}
