package console

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// timelineMargin widens a command's timeline query beyond the command's own
// times (created, sent, delivered, responded, last event, first seen and
// last written). A notification's event time is one of those times or lies
// between them (a late one of a lower rank carries its own earlier time),
// but for a legacy callback, timed by its receipt, which may come later
// without changing the row: a day covers those. The history is partitioned
// by event time, and the bound lets PostgreSQL read only the partitions of
// those days rather than every partition retention keeps.
const timelineMargin = 24 * time.Hour

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
	// Presence is its device's last known status; null when cmdtrack has
	// heard of no status change of that device.
	Presence *Presence `json:"presence"`
	TimelinePage
}

// TimelinePage is a page of a thing's notifications (a command's, a
// message's).
type TimelinePage struct {
	// Timeline holds a page of the notifications in event order, from
	// TimelineFrom to TimelineUntil (all of the history when TimelineAll);
	// Next is the query string of the next page, empty on the last.
	// Continued: this page is not the first.
	Timeline      []Event    `json:"timeline"`
	Next          string     `json:"next"`
	TimelineFrom  *time.Time `json:"timeline_from"`
	TimelineUntil *time.Time `json:"timeline_until"`
	TimelineAll   bool       `json:"timeline_all"`
	Continued     bool       `json:"continued"`
	// Base is the thing's page (escaped), Thing what it is: the page's
	// links and words.
	Base  string `json:"-"`
	Thing string `json:"-"`
}

// history is a kind's history table, partitioned by event time, and the
// columns that name the thing a notification belongs to.
type history struct {
	table string
	ids   []string
	// payload is the SQL expression, over the table as e, of a
	// notification's payload as received.
	payload string
}

// headedPayload is the payload of a history that stores it without a
// header notification_headers keeps (migrations 027 and 029): the
// expression puts it back, as the views command_events and message_events
// do, for the rows of a page only.
const headedPayload = `CASE WHEN e.header_at IS NULL THEN e.stored_payload ELSE overlay(e.stored_payload PLACING
		(SELECT h.header FROM notification_headers h WHERE h.id = e.header_id) FROM e.header_at FOR 0) END`

var commandHistory = history{table: "device_command_events", ids: []string{"command_id"}, payload: headedPayload}

// where is the condition on the thing's ids, as $1, $2, ...
func (h history) where() string {
	conds := make([]string, len(h.ids))
	for i, id := range h.ids {
		conds[i] = id + " = $" + strconv.Itoa(i+1)
	}
	return strings.Join(conds, " AND ")
}

// timelineBounds are the event times a thing's notifications can carry:
// its own times, widened by timelineMargin on each side.
func timelineBounds(times ...*time.Time) (from, until time.Time) {
	for _, t := range times {
		if t == nil {
			continue
		}
		if from.IsZero() || t.Before(from) {
			from = *t
		}
		if t.After(until) {
			until = *t
		}
	}
	return from.Add(-timelineMargin), until.Add(timelineMargin)
}

