package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// deviceSample is how many of a device's newest commands its page counts.
const deviceSample = 1000

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
	// Counted over the device's newest messages, at most MessagesSampled
	// of them.
	MessagesSampled int            `json:"messages_sampled"`
	MessageRates    MessageRates   `json:"message_rates"`
	MessageStatuses []MessageCount `json:"message_statuses"`
	// Messages are its newest messages, at most 50; /messages?device= has
	// them all.
	Messages     []MessageSummary `json:"messages"`
	MessagesMore bool             `json:"messages_more"`
	// Calls are its newest synchronous commands and property sets sent
	// through cmdtrack, at most 50.
	Calls     []Call `json:"calls"`
	CallsMore bool   `json:"calls_more"`
	// Downlinks are its newest commands, messages and calls together,
	// newest first, at most 50.
	Downlinks []Downlink `json:"downlinks"`
}

// Downlink is a command, a message or a call in a device's list of them.
type Downlink struct {
	Kind   string    `json:"kind"` // command, message or call
	ID     string    `json:"id"`
	Name   string    `json:"name"`
	Status string    `json:"status"`
	Time   time.Time `json:"time"`
	URL    string    `json:"url"`
}

func loadDevice(ctx context.Context, db *pgxpool.Pool, id string) (*DevicePage, error) {
	// The device's newest commands by the list's day key, the order the page
	// shows, as /commands?device= reads them: the head of each status' range
	// of its index, merged.
	list, err := queryList(ctx, db, commandList.query(listFilter{Device: id}, deviceSample), scanSummaries)
	if err != nil {
		return nil, fmt.Errorf("read device: %w", err)
	}
	p := &DevicePage{DeviceID: id, Sampled: len(list), Statuses: []StatusCount{}, MessageStatuses: []MessageCount{}}
	// The device's newest messages, as /messages?device= reads them: all of
	// the device's, through the primary key, sorted (migration 031).
	msgs, err := queryList(ctx, db, messageList.query(listFilter{Device: id}, deviceSample), scanMessageSummaries)
	if err != nil {
		return nil, fmt.Errorf("read the device's messages: %w", err)
	}
	if p.Calls, err = deviceCalls(ctx, db, id, pageSize+1); err != nil {
		return nil, err
	}
	if p.Presence, err = loadPresence(ctx, db, id); err != nil {
		return nil, err
	}
	if len(list) == 0 && len(msgs) == 0 && len(p.Calls) == 0 && p.Presence == nil {
		// A device may be known from its status changes alone; one with
		// neither is not known.
		return nil, errNotFound
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
	p.MessagesSampled = len(msgs)
	clear(by)
	for _, m := range msgs {
		p.MessageRates.add(m.Status, 1)
		by[m.Status]++
	}
	for _, s := range messageStatuses {
		if by[s] > 0 {
			p.MessageStatuses = append(p.MessageStatuses, MessageCount{Status: s, Messages: by[s]})
		}
	}
	p.Commands = list[:min(len(list), pageSize)]
	p.More = len(list) > pageSize
	p.Messages = msgs[:min(len(msgs), pageSize)]
	p.MessagesMore = len(msgs) > pageSize
	p.CallsMore = len(p.Calls) > pageSize
	p.Calls = p.Calls[:min(len(p.Calls), pageSize)]

	// Together: each kind's newest 50 hold the newest 50 of all.
	for _, c := range p.Commands {
		p.Downlinks = append(p.Downlinks, Downlink{Kind: "command", ID: c.CommandID, Status: c.Status, Time: c.Key,
			URL: "/commands/" + url.PathEscape(c.CommandID)})
	}
	for _, m := range p.Messages {
		p.Downlinks = append(p.Downlinks, Downlink{Kind: "message", ID: m.MessageID, Name: m.Name, Status: m.Status, Time: m.Key, URL: m.URL})
	}
	for _, c := range p.Calls {
		at := c.FirstSeenAt
		if c.SentTime != nil {
			at = *c.SentTime
		}
		name := c.CommandName
		if c.CallKind == "properties" {
			name = "properties of " + c.ServiceID
		}
		p.Downlinks = append(p.Downlinks, Downlink{Kind: "call", ID: c.CallID, Name: name, Status: c.Status, Time: at, URL: c.URL})
	}
	slices.SortStableFunc(p.Downlinks, func(a, b Downlink) int { return b.Time.Compare(a.Time) })
	p.Downlinks = p.Downlinks[:min(len(p.Downlinks), pageSize)]
	if p.Downlinks == nil {
		p.Downlinks = []Downlink{}
	}
	return p, nil
}

var devicePage = endpoint[*DevicePage]{template: "device", title: "Device", nav: "commands", thing: "device",
	subject: func(p *DevicePage) string { return p.DeviceID },
	load: func(ctx context.Context, db *pgxpool.Pool, r *http.Request, _ time.Time) (*DevicePage, error) {
		return loadDevice(ctx, db, r.PathValue("id"))
	}}
