// Package simulate makes realistic IoTDA command status notification streams
// (the JSON shape of the platform's push notification, seed 000) together
// with the final state each command must end in, and checks a database
// against that state. The end-to-end tests and cmd/iotda-sim share it.
package simulate

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/cmdtrack/cmdtrack/notification"
)

// Config shapes a stream.
type Config struct {
	Commands int
	Devices  int
	Products int
	Seed     uint64
	// OutOfOrder is the fraction of messages moved to a random later place
	// (1 shuffles the whole stream).
	OutOfOrder float64
	// Duplicate is the fraction of messages sent twice.
	Duplicate float64
	// Poison is the number of unusable messages per valid one.
	Poison float64
	// Foreign is the number of other-resource notifications (skipped by the
	// worker) per valid one.
	Foreign float64
	// Start is the created_time of the first command, the next ones 37 ms
	// apart: fixed dates, for tests and benchmarks. Zero: Now decides.
	Start time.Time
	// Now, when Start is zero, dates the stream just before it instead: the
	// commands are created evenly over the 22 hours up to 5 minutes before
	// Now, and no time in the stream is later than a minute before Now
	// (an expiry, which may otherwise come a day after its command, is
	// drawn in the room left). Published at once, such a stream is all in
	// the console's last 24 hours (from the hour 23 hours before the
	// current one) for 55 minutes at least, and its commands that stay SENT
	// or DELIVERED are stuck (quiet for more than 10 minutes) but for the
	// last few.
	// With both zero, the stream starts at FixedStart.
	Now time.Time
	// Presence adds device status changes (device.status) coherent with
	// the commands: a device goes offline while a command of its times
	// out, and comes back after; one whose command stays SENT or DELIVERED
	// goes offline for good. Poison then also covers them. Off, the stream
	// is exactly what it was without presence.
	Presence bool
	// MessageShare is the share of the downlinks that are device messages
	// (device.message.status, README "Device messages"), the rest
	// commands: Commands then counts both. Messages come with disorder,
	// duplicates, poison (Poison also covers them), both body shapes,
	// final-after-final statuses, and message ids reused on other devices.
	// 1 makes a stream of messages only. Zero: the stream is exactly what
	// it was without messages.
	MessageShare float64
}

// FixedStart is where a stream starts that neither Start nor Now dates:
// the day the tests' and the benchmarks' streams are dated at.
var FixedStart = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// Dating near Now (Config.Now): the span the commands are created over, how
// long before Now the last one is, and how long before Now the last time of
// the stream is at the latest.
const (
	recentSpan  = 22 * time.Hour
	recentQuiet = 5 * time.Minute
	recentLimit = time.Minute
)

// Message is one body to publish.
type Message struct {
	Body      []byte
	CommandID string // empty for poison and foreign messages
	Kind      Kind
}

// Kind says what the worker must do with a message.
type Kind uint8

// Kinds of message.
const (
	Valid          Kind = iota // stored
	Poison                     // dead-lettered
	Foreign                    // settled and skipped
	PresenceChange             // stored in device_presence
	MessageChange              // stored in device_messages
)

// Command is the final state a command's row must reach.
type Command struct {
	ID            string              `json:"command_id"`
	DeviceID      string              `json:"device_id"`
	ProductID     string              `json:"product_id"`
	AppID         string              `json:"app_id"`
	GatewayID     string              `json:"gateway_id"`
	NodeID        string              `json:"node_id"`
	Status        notification.Status `json:"status"`
	Result        json.RawMessage     `json:"result,omitempty"`
	CreatedTime   time.Time           `json:"created_time"`
	SentTime      *time.Time          `json:"sent_time,omitempty"`
	DeliveredTime *time.Time          `json:"delivered_time,omitempty"`
	ResponseTime  *time.Time          `json:"response_time,omitempty"`
	LastEventTime time.Time           `json:"last_event_time"`
	Events        int                 `json:"events"` // distinct notifications

	// presence is how many device status changes the command caused.
	presence int
}

