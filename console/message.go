package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Message is a row of device_messages (README, "Device messages").
type Message struct {
	DeviceID  string          `json:"device_id"`
	MessageID string          `json:"message_id"`
	Status    string          `json:"status"`
	Name      string          `json:"name"`
	Topic     string          `json:"topic"`
	ErrorCode string          `json:"error_code"`
	ErrorMsg  string          `json:"error_msg"`
	ProductID string          `json:"product_id"`
	AppID     string          `json:"app_id"`
	GatewayID string          `json:"gateway_id"`
	NodeID    string          `json:"node_id"`
	Tags      json.RawMessage `json:"tags"`
	// When it reached each status; null for a status it has not had.
	PendingTime   *time.Time `json:"pending_time"`
	DeliveredTime *time.Time `json:"delivered_time"`
	FailedTime    *time.Time `json:"failed_time"`
	TimeoutTime   *time.Time `json:"timeout_time"`
	LastEventTime time.Time  `json:"last_event_time"`
	LastRequestID string     `json:"last_request_id"`
	FirstSeenAt   time.Time  `json:"first_seen_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	// WaitedMS is from PENDING to the final status (or the last event):
	// how long the platform held it for the device; null without PENDING.
	WaitedMS *int64 `json:"waited_ms"`
}

// finished is when the message reached its final status.
func (m *Message) finished() *time.Time {
	for _, t := range []*time.Time{m.DeliveredTime, m.FailedTime, m.TimeoutTime} {
		if t != nil {
			return t
		}
	}
	return nil
}

// MessagePage is /messages/{device_id}/{message_id}.
type MessagePage struct {
	Message *Message `json:"message"`
	// Presence is its device's last known status; null when cmdtrack has
	// heard of no status change of that device.
	Presence *Presence `json:"presence"`
	TimelinePage
}

var messageHistory = history{table: "device_message_events", ids: []string{"device_id", "message_id"}, payload: headedPayload}

// readMessage reads a message's row (errNotFound: none).
func readMessage(ctx context.Context, db *pgxpool.Pool, device, id string) (*Message, error) {
	m, err := scanMessage(db.QueryRow(ctx, `SELECT `+messageColumns+`
		FROM device_messages WHERE device_id = $1 AND message_id = $2`, device, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read message: %w", err)
	}
	return m, nil
}

// messageColumns are what scanMessage reads.
const messageColumns = `device_id, message_id, status, coalesce(name, ''), coalesce(topic, ''),
	coalesce(error_code, ''), coalesce(error_msg, ''), coalesce(product_id, ''), coalesce(app_id, ''),
	coalesce(gateway_id, ''), coalesce(node_id, ''), tags, pending_time, delivered_time, failed_time, timeout_time,
	last_event_time, coalesce(last_request_id, ''), first_seen_at, updated_at`

func scanMessage(row pgx.Row) (*Message, error) {
	var m Message
	err := row.Scan(
		&m.DeviceID, &m.MessageID, &m.Status, &m.Name, &m.Topic, &m.ErrorCode, &m.ErrorMsg, &m.ProductID, &m.AppID,
		&m.GatewayID, &m.NodeID, &m.Tags, &m.PendingTime, &m.DeliveredTime, &m.FailedTime, &m.TimeoutTime,
		&m.LastEventTime, &m.LastRequestID, &m.FirstSeenAt, &m.UpdatedAt)
	if err != nil {
		return nil, err
	}
	end := m.finished()
	if end == nil {
		end = &m.LastEventTime
	}
	m.WaitedMS = msBetween(m.PendingTime, end)
	return &m, nil
}

func loadMessage(ctx context.Context, db *pgxpool.Pool, device, id string, all bool, after *TimelineCursor) (*MessagePage, error) {
	m, err := readMessage(ctx, db, device, id)
	if err != nil {
		return nil, err
	}
	p := &MessagePage{Message: m}
	if p.Presence, err = loadPresence(ctx, db, m.DeviceID); err != nil {
		return nil, err
	}
	// A notification's event time is one of the message's times or lies
	// between them, as a command's (timelineMargin).
	p.TimelinePage, err = messageHistory.readTimeline(ctx, db, []any{device, id}, messagePath(device, id), "message",
		[]*time.Time{m.PendingTime, m.DeliveredTime, m.FailedTime, m.TimeoutTime, &m.LastEventTime, &m.FirstSeenAt, &m.UpdatedAt},
		all, after)
	if err != nil {
		return nil, err
	}
	return p, nil
}

var messagePage = endpoint[*MessagePage]{template: "message", title: "Message", nav: "messages", thing: "message",
	subject: func(p *MessagePage) string { return p.Message.MessageID + " of " + p.Message.DeviceID },
	load: func(ctx context.Context, db *pgxpool.Pool, r *http.Request, _ time.Time) (*MessagePage, error) {
		q := r.URL.Query()
		after, err := timelineCursor(q)
		if err != nil {
			return nil, err
		}
		return loadMessage(ctx, db, r.PathValue("device"), r.PathValue("id"), q.Get("history") == "all", after)
	}}

// messagePayloadPage serves one notification of a message whole.
var messagePayloadPage = payloadEndpoint(messageHistory, "message", "device", "id")
