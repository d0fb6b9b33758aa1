package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

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

// listColumns are the columns scanSummaries reads, named so that merged
// pages are read by name.
const listColumns = `command_id, coalesce(device_id, '') AS device, coalesce(product_id, '') AS product, status,
	created_time, first_seen_at, last_event_time, response_time, coalesce(created_time, first_seen_at) AS list_key`

// commandList is /commands: by a command's day (created_time, or
// first_seen_at for a legacy callback's command), through the indexes of
// migrations 008 and 012.
var commandList = listKind{table: "device_commands", key: `coalesce(created_time, first_seen_at)`, ids: []string{"command_id"},
	statuses: statuses, columns: listColumns,
	names: "command_id, device, product, status, created_time, first_seen_at, last_event_time, response_time, list_key"}

// commandsQuery is the statement of one page of /commands (listKind.query).
func commandsQuery(f CommandFilter) listStatement {
	return commandList.query(listFilter{Device: f.Device, Product: f.Product, Status: f.Status, Since: f.Since, Until: f.Until,
		Before: f.Before, BeforeIDs: []any{f.BeforeID}}, pageSize+1)
}

func listCommands(ctx context.Context, db *pgxpool.Pool, f CommandFilter) (*CommandsPage, error) {
	list, err := queryList(ctx, db, commandsQuery(f), scanSummaries)
	if err != nil {
		return nil, fmt.Errorf("list commands: %w", err)
	}
	p := &CommandsPage{Filter: f}
	var last *CommandSummary
	if p.Commands, last = cutPage(list, pageSize); last != nil {
		next := f
		next.Before, next.BeforeID = &last.Key, last.CommandID
		p.Next = next.query()
	}
	return p, nil
}

var commandsPage = endpoint[*CommandsPage]{template: "commands", title: "Commands", nav: "commands",
	load: func(ctx context.Context, db *pgxpool.Pool, r *http.Request, _ time.Time) (*CommandsPage, error) {
		q := r.URL.Query()
		if id := strings.TrimSpace(q.Get("command")); id != "" {
			return nil, seeOther("/commands/" + url.PathEscape(id))
		}
		f, err := commandFilter(q)
		if err != nil {
			return nil, err
		}
		return listCommands(ctx, db, f)
	}}

// commandFilter reads /commands' query string: a bad request names each
// parameter wrong.
func commandFilter(q url.Values) (CommandFilter, error) {
	l, err := readList(q, statuses)
	return CommandFilter{Device: l.device, Product: l.product, Status: l.status, Since: l.since, Until: l.until,
		Before: l.before, BeforeID: q.Get("before_id")}, err
}

// list is what the query string of every list page (/commands,
// /messages) holds but its cursor's ids.
type list struct {
	device, product, status string
	since, until, before    *time.Time
}

// readList reads a list page's query string, statuses being the ones its
// status may name: a bad request names each parameter wrong.
func readList(q url.Values, statuses []string) (list, error) {
	l := list{device: strings.TrimSpace(q.Get("device")), product: strings.TrimSpace(q.Get("product")),
		status: strings.ToUpper(strings.TrimSpace(q.Get("status")))}
	var errs []string
	var err error
	for _, t := range []struct {
		name string
		out  **time.Time
	}{{"since", &l.since}, {"until", &l.until}, {"before", &l.before}} {
		if *t.out, err = parseTime(q.Get(t.name)); err != nil {
			errs = append(errs, t.name+": "+err.Error())
		}
	}
	if l.status != "" && !oneOf(l.status, statuses) {
		errs = append(errs, "status must be one of "+strings.Join(statuses, ", "))
	}
	if len(errs) > 0 {
		return l, badRequest(strings.Join(errs, "; "))
	}
	return l, nil
}
