package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
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
}

// MessageFilter is /messages' query string.
type MessageFilter struct {
	Device  string     `json:"device,omitempty"`
	Product string     `json:"product,omitempty"`
	Status  string     `json:"status,omitempty"`
	Since   *time.Time `json:"since,omitempty"`
	Until   *time.Time `json:"until,omitempty"`
	// Before, BeforeDevice and BeforeID are the keyset cursor: rows
	// strictly after it in the list's order (newest first). A message is
	// named by its device and its id.
	Before       *time.Time `json:"before,omitempty"`
	BeforeDevice string     `json:"before_device,omitempty"`
	BeforeID     string     `json:"before_id,omitempty"`
}

// MessagesPage is /messages.
type MessagesPage struct {
	Filter   MessageFilter    `json:"filter"`
	Messages []MessageSummary `json:"messages"`
	// Next is the query string of the next page; empty on the last.
	Next string `json:"next"`
}

// messageList is /messages: by a message's day, through the indexes of
// migration 018 (and 015's day index).
var messageList = listKind{table: "device_messages", key: `coalesce(pending_time, first_seen_at)`,
	ids: []string{"device_id", "message_id"}, statuses: messageStatuses,
	columns: `device_id, message_id, coalesce(product_id, '') AS product, coalesce(name, '') AS message_name, status,
	coalesce(error_code, '') AS error, pending_time, coalesce(delivered_time, failed_time, timeout_time) AS finished,
	first_seen_at, last_event_time, coalesce(pending_time, first_seen_at) AS list_key`,
	names: "device_id, message_id, product, message_name, status, error, pending_time, finished, first_seen_at, last_event_time, list_key"}

func (f MessageFilter) list() listFilter {
	return listFilter{Device: f.Device, Product: f.Product, Status: f.Status, Since: f.Since, Until: f.Until, Before: f.Before,
		BeforeIDs: []string{f.BeforeDevice, f.BeforeID}}
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
			&s.FinishedTime, &s.FirstSeenAt, &s.LastEventTime, &s.Key)
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
		next.Before, next.BeforeDevice, next.BeforeID = &last.Key, last.DeviceID, last.MessageID
		p.Next = next.query()
	}
	return p, nil
}

// query is the filter as /messages' query string.
func (f MessageFilter) query() string {
	v := list{f.Device, f.Product, f.Status, f.Since, f.Until, f.Before}.values()
	if f.Before != nil {
		v.Set("before_device", f.BeforeDevice)
		v.Set("before_id", f.BeforeID)
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
	return MessageFilter{Device: l.device, Product: l.product, Status: l.status, Since: l.since, Until: l.until,
		Before: l.before, BeforeDevice: q.Get("before_device"), BeforeID: q.Get("before_id")}, err
}

func oneOf(s string, set []string) bool {
	for _, v := range set {
		if s == v {
			return true
		}
	}
	return false
}