// Stream is a generated stream and what it must produce.
type Stream struct {
	Messages  []Message
	Commands  []Command
	Events    int // distinct valid notifications (history rows)
	Poison    int // distinct poison bodies (dead-letter rows)
	Foreign   int
	Published int
	// Devices is the final presence of every device that changed status
	// (Config.Presence), and PresenceChanges the distinct changes.
	Devices         []Device
	PresenceChanges int
	// DeviceMessages is the final row of every device message
	// (Config.MessageShare), and MessageEvents its distinct notifications
	// (history rows).
	DeviceMessages []DeviceMessage
	MessageEvents  int

	messageNotes []notification.Message
	// downlinks is how many valid notifications each downlink made, in
	// order: GenerateN sizes a stream from it.
	downlinks []int
}

type step struct {
	status notification.Status
	at     time.Time
}

// Generate makes a stream. The same Config gives the same stream.
func Generate(cfg Config) *Stream {
	if cfg.Devices < 1 {
		cfg.Devices = max(1, cfg.Commands/4)
	}
	if cfg.Products < 1 {
		cfg.Products = 3
	}
	// Command i is created at Start + i*every; no time is after limit
	// unless it is zero.
	every, limit := 37*time.Millisecond, time.Time{}
	switch {
	case !cfg.Start.IsZero():
	case !cfg.Now.IsZero():
		// UTC: the bodies' stamps are formatted with a literal Z.
		limit = cfg.Now.UTC().Add(-recentLimit)
		cfg.Start = cfg.Now.UTC().Add(-recentQuiet - recentSpan)
		every = recentSpan / time.Duration(max(1, cfg.Commands-1))
	default:
		cfg.Start = FixedStart
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	s := &Stream{}
	type timed struct {
		at  time.Time
		msg Message
	}
	var timeline []timed
	pres := newPresenceGen(cfg)
	msgGen := newMessageGen(cfg)
	for i := range cfg.Commands {
		if msgGen.take() {
			notes := msgGen.message(i, cfg.Start.Add(time.Duration(i)*every).Truncate(time.Second), limit)
			for _, m := range notes {
				timeline = append(timeline, timed(m))
			}
			s.downlinks = append(s.downlinks, len(notes))
			continue
		}
		dev := rng.IntN(cfg.Devices)
		c := Command{
			ID:          commandID(cfg.Seed, i),
			DeviceID:    fmt.Sprintf("dev-%05d", dev),
			ProductID:   fmt.Sprintf("prod-%02d", dev%cfg.Products),
			AppID:       "app-cmdtrack-sim",
			NodeID:      fmt.Sprintf("node-%05d", dev),
			CreatedTime: cfg.Start.Add(time.Duration(i) * every).Truncate(time.Second),
		}
		c.GatewayID = c.DeviceID
		steps := lifecycle(rng, c.CreatedTime, limit)
		var result json.RawMessage
		last := steps[len(steps)-1]
		switch last.status {
		case notification.Successful:
			result = json.RawMessage(fmt.Sprintf(`{"code":0,"value":"ON","seq":%d}`, i))
		case notification.Failed:
			result = json.RawMessage(`{"code":17,"error":"device busy"}`)
		}
		for k, st := range steps {
			body := render(&c, steps[:k+1], result, rng)
			timeline = append(timeline, timed{st.at, Message{Body: body, CommandID: c.ID, Kind: Valid}})
		}
		c.Status, c.LastEventTime, c.Events = last.status, last.at, len(steps)
		if last.status == notification.Successful || last.status == notification.Failed {
			c.Result = result
		}
		for _, st := range steps {
			// Bodies carry whole seconds (yyyyMMddTHHmmssZ), so do the
			// expected lifecycle times; the event time keeps milliseconds.
			at := st.at.Truncate(time.Second)
			switch st.status {
			case notification.Sent:
				c.SentTime = &at
			case notification.Delivered:
				c.DeliveredTime = &at
			case notification.Successful, notification.Failed:
				c.ResponseTime = &at
			}
		}
		for _, m := range pres.command(&c, steps) {
			timeline = append(timeline, timed(m))
		}
		s.Commands = append(s.Commands, c)
		s.Events += len(steps)
		s.downlinks = append(s.downlinks, len(steps)+c.presence)
	}
	s.Devices, s.PresenceChanges = pres.expected()
	s.DeviceMessages, s.MessageEvents = msgGen.expected()
	s.messageNotes = msgGen.flat
	// Platform order first: by event time.
	slices.SortStableFunc(timeline, func(a, b timed) int { return a.at.Compare(b.at) })
	msgs := make([]Message, 0, len(timeline)*2)
	for _, t := range timeline {
		msgs = append(msgs, t.msg)
	}
	valid := len(msgs)
	for i := range int(cfg.Poison*float64(valid) + 0.5) {
		msgs = insertAt(rng, msgs, Message{Body: poison(rng, i), Kind: Poison})
		s.Poison++
	}
	for _, body := range pres.poison {
		msgs = insertAt(rng, msgs, Message{Body: body, Kind: Poison})
		s.Poison++
	}
	for _, body := range msgGen.poison {
		msgs = insertAt(rng, msgs, Message{Body: body, Kind: Poison})
		s.Poison++
	}
	for i := range int(cfg.Foreign*float64(valid) + 0.5) {
		msgs = insertAt(rng, msgs, Message{Body: foreign(i), Kind: Foreign})
		s.Foreign++
	}
	for range int(cfg.Duplicate*float64(len(msgs)) + 0.5) {
		j := rng.IntN(len(msgs))
		// A duplicate arrives after the original, as a redelivery does.
		msgs = append(msgs, Message{})
		k := j + 1 + rng.IntN(len(msgs)-j-1)
		copy(msgs[k+1:], msgs[k:])
		msgs[k] = msgs[j]
	}
	if cfg.OutOfOrder >= 1 {
		rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	} else {
		for range int(cfg.OutOfOrder*float64(len(msgs)) + 0.5) {
			i := rng.IntN(len(msgs))
			j := i + rng.IntN(min(len(msgs)-i, 500))
			msgs[i], msgs[j] = msgs[j], msgs[i]
		}
	}
	s.Messages = msgs
	s.Published = len(msgs)
	return s
}

// lifecycle draws a plausible path with consistent, increasing times, none
// after limit unless it is zero. It draws the same numbers either way, so
// that a limit changes the times of a stream, never its paths.
func lifecycle(rng *rand.Rand, created, limit time.Time) []step {
	at := created
	next := func(maxMS int) time.Time {
		at = at.Add(time.Duration(50+rng.IntN(maxMS)) * time.Millisecond)
		return at
	}
	p := rng.Float64()
	steps := []step{{notification.Pending, created}}
	switch {
	case p < 0.06: // expired in the platform's cache, up to a day later
		const least, most = 50 * time.Millisecond, 86_400_000 * time.Millisecond
		at := next(int(most / time.Millisecond))
		if !limit.IsZero() && at.After(limit) {
			// The same draw, scaled into the room before limit, in whole
			// milliseconds as the bodies carry it.
			room := float64(limit.Sub(created) - least)
			at = created.Add(least + time.Duration(float64(at.Sub(created)-least)*room/float64(most))).Truncate(time.Millisecond)
		}
		return append(steps, step{notification.Expired, at})
	case p < 0.10: // still on its way
		return append(steps, step{notification.Sent, next(2000)})
	}
	steps = append(steps, step{notification.Sent, next(2000)}, step{notification.Delivered, next(1500)})
	switch {
	case p < 0.14: // delivered, waiting for the device
		return steps
	case p < 0.22:
		return append(steps, step{notification.Timeout, next(30_000)})
	case p < 0.32:
		return append(steps, step{notification.Failed, next(3000)})
	default:
		return append(steps, step{notification.Successful, next(3000)})
	}
}

const stampFormat = "20060102T150405Z"

// render writes the notification for the last of steps, with the timestamps
// known at that point, in the exact shape of the platform's example.
func render(c *Command, steps []step, result json.RawMessage, rng *rand.Rand) []byte {
	last := steps[len(steps)-1]
	body := map[string]any{
		"command_id":   c.ID,
		"created_time": c.CreatedTime.Format(stampFormat),
		"status":       string(last.status),
	}
	for _, st := range steps {
		switch st.status {
		case notification.Sent:
			body["sent_time"] = st.at.Format(stampFormat)
		case notification.Delivered:
			body["delivered_time"] = st.at.Format(stampFormat)
		case notification.Successful, notification.Failed:
			body["response_time"] = st.at.Format(stampFormat)
			body["result"] = result
		}
	}
	doc := map[string]any{
		"resource":      "device.command.status",
		"event":         "update",
		"event_time":    last.at.Format(stampFormat),
		"event_time_ms": last.at.Format("2006-01-02T15:04:05.000Z"),
		"request_id":    uuid(rng, '8'),
		"notify_data": map[string]any{
			"header": map[string]any{
				"app_id":     c.AppID,
				"device_id":  c.DeviceID,
				"node_id":    c.NodeID,
				"product_id": c.ProductID,
				"gateway_id": c.GatewayID,
				"tags":       []map[string]string{{"tag_key": "site", "tag_value": "plant-" + c.ProductID[len(c.ProductID)-1:]}},
			},
			"body": body,
		},
	}
	if rng.IntN(10) == 0 {
		doc["resource"] = "device.commmad.status" // the API reference's spelling
	}
	out, err := json.Marshal(doc)
	if err != nil {
		panic(err) // maps of strings and raw JSON always marshal
	}
	return out
}

func poison(rng *rand.Rand, i int) []byte {
	switch rng.IntN(7) {
	case 0:
		return fmt.Appendf(nil, `{"resource":"device.command.status","event":"update","notify_data":{"header":{},"body":{"command_id":"p%d","status":"SENT"`, i)
	case 1:
		return fmt.Appendf(nil, `{"resource":"device.command.status","event":"update","event_time":"20261101T000000Z","notify_data":{"header":{},"body":{"status":"SENT","n":%d}}}`, i)
	case 2:
		return fmt.Appendf(nil, `{"resource":"device.command.status","event":"update","event_time":"20261101T000000Z","notify_data":{"header":{},"body":{"command_id":"p%d","status":"LOST"}}}`, i)
	case 3:
		return fmt.Appendf(nil, `{"resource":"device.command.status","event":"update","event_time":"yesterday","notify_data":{"header":{},"body":{"command_id":"p%d","status":"SENT"}}}`, i)
	case 4:
		return append(fmt.Appendf(nil, `{"resource":"device.command.status","n":%d,"x":"`, i), 0xff, 0xfe, '"', '}')
	case 5:
		return fmt.Appendf(nil, `{"resource":"device.command.status","event":"update","event_time":"20261101T000000Z","notify_data":{"header":{},"body":{"command_id":"p%d'; DROP TABLE device_commands;--","status":"SENT","result":{"s":"\u0000"}}}}`, i)
	default:
		return fmt.Appendf(nil, `[%d, "not an object"]`, i)
	}
}

func foreign(i int) []byte {
	return fmt.Appendf(nil, `{"resource":"device.property","event":"report","event_time":"20261101T000000Z","notify_data":{"header":{"device_id":"dev-%05d"},"body":{"services":[{"service_id":"temp","properties":{"t":%d}}]}}}`, i, i%40)
}

func insertAt(rng *rand.Rand, msgs []Message, m Message) []Message {
	i := rng.IntN(len(msgs) + 1)
	msgs = append(msgs, Message{})
	copy(msgs[i+1:], msgs[i:])
	msgs[i] = m
	return msgs
}

// Bodies returns the bodies of msgs, in order, ready to publish.
func Bodies(msgs []Message) [][]byte {
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = m.Body
	}
	return out
}

// commandID is the i-th command's id: a UUID, as the platform allocates
// (seed 002's example), derived from the seed and i so that drawing it
// takes nothing from the stream's random source.
func commandID(seed uint64, i int) string {
	return uuid(rand.New(rand.NewPCG(seed, uint64(i))), 'b')
}

// uuid draws a version 4 UUID from r, its variant digit given (the
// simulator's kinds of ids use their own, as they always have: the streams'
// bytes stay as they were).
func uuid(r *rand.Rand, variant byte) string {
	return fmt.Sprintf("%08x-%04x-4%03x-%c%03x-%012x", r.Uint32(), r.IntN(1<<16), r.IntN(1<<12), variant, r.IntN(1<<12), r.Uint64()&(1<<48-1))
}
