package simulate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/cmdtrack/cmdtrack/notification"
)

// Device is the final state a device's presence row must reach.
type Device struct {
	ID              string                      `json:"device_id"`
	Status          notification.PresenceStatus `json:"status"`
	StatusSince     time.Time                   `json:"status_since"`
	LastOnlineTime  *time.Time                  `json:"last_online_time,omitempty"`
	LastOfflineTime *time.Time                  `json:"last_offline_time,omitempty"`
}

// presenceGen makes the device status changes of a stream, from a
// generator of its own so that the commands' stream does not change.
type presenceGen struct {
	on     bool
	cfg    Config
	rng    *rand.Rand
	bodies map[string][][]byte // by device, every distinct change
	poison [][]byte
}

func newPresenceGen(cfg Config) *presenceGen {
	return &presenceGen{on: cfg.Presence, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed^0x5eed, cfg.Seed+1)),
		bodies: map[string][][]byte{}}
}

type timedMessage struct {
	at  time.Time
	msg Message
}

// command returns the status changes command c causes: its device goes
// offline just after the command's last step when the command times out
// (and is back online just after the timeout) or stays SENT or DELIVERED
// (and stays offline).
func (g *presenceGen) command(c *Command, steps []step) []timedMessage {
	if !g.on {
		return nil
	}
	last := steps[len(steps)-1]
	var out []timedMessage
	switch last.status {
	case notification.Timeout:
		before := steps[len(steps)-2].at
		out = append(out, g.change(c, notification.Offline, before.Add(100*time.Millisecond), c.CreatedTime),
			g.change(c, notification.Online, last.at.Add(200*time.Millisecond), time.Time{}))
	case notification.Sent, notification.Delivered:
		out = append(out, g.change(c, notification.Offline, last.at.Add(100*time.Millisecond), c.CreatedTime))
	}
	c.presence = len(out)
	return out
}

// change renders one status change of c's device at at, with its body in
// notify_data (the reference table's shape) or beside it (the sample's).
func (g *presenceGen) change(c *Command, status notification.PresenceStatus, at, lastOnline time.Time) timedMessage {
	if status == notification.Online {
		lastOnline = at
	}
	body := map[string]any{
		"status":             string(status),
		"status_update_time": at.Format("2006-01-02T15:04:05.000Z"),
		"last_online_time":   lastOnline.Format(stampFormat),
	}
	eventAt := at.Add(time.Duration(g.rng.IntN(50)) * time.Millisecond)
	data := map[string]any{"header": map[string]any{
		"app_id": c.AppID, "device_id": c.DeviceID, "node_id": c.NodeID, "product_id": c.ProductID, "gateway_id": c.GatewayID,
	}}
	doc := map[string]any{
		"resource":      notification.ResourceDeviceStatus,
		"event":         "update",
		"event_time":    eventAt.Format(stampFormat),
		"event_time_ms": eventAt.Format("2006-01-02T15:04:05.000Z"),
		"request_id":    fmt.Sprintf("presence-%016x", g.rng.Uint64()),
		"notify_data":   data,
	}
	if g.rng.IntN(2) == 0 {
		data["body"] = body
	} else {
		doc["body"] = body
	}
	out, err := json.Marshal(doc)
	if err != nil {
		panic(err) // maps of strings always marshal
	}
	g.bodies[c.DeviceID] = append(g.bodies[c.DeviceID], out)
	if g.rng.Float64() < g.cfg.Poison {
		g.poison = append(g.poison, g.poisonFor(c, len(g.poison)))
	}
	return timedMessage{at: at, msg: Message{Body: out, Kind: PresenceChange}}
}

// poisonFor is an unusable status change of c's device: it must change
// nothing (a dead letter each, with its reason).
func (g *presenceGen) poisonFor(c *Command, i int) []byte {
	switch g.rng.IntN(4) {
	case 0: // unknown status
		return fmt.Appendf(nil, `{"resource":"device.status","event":"update","event_time":"20261101T000000Z","request_id":"pp-%d",`+
			`"notify_data":{"header":{"device_id":%q},"body":{"status":"DREAMING"}}}`, i, c.DeviceID)
	case 1: // no device
		return fmt.Appendf(nil, `{"resource":"device.status","event":"update","event_time":"20261101T000000Z","request_id":"pp-%d",`+
			`"notify_data":{"header":{},"body":{"status":"ONLINE"}}}`, i)
	case 2: // from the future: it would pin the row ONLINE for decades
		return fmt.Appendf(nil, `{"resource":"device.status","event":"update","event_time":"20991231T000000Z","request_id":"pp-%d",`+
			`"notify_data":{"header":{"device_id":%q},"body":{"status":"ONLINE"}}}`, i, c.DeviceID)
	default: // no body anywhere
		return fmt.Appendf(nil, `{"resource":"device.status","event":"update","event_time":"20261101T000000Z","request_id":"pp-%d",`+
			`"notify_data":{"header":{"device_id":%q}}}`, i, c.DeviceID)
	}
}

