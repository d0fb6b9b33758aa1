package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// messageStatuses are a device message's statuses (notification.MessageStatus),
// in order: PENDING, then the final ones.
var messageStatuses = []string{"PENDING", "DELIVERED", "FAILED", "TIMEOUT"}

// MessageSummary is a device message in a list.
type MessageSummary struct {
	DeviceID  string `json:"device_id"`
	MessageID string `json:"message_id"`
	ProductID string `json:"product_id"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	ErrorCode string `json:"error_code"`
	// PendingTime is when the platform held it for the device; null for a
	// message delivered (or failed) at once.
	PendingTime *time.Time `json:"pending_time"`
	// FinishedTime is when it reached its final status; null while PENDING.
	FinishedTime  *time.Time `json:"finished_time"`
	FirstSeenAt   time.Time  `json:"first_seen_at"`
	LastEventTime time.Time  `json:"last_event_time"`
	// Key is the time the list is ordered by: pending_time, or
	// first_seen_at without one (the message's day, migration 015).
	Key time.Time `json:"key"`
	// URL is the message's page.
	URL string `json:"url"`
	// Seq names the message in the list (migration 026): the cursor's
	// tie-break, carried by Next.
	Seq int64 `json:"-"`
}

// MessageFilter is /messages' query string.
type MessageFilter struct {
	Device  string     `json:"device,omitempty"`
	Product string     `json:"product,omitempty"`
	Status  string     `json:"status,omitempty"`
	Since   *time.Time `json:"since,omitempty"`
	Until   *time.Time `json:"until,omitempty"`
	// Before and BeforeSeq are the keyset cursor: rows strictly after it
	// in the list's order (newest first). In the list a message is named
	// by its seq (migration 026), a number 8 bytes wide where its device
	// and id take about 45 in each index entry.
	Before    *time.Time `json:"before,omitempty"`
	BeforeSeq int64      `json:"before_seq,omitempty"`
}

// MessagesPage is /messages.
type MessagesPage struct {
	Filter   MessageFilter    `json:"filter"`
	Messages []MessageSummary `json:"messages"`
	// Next is the query string of the next page; empty on the last.
	Next string `json:"next"`
}

// messageList is /messages: by a message's day, then its seq, through the
// product index of migration 026 and 015's day index. A device's messages
// are read through the primary key and sorted, and a status alone through
// the product index, product by product (migration 031 dropped the device
// and status indexes); /messages?status=DELIVERED alone reads the day
// index.
var messageList = listKind{table: "device_messages", key: `coalesce(pending_time, first_seen_at)`,
	ids: []string{"seq"}, statuses: messageStatuses, commonStatus: "DELIVERED",
	columns: `device_id, message_id, coalesce(product_id, '') AS product, coalesce(name, '') AS message_name, status,
	coalesce(error_code, '') AS error, pending_time, coalesce(delivered_time, failed_time, timeout_time) AS finished,
	first_seen_at, last_event_time, coalesce(pending_time, first_seen_at) AS list_key, seq`,
	names:       "device_id, message_id, product, message_name, status, error, pending_time, finished, first_seen_at, last_event_time, list_key, seq",
	deviceByKey: true, statusByProduct: true}

func (f MessageFilter) list() listFilter {
	return listFilter{Device: f.Device, Product: f.Product, Status: f.Status, Since: f.Since, Until: f.Until, Before: f.Before,
		BeforeIDs: []any{f.BeforeSeq}}
}

// messagesQuery is the statement of one page of /messages (listKind.query).
func messagesQuery(f MessageFilter) listStatement { return messageList.query(f.list(), pageSize+1) }

// messagePath is a message's page, each id one escaped path segment.
func messagePath(device, id string) string {
	return "/messages/" + url.PathEscape(device) + "/" + url.PathEscape(id)
}

func scanMessageSummaries(rows pgx.Rows) ([]MessageSummary, error) {
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (MessageSummary, error) {
		var s MessageSummary
		err := r.Scan(&s.DeviceID, &s.MessageID, &s.ProductID, &s.Name, &s.Status, &s.ErrorCode, &s.PendingTime,
			&s.FinishedTime, &s.FirstSeenAt, &s.LastEventTime, &s.Key, &s.Seq)
		s.URL = messagePath(s.DeviceID, s.MessageID)
		return s, err
	})
	if out == nil {
		out = []MessageSummary{}
	}
	return out, err
}

func listMessages(ctx context.Context, db *pgxpool.Pool, f MessageFilter) (*MessagesPage, error) {
	list, err := queryList(ctx, db, messagesQuery(f), scanMessageSummaries)
	if err != nil {
		return nil, fmt.Errorf("list messages: %w", err)
	}
	p := &MessagesPage{Filter: f}
	var last *MessageSummary
	if p.Messages, last = cutPage(list, pageSize); last != nil {
		next := f
		next.Before, next.BeforeSeq = &last.Key, last.Seq
		p.Next = next.query()
	}
	return p, nil
}

// query is the filter as /messages' query string.
func (f MessageFilter) query() string {
	v := list{f.Device, f.Product, f.Status, f.Since, f.Until, f.Before}.values()
	if f.Before != nil {
		v.Set("before_seq", strconv.FormatInt(f.BeforeSeq, 10))
	}
	return v.Encode()
}

var messagesPage = endpoint[*MessagesPage]{template: "messages", title: "Messages", nav: "messages",
	load: func(ctx context.Context, db *pgxpool.Pool, r *http.Request, _ time.Time) (*MessagesPage, error) {
		f, err := messageFilter(r.URL.Query())
		if err != nil {
			return nil, err
		}
		return listMessages(ctx, db, f)
	}}

// messageFilter reads /messages' query string: a bad request names each
// parameter wrong.
func messageFilter(q url.Values) (MessageFilter, error) {
	l, err := readList(q, messageStatuses)
	f := MessageFilter{Device: l.device, Product: l.product, Status: l.status, Since: l.since, Until: l.until, Before: l.before}
	if err != nil {
		return f, err
	}
	if q.Has("before_device") || q.Has("before_id") {
		// A Next link kept from before migration 026: its rows are named
		// by a cursor the list no longer has, and guessing a seq for them
		// would skip or repeat rows.
		return f, badRequest("before_device and before_id are the cursor of an earlier version of this page: " +
			"open /messages again and follow its Next link (the cursor is now before and before_seq)")
	}
	if s := q.Get("before_seq"); s != "" || f.Before != nil {
		if f.BeforeSeq, err = strconv.ParseInt(s, 10, 64); err != nil || f.Before == nil {
			return f, badRequest("before and before_seq are the cursor of the next page: follow the Next link")
		}
	}
	return f, nil
}

func oneOf(s string, set []string) bool {
	for _, v := range set {
		if s == v {
			return true
		}
	}
	return false
}
