package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Call is a row of device_calls: a synchronous command (CreateCommand) or
// property set (UpdateProperties) sent through `cmdtrack send`, with its
// answer (README, "Synchronous commands and property sets").
type Call struct {
	CallID      string          `json:"call_id"`
	CallKind    string          `json:"call_kind"`
	DeviceID    string          `json:"device_id"`
	ProductID   string          `json:"product_id"`
	ServiceID   string          `json:"service_id"`
	CommandName string          `json:"command_name"`
	Request     json.RawMessage `json:"request"`
	Status      string          `json:"status"`
	// CommandID is the platform's id of a synchronous command.
	CommandID string          `json:"command_id"`
	Response  json.RawMessage `json:"response"`
	// HTTPStatus and the error are the API's answer when it refused or
	// failed (error_code "transport": no answer at all).
	HTTPStatus    *int32     `json:"http_status"`
	ErrorCode     string     `json:"error_code"`
	ErrorMsg      string     `json:"error_msg"`
	SentTime      *time.Time `json:"sent_time"`
	FinishedTime  *time.Time `json:"finished_time"`
	TookMS        *int64     `json:"took_ms"`
	LastEventTime time.Time  `json:"last_event_time"`
	FirstSeenAt   time.Time  `json:"first_seen_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	URL           string     `json:"url"`
}

const callColumns = `call_id, call_kind, device_id, coalesce(product_id, ''), coalesce(service_id, ''),
	coalesce(command_name, ''), request, status, coalesce(command_id, ''), response, http_status, coalesce(error_code, ''),
	coalesce(error_msg, ''), sent_time, finished_time, last_event_time, first_seen_at, updated_at`

func scanCall(row pgx.Row) (Call, error) {
	var c Call
	err := row.Scan(&c.CallID, &c.CallKind, &c.DeviceID, &c.ProductID, &c.ServiceID, &c.CommandName, &c.Request, &c.Status,
		&c.CommandID, &c.Response, &c.HTTPStatus, &c.ErrorCode, &c.ErrorMsg, &c.SentTime, &c.FinishedTime, &c.LastEventTime,
		&c.FirstSeenAt, &c.UpdatedAt)
	c.TookMS = msBetween(c.SentTime, c.FinishedTime)
	c.URL = "/calls/" + url.PathEscape(c.CallID)
	return c, err
}

// readCall reads a call's row (errNotFound: none).
func readCall(ctx context.Context, db *pgxpool.Pool, id string) (Call, error) {
	c, err := scanCall(db.QueryRow(ctx, `SELECT `+callColumns+` FROM device_calls WHERE call_id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, errNotFound
	}
	if err != nil {
		return c, fmt.Errorf("read call: %w", err)
	}
	return c, nil
}

// CallPage is /calls/{call_id}.
type CallPage struct {
	Call     Call      `json:"call"`
	Presence *Presence `json:"presence"`
}

var callPage = endpoint[*CallPage]{template: "call", title: "Call", nav: "messages", thing: "call",
	subject: func(p *CallPage) string { return p.Call.CallID },
	load: func(ctx context.Context, db *pgxpool.Pool, r *http.Request, _ time.Time) (*CallPage, error) {
		c, err := readCall(ctx, db, r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		p := &CallPage{Call: c}
		if p.Presence, err = loadPresence(ctx, db, c.DeviceID); err != nil {
			return nil, err
		}
		return p, nil
	}}

// deviceCalls reads a device's newest calls, at most n, through
// device_calls_device_idx (migration 016).
func deviceCalls(ctx context.Context, db *pgxpool.Pool, device string, n int) ([]Call, error) {
	rows, err := db.Query(ctx, `SELECT `+callColumns+` FROM device_calls WHERE device_id = $1
		ORDER BY sent_time DESC, call_id LIMIT $2`, device, n)
	if err != nil {
		return nil, fmt.Errorf("read the device's calls: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Call, error) { return scanCall(r) })
	if err != nil {
		return nil, fmt.Errorf("read the device's calls: %w", err)
	}
	if out == nil {
		out = []Call{}
	}
	return out, nil
}