// expected folds every device's changes by the merge rule (README, "Device
// presence"): the latest change wins, ties broken by the key.
func (g *presenceGen) expected() ([]Device, int) {
	var devices []Device
	changes := 0
	for id, bodies := range g.bodies {
		d := Device{ID: id}
		var win *notification.Presence
		for _, b := range bodies {
			p, err := notification.DecodePresence(b)
			if err != nil {
				panic(fmt.Sprintf("simulate: a generated status change does not decode: %v", err))
			}
			changes++
			if win == nil || p.Since.After(win.Since) || (p.Since.Equal(win.Since) && bytes.Compare(p.Key(), win.Key()) > 0) {
				win = &p
			}
			online := p.LastOnlineTime
			if p.Status == notification.Online && p.Since.After(online) {
				online = p.Since
			}
			d.LastOnlineTime = later(d.LastOnlineTime, online)
			if p.Status == notification.Offline {
				d.LastOfflineTime = later(d.LastOfflineTime, p.Since)
			}
		}
		d.Status, d.StatusSince = win.Status, win.Since
		devices = append(devices, d)
	}
	slices.SortFunc(devices, func(a, b Device) int { return strings.Compare(a.ID, b.ID) })
	return devices, changes
}

func later(cur *time.Time, t time.Time) *time.Time {
	if t.IsZero() || (cur != nil && !t.After(*cur)) {
		return cur
	}
	return &t
}

// VerifyPresence compares the stored presence of devices with their
// expected state and returns one line per difference.
func VerifyPresence(ctx context.Context, db Querier, devices []Device) ([]string, error) {
	ids := make([]string, len(devices))
	for i, d := range devices {
		ids[i] = d.ID
	}
	rows, err := db.Query(ctx, `SELECT device_id, status, status_since, last_online_time, last_offline_time
		FROM device_presence WHERE device_id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("read presence rows: %w", err)
	}
	got := make(map[string]Device, len(ids))
	for rows.Next() {
		var d Device
		if err := rows.Scan(&d.ID, &d.Status, &d.StatusSince, &d.LastOnlineTime, &d.LastOfflineTime); err != nil {
			return nil, err
		}
		got[d.ID] = d
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var bad []string
	for _, want := range devices {
		g, ok := got[want.ID]
		if !ok {
			bad = append(bad, want.ID+": no presence row")
			continue
		}
		if g.Status != want.Status || !g.StatusSince.Equal(want.StatusSince) {
			bad = append(bad, fmt.Sprintf("%s: status %s since %s, want %s since %s", want.ID, g.Status,
				g.StatusSince.UTC().Format(time.RFC3339Nano), want.Status, want.StatusSince.UTC().Format(time.RFC3339Nano)))
		}
		for _, f := range []struct {
			name string
			w, g *time.Time
		}{{"last_online_time", want.LastOnlineTime, g.LastOnlineTime}, {"last_offline_time", want.LastOfflineTime, g.LastOfflineTime}} {
			if (f.w == nil) != (f.g == nil) || (f.w != nil && !f.w.Equal(*f.g)) {
				bad = append(bad, fmt.Sprintf("%s: %s is %s, want %s", want.ID, f.name, fmtTime(f.g), fmtTime(f.w)))
			}
		}
	}
	return bad, nil
}

// WriteExpectedPresence writes the expected presence of every device as
// JSON lines, one Device per line.
func WriteExpectedPresence(w io.Writer, devices []Device) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	enc := json.NewEncoder(bw)
	for i := range devices {
		if err := enc.Encode(&devices[i]); err != nil {
			return fmt.Errorf("write expected presence of %s: %w", devices[i].ID, err)
		}
	}
	return bw.Flush()
}

// ReadExpectedPresence reads what WriteExpectedPresence wrote.
func ReadExpectedPresence(r io.Reader) ([]Device, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	var devices []Device
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var d Device
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if d.ID == "" {
			return nil, fmt.Errorf("line %d: no device_id", line)
		}
		devices = append(devices, d)
	}
	return devices, sc.Err()
}
