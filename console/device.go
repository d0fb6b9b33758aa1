package console

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
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

var devicePage = endpoint[*DevicePage]{template: "device", title: "Device", nav: "commands", thing: "device",
	subject: func(p *DevicePage) string { return p.DeviceID },
	load: func(ctx context.Context, db *pgxpool.Pool, r *http.Request, _ time.Time) (*DevicePage, error) {
		return loadDevice(ctx, db, r.PathValue("id"))
	}}
