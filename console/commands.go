package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
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
	f := CommandFilter{Device: strings.TrimSpace(q.Get("device")), Product: strings.TrimSpace(q.Get("product")),
		Status: strings.ToUpper(strings.TrimSpace(q.Get("status")))}
	var errs []string
	var err error
	if f.Since, err = parseTime(q.Get("since")); err != nil {
		errs = append(errs, "since: "+err.Error())
	}
	if f.Until, err = parseTime(q.Get("until")); err != nil {
		errs = append(errs, "until: "+err.Error())
	}
	if f.Before, err = parseTime(q.Get("before")); err != nil {
		errs = append(errs, "before: "+err.Error())
	}
	f.BeforeID = q.Get("before_id")
	if f.Status != "" && !validStatus(f.Status) {
		errs = append(errs, "status must be one of "+strings.Join(statuses, ", "))
	}
	if len(errs) > 0 {
		return f, badRequest(strings.Join(errs, "; "))
	}
	return f, nil
}

func validStatus(s string) bool {
	for _, v := range statuses {
		if s == v {
			return true
		}
	}
	return false
}