// readTimeline reads a page of the thing's notifications (ids, in h.ids'
// order), within its own times (times) unless all, after the cursor.
func (h history) readTimeline(ctx context.Context, db *pgxpool.Pool, ids []any, base, thing string, times []*time.Time,
	all bool, after *TimelineCursor) (TimelinePage, error) {
	p := TimelinePage{TimelineAll: all, Continued: after != nil, Base: base, Thing: thing}
	// A page of keys first, in order, without the payloads; then the first
	// characters of those payloads alone, so that neither PostgreSQL nor the
	// console reads more of them than a page shows.
	var where []string
	args := append(params{}, ids...)
	arg := args.add
	if !all {
		from, until := timelineBounds(times...)
		p.TimelineFrom, p.TimelineUntil = &from, &until
		// Bounds on the partition key: only the partitions of these days
		// are read.
		where = append(where, ` AND event_time >= `+arg(from)+` AND event_time <= `+arg(until))
	}
	if after != nil {
		where = append(where, ` AND (event_time, received_at, event_key) > (`+arg(after.EventTime)+`, `+arg(after.ReceivedAt)+`, `+arg(after.Key)+`)`)
	}
	join := make([]string, len(h.ids))
	for i, id := range h.ids {
		join[i] = "e." + id + " = $" + strconv.Itoa(i+1)
	}
	q := `SELECT k.event_time, k.status, k.source, coalesce(k.request_id, ''), k.received_at, k.event_key,
			left(p.payload, ` + strconv.Itoa(payloadPreview) + `), octet_length(p.payload)
		FROM (SELECT event_time, status, source, request_id, received_at, event_key FROM ` + h.table + `
			WHERE ` + h.where() + strings.Join(where, "") + `
			ORDER BY event_time, received_at, event_key LIMIT ` + strconv.Itoa(timelinePage+1) + `) k
		JOIN ` + h.table + ` e ON ` + strings.Join(join, " AND ") + ` AND e.event_key = k.event_key AND e.event_time = k.event_time
		CROSS JOIN LATERAL (SELECT ` + h.payload + ` AS payload) p
		ORDER BY k.event_time, k.received_at, k.event_key`
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return p, fmt.Errorf("read timeline: %w", err)
	}
	p.Timeline, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
		var e Event
		var key []byte
		err := r.Scan(&e.EventTime, &e.Status, &e.Source, &e.RequestID, &e.ReceivedAt, &key, &e.Payload, &e.PayloadBytes)
		e.EventKey = hex.EncodeToString(key)
		e.PayloadTruncated = int64(len(e.Payload)) < e.PayloadBytes
		e.PayloadURL = base + "/payload/" + e.EventKey + "?" +
			url.Values{"at": {e.EventTime.UTC().Format(time.RFC3339Nano)}}.Encode()
		return e, err
	})
	if err != nil {
		return p, fmt.Errorf("read timeline: %w", err)
	}
	var last *Event
	if p.Timeline, last = cutPage(p.Timeline, timelinePage); last != nil {
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

// readCommand reads a command's row (errNotFound: none).
func readCommand(ctx context.Context, db *pgxpool.Pool, id string) (*Command, error) {
	c, err := scanCommand(db.QueryRow(ctx, `SELECT `+commandColumns+` FROM device_commands WHERE command_id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read command: %w", err)
	}
	return c, nil
}

func loadCommand(ctx context.Context, db *pgxpool.Pool, id string, all bool, after *TimelineCursor) (*CommandPage, error) {
	c, err := readCommand(ctx, db, id)
	if err != nil {
		return nil, err
	}
	p := &CommandPage{Command: c}
	if p.Presence, err = loadPresence(ctx, db, c.DeviceID); err != nil {
		return nil, err
	}
	// A notification's event time is one of the command's times or lies
	// between them (timelineMargin).
	p.TimelinePage, err = commandHistory.readTimeline(ctx, db, []any{id}, "/commands/"+url.PathEscape(id), "command",
		[]*time.Time{c.CreatedTime, c.SentTime, c.DeliveredTime, c.ResponseTime, &c.LastEventTime, &c.FirstSeenAt, &c.UpdatedAt},
		all, after)
	if err != nil {
		return nil, err
	}
	return p, nil
}

var commandPage = endpoint[*CommandPage]{template: "command", title: "Command", nav: "commands", thing: "command",
	subject: func(p *CommandPage) string { return p.Command.CommandID },
	load: func(ctx context.Context, db *pgxpool.Pool, r *http.Request, _ time.Time) (*CommandPage, error) {
		q := r.URL.Query()
		after, err := timelineCursor(q)
		if err != nil {
			return nil, err
		}
		return loadCommand(ctx, db, r.PathValue("id"), q.Get("history") == "all", after)
	}}

// timelineCursor reads where a page of a timeline starts from its query
// string: nil for the first page.
func timelineCursor(q url.Values) (*TimelineCursor, error) {
	if !q.Has("after") && !q.Has("after_received") && !q.Has("after_key") {
		return nil, nil
	}
	var c TimelineCursor
	var errs []error
	for _, p := range []struct {
		name string
		into *time.Time
	}{{"after", &c.EventTime}, {"after_received", &c.ReceivedAt}} {
		t, err := time.Parse(time.RFC3339Nano, q.Get(p.name))
		*p.into = t
		errs = append(errs, err)
	}
	var err error
	c.Key, err = hex.DecodeString(q.Get("after_key"))
	if errors.Join(append(errs, err)...) != nil {
		return nil, badRequest("after, after_received and after_key are the cursor of the timeline's next page: follow its link")
	}
	return &c, nil
}
