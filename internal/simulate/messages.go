package simulate

import (
	"bufio"
	"bytes"
	"cmp"
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

// DeviceMessage is the final state a device message's row must reach
// (README, "Device messages"), folded from what the generator rendered,
// not from what a decoder or the database make of it.
type DeviceMessage struct {
	DeviceID      string                     `json:"device_id"`
	MessageID     string                     `json:"message_id"`
	Status        notification.MessageStatus `json:"status"`
	ErrorCode     string                     `json:"error_code,omitempty"`
	ErrorMsg      string                     `json:"error_msg,omitempty"`
	LastRequestID string                     `json:"last_request_id"`
	Name          string                     `json:"name,omitempty"`
	Topic         string                     `json:"topic,omitempty"`
	ProductID     string                     `json:"product_id,omitempty"`
	AppID         string                     `json:"app_id,omitempty"`
	GatewayID     string                     `json:"gateway_id,omitempty"`
	NodeID        string                     `json:"node_id,omitempty"`
	Tags          json.RawMessage            `json:"tags,omitempty"`
	PendingTime   *time.Time                 `json:"pending_time,omitempty"`
	DeliveredTime *time.Time                 `json:"delivered_time,omitempty"`
	FailedTime    *time.Time                 `json:"failed_time,omitempty"`
	TimeoutTime   *time.Time                 `json:"timeout_time,omitempty"`
	LastEventTime time.Time                  `json:"last_event_time"`
	Events        int                        `json:"events"` // distinct notifications
}

// messageGen makes the device messages of a stream (Config.MessageShare),
// from a generator of its own so that, with no share, the stream does not
// change.
type messageGen struct {
	share float64
	cfg   Config
	rng   *rand.Rand
	// recent are the last messages made, whose ids a later message on
	// another device may reuse.
	recent []DeviceMessage
	// notes are every message's notifications as the decoder must read
	// them, by message: the expected rows are folded from them.
	notes  map[[2]string][]notification.Message
	order  [][2]string
	flat   []notification.Message
	poison [][]byte
}

func newMessageGen(cfg Config) *messageGen {
	return &messageGen{share: cfg.MessageShare, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed^0x3e55a6e, cfg.Seed+2)),
		notes: map[[2]string][]notification.Message{}}
}

// take reports whether the next downlink is a device message. It draws
// nothing when there is no share, so that the commands' stream stays what
// it was.
func (g *messageGen) take() bool {
	switch {
	case g.share <= 0:
		return false
	case g.share >= 1:
		return true
	}
	return g.rng.Float64() < g.share
}

// Error infos a FAILED message carries (the first is the documents').
var messageErrors = [][2]string{
	{"IOTDA.014112", "the device has not subscribed to the topic"},
	{"IOTDA.014016", "the device is offline"},
	{"IOTDA.014111", "the message is larger than the device accepts"},
}

var messageNames = []string{"set-reporting-interval", "config-push", "firmware-hint", "tariff-table"}

type messageStep struct {
	status notification.MessageStatus
	at     time.Time
	// tie: this notification's event time is the previous one's, so that
	// the merge must decide them by their digest.
	tie bool
}

// message makes downlink i, a device message created at created, and
// returns its notifications in platform order. No time is after limit
// unless it is zero.
func (g *messageGen) message(i int, created, limit time.Time) []timedMessage {
	rng := g.rng
	dev := rng.IntN(max(1, g.cfg.Devices))
	products := max(1, g.cfg.Products)
	m := DeviceMessage{
		DeviceID:  fmt.Sprintf("dev-%05d", dev),
		ProductID: fmt.Sprintf("prod-%02d", dev%products),
		AppID:     "app-cmdtrack-sim",
		NodeID:    fmt.Sprintf("node-%05d", dev),
		Name:      messageNames[rng.IntN(len(messageNames))],
	}
	m.GatewayID = m.DeviceID
	m.Topic = "$oc/devices/" + m.DeviceID + "/sys/messages/down"
	m.MessageID = uuid(rng, 'a')
	// A message id is the caller's and unique per device only: the same id
	// on another device is another message.
	if len(g.recent) > 0 && rng.IntN(10) == 0 {
		if other := g.recent[rng.IntN(len(g.recent))]; other.DeviceID != m.DeviceID {
			m.MessageID = other.MessageID
		}
	}
	if _, taken := g.notes[[2]string{m.DeviceID, m.MessageID}]; taken {
		// The same device drew an id it already used: that would be one
		// message, not two; give it its own.
		m.MessageID = fmt.Sprintf("msg-%d-%08d", g.cfg.Seed, i)
	}
	if len(g.recent) == 64 {
		g.recent = g.recent[1:]
	}
	g.recent = append(g.recent, m)
	tags := json.RawMessage(`[{"tag_key":"site","tag_value":"plant-` + m.ProductID[len(m.ProductID)-1:] + `"}]`)
	errInfo := messageErrors[rng.IntN(len(messageErrors))]

	steps := messageLifecycle(rng, created, limit)
	key := [2]string{m.DeviceID, m.MessageID}
	g.order = append(g.order, key)
	out := make([]timedMessage, 0, len(steps))
	var eventAt time.Time
	for k, st := range steps {
		if !st.tie {
			// The platform stamps the notification a little after the change.
			eventAt = st.at.Add(time.Duration(rng.IntN(40)) * time.Millisecond)
			if !limit.IsZero() && eventAt.After(limit) {
				eventAt = limit
			}
			eventAt = eventAt.Truncate(time.Millisecond)
		}
		n := notification.Message{
			DeviceID: m.DeviceID, MessageID: m.MessageID, Status: st.status,
			EventTime: eventAt, At: st.at.Truncate(time.Second),
			RequestID: fmt.Sprintf("msg-%016x", rng.Uint64()),
			Name:      m.Name, Topic: m.Topic,
			ProductID: m.ProductID, AppID: m.AppID, GatewayID: m.GatewayID, NodeID: m.NodeID,
		}
		if st.status == notification.MessageFailed {
			n.ErrorCode, n.ErrorMsg = errInfo[0], errInfo[1]
		}
		// Not every notification says everything: the row keeps what any
		// of them said.
		if k > 0 && rng.IntN(4) == 0 {
			n.Name = ""
		}
		if rng.IntN(3) > 0 {
			n.Tags = tags
		}
		millis := st.tie || rng.IntN(5) > 0 // event_time_ms is not always there
		if !millis {
			n.EventTime = eventAt.Truncate(time.Second)
		}
		body := g.render(&n, millis, rng)
		g.notes[key] = append(g.notes[key], n)
		out = append(out, timedMessage{at: st.at, msg: Message{Body: body, Kind: MessageChange}})
		if g.cfg.Poison > 0 && rng.Float64() < g.cfg.Poison {
			g.poison = append(g.poison, g.poisonFor(&n, len(g.poison)))
		}
	}
	return out
}

// messageLifecycle draws a message's path: held for an offline device
// (PENDING) and delivered, failed or expired (TIMEOUT) later, or at once;
// and the final-after-final cases the merge rule decides by the later event
// (README, "Device messages"): a FAILED message the platform retried and
// delivered, a message delivered just after its TTL ran out, and two final
// statuses of the very same event time, decided by their digest.
func messageLifecycle(rng *rand.Rand, created, limit time.Time) []messageStep {
	at := created
	next := func(maxMS int) time.Time {
		at = at.Add(time.Duration(200+rng.IntN(maxMS)) * time.Millisecond)
		return at
	}
	pending := messageStep{notification.MessagePending, created, false}
	p := rng.Float64()
	switch {
	case p < 0.12: // held: the device has not come back
		return []messageStep{pending}
	case p < 0.20: // its TTL (a day by default) ran out first
		const least, most = 200 * time.Millisecond, 86_400_000 * time.Millisecond
		end := next(int(most / time.Millisecond))
		if !limit.IsZero() && end.After(limit) {
			room := float64(limit.Sub(created) - least)
			end = created.Add(least + time.Duration(float64(end.Sub(created)-least)*room/float64(most))).Truncate(time.Millisecond)
		}
		return []messageStep{pending, {notification.MessageTimeout, end, false}}
	case p < 0.52: // the device was online
		return []messageStep{{notification.MessageDelivered, next(800), false}}
	case p < 0.66: // the device came back
		return []messageStep{pending, {notification.MessageDelivered, next(90_000), false}}
	case p < 0.76:
		return []messageStep{{notification.MessageFailed, next(800), false}}
	case p < 0.82:
		return []messageStep{pending, {notification.MessageFailed, next(60_000), false}}
	case p < 0.91: // failed, retried, delivered: ends DELIVERED
		return []messageStep{{notification.MessageFailed, next(800), false}, {notification.MessageDelivered, next(5000), false}}
	case p < 0.96: // a short TTL ran out just before the device took it: ends DELIVERED
		end := next(120_000)
		return []messageStep{pending, {notification.MessageTimeout, end, false}, {notification.MessageDelivered, next(3000), false}}
	default: // two final statuses of one event time: the digest decides
		end := next(800)
		first, second := notification.MessageFailed, notification.MessageDelivered
		if rng.IntN(2) == 0 {
			first, second = second, first
		}
		return []messageStep{{first, end, false}, {second, end, true}}
	}
}

// render writes n as the platform pushes it, its body in notify_data (the
// reference's shape) or beside it (the published sample's), and now and
// then in both places, the one beside notify_data a decoy the decoder must
// not read.
func (g *messageGen) render(n *notification.Message, millis bool, rng *rand.Rand) []byte {
	body := map[string]any{
		"message_id": n.MessageID,
		"topic":      n.Topic,
		"status":     string(n.Status),
		"timestamp":  n.At.Format(stampFormat),
	}
	if n.Name != "" {
		body["name"] = n.Name
	}
	if n.ErrorCode != "" {
		body["error_info"] = map[string]string{"error_code": n.ErrorCode, "error_msg": n.ErrorMsg}
	}
	hdr := map[string]any{
		"app_id": n.AppID, "device_id": n.DeviceID, "node_id": n.NodeID, "product_id": n.ProductID, "gateway_id": n.GatewayID,
	}
	if n.Tags != nil {
		hdr["tags"] = n.Tags
	}
	// The envelope's members in the platform's order, the resource first
	// (seed 000's sample), which the worker reads as a hint of the kind
	// (ingest.decode).
	doc := struct {
		Resource    string `json:"resource"`
		Event       string `json:"event"`
		EventTime   string `json:"event_time"`
		EventTimeMS string `json:"event_time_ms,omitempty"`
		RequestID   string `json:"request_id"`
		NotifyData  struct {
			Header map[string]any `json:"header"`
			Body   map[string]any `json:"body,omitempty"`
		} `json:"notify_data"`
		Body map[string]any `json:"body,omitempty"`
	}{Resource: notification.ResourceMessageStatus, Event: "update", EventTime: n.EventTime.Format(stampFormat),
		RequestID: n.RequestID}
	doc.NotifyData.Header = hdr
	if millis {
		doc.EventTimeMS = n.EventTime.Format("2006-01-02T15:04:05.000Z")
	}
	switch r := rng.IntN(20); {
	case r < 10:
		doc.NotifyData.Body = body
	case r < 19:
		doc.Body = body
	default:
		doc.NotifyData.Body = body
		doc.Body = map[string]any{"message_id": n.MessageID, "status": "PENDING", "timestamp": "20991231T000000Z", "name": "decoy"}
	}
	out, err := json.Marshal(doc)
	if err != nil {
		panic(err) // maps of strings and raw JSON always marshal
	}
	return out
}

// poisonFor is an unusable status change of n's message: it must change
// nothing (a dead letter each, with its reason).
func (g *messageGen) poisonFor(n *notification.Message, i int) []byte {
	head := fmt.Sprintf(`{"resource":"device.message.status","event":"update","request_id":"mp-%d",`, i)
	hdr := fmt.Sprintf(`{"device_id":%q,"product_id":%q}`, n.DeviceID, n.ProductID)
	switch g.rng.IntN(6) {
	case 0: // a misspelt status
		return fmt.Appendf(nil, `%s"event_time":"20261101T000000Z","notify_data":{"header":%s,"body":{"message_id":%q,"status":"DELIVRED"}}}`,
			head, hdr, n.MessageID)
	case 1: // no message id, body beside notify_data
		return fmt.Appendf(nil, `%s"event_time":"20261101T000000Z","notify_data":{"header":%s},"body":{"status":"DELIVERED"}}`, head, hdr)
	case 2: // from the future: it would pin the row for decades
		return fmt.Appendf(nil, `%s"event_time":"20991231T000000Z","notify_data":{"header":%s,"body":{"message_id":%q,"status":"FAILED"}}}`,
			head, hdr, n.MessageID)
	case 3: // a time in neither format
		return fmt.Appendf(nil, `%s"event_time":"20261101T000000Z","notify_data":{"header":%s,"body":{"message_id":%q,"status":"DELIVERED","timestamp":"yesterday"}}}`,
			head, hdr, n.MessageID)
	case 4: // no device
		return fmt.Appendf(nil, `%s"event_time":"20261101T000000Z","notify_data":{"header":{},"body":{"message_id":%q,"status":"DELIVERED"}}}`,
			head, n.MessageID)
	default: // no body anywhere
		return fmt.Appendf(nil, `%s"event_time":"20261101T000000Z","notify_data":{"header":%s}}`, head, hdr)
	}
}

// expected folds every message's notifications by the merge rule as README
// "Device messages" states it: the greatest (status rank, event time,
// digest) sets status, error and request id; name, topic and the header's
// facts keep any known value (the smallest if two disagree); each status's
// time is the earliest reported for it.
func (g *messageGen) expected() ([]DeviceMessage, int) {
	out := make([]DeviceMessage, 0, len(g.order))
	events := 0
	for _, key := range g.order {
		notes := g.notes[key]
		m := DeviceMessage{DeviceID: key[0], MessageID: key[1]}
		var win *notification.Message
		var winKey []byte
		seen := map[string]bool{}
		for i := range notes {
			n := &notes[i]
			k := n.Key()
			if !seen[string(k)] {
				seen[string(k)] = true
				events++
				m.Events++
			}
			if win == nil || cmp.Or(cmp.Compare(n.Rank(), win.Rank()), n.EventTime.Compare(win.EventTime), bytes.Compare(k, winKey)) > 0 {
				win, winKey = n, k
			}
			for _, f := range []struct {
				row *string
				v   string
			}{{&m.Name, n.Name}, {&m.Topic, n.Topic}, {&m.ProductID, n.ProductID}, {&m.AppID, n.AppID},
				{&m.GatewayID, n.GatewayID}, {&m.NodeID, n.NodeID}} {
				if f.v != "" && (*f.row == "" || f.v < *f.row) {
					*f.row = f.v
				}
			}
			if n.Tags != nil && (m.Tags == nil || bytes.Compare(n.Tags, m.Tags) < 0) {
				m.Tags = n.Tags
			}
			slot := map[notification.MessageStatus]**time.Time{
				notification.MessagePending: &m.PendingTime, notification.MessageDelivered: &m.DeliveredTime,
				notification.MessageFailed: &m.FailedTime, notification.MessageTimeout: &m.TimeoutTime,
			}[n.Status]
			if at := n.At; *slot == nil || at.Before(**slot) {
				*slot = &at
			}
		}
		m.Status, m.ErrorCode, m.ErrorMsg = win.Status, win.ErrorCode, win.ErrorMsg
		m.LastRequestID, m.LastEventTime = win.RequestID, win.EventTime
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b DeviceMessage) int {
		return cmp.Or(strings.Compare(a.DeviceID, b.DeviceID), strings.Compare(a.MessageID, b.MessageID))
	})
	for _, key := range g.order {
		g.flat = append(g.flat, g.notes[key]...)
	}
	return out, events
}

// MessageNotes returns the notifications of the stream's device messages
// as the decoder must read them, in the order they were made: a test checks
// the decoder against them.
func (s *Stream) MessageNotes() []notification.Message { return s.messageNotes }

// VerifyMessages compares the stored rows and history counts of device
// messages with their expected state and returns one line per difference.
func VerifyMessages(ctx context.Context, db Querier, msgs []DeviceMessage) ([]string, error) {
	var bad []string
	for start := 0; start < len(msgs); start += 5000 {
		chunk := msgs[start:min(start+5000, len(msgs))]
		devices, ids := make([]string, len(chunk)), make([]string, len(chunk))
		for i, m := range chunk {
			devices[i], ids[i] = m.DeviceID, m.MessageID
		}
		rows, err := db.Query(ctx, `
			SELECT m.device_id, m.message_id, m.status, coalesce(error_code, ''), coalesce(error_msg, ''),
			       coalesce(last_request_id, ''), coalesce(name, ''), coalesce(topic, ''), coalesce(product_id, ''),
			       coalesce(app_id, ''), coalesce(gateway_id, ''), coalesce(node_id, ''), tags::text,
			       pending_time, delivered_time, failed_time, timeout_time, last_event_time,
			       (SELECT count(*) FROM device_message_events e WHERE e.device_id = m.device_id AND e.message_id = m.message_id)
			FROM device_messages m JOIN unnest($1::text[], $2::text[]) AS k(device_id, message_id)
			  ON m.device_id = k.device_id AND m.message_id = k.message_id`, devices, ids)
		if err != nil {
			return nil, fmt.Errorf("read device message rows: %w", err)
		}
		got := make(map[[2]string]DeviceMessage, len(chunk))
		for rows.Next() {
			var g DeviceMessage
			var tags *string
			if err := rows.Scan(&g.DeviceID, &g.MessageID, &g.Status, &g.ErrorCode, &g.ErrorMsg, &g.LastRequestID, &g.Name,
				&g.Topic, &g.ProductID, &g.AppID, &g.GatewayID, &g.NodeID, &tags, &g.PendingTime, &g.DeliveredTime,
				&g.FailedTime, &g.TimeoutTime, &g.LastEventTime, &g.Events); err != nil {
				rows.Close()
				return nil, err
			}
			if tags != nil {
				g.Tags = json.RawMessage(*tags)
			}
			got[[2]string{g.DeviceID, g.MessageID}] = g
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		for _, want := range chunk {
			g, ok := got[[2]string{want.DeviceID, want.MessageID}]
			if !ok {
				bad = append(bad, fmt.Sprintf("message %s on %s: no row", want.MessageID, want.DeviceID))
				continue
			}
			bad = append(bad, compareMessage(want, g)...)
		}
	}
	return bad, nil
}

func compareMessage(want, got DeviceMessage) []string {
	var bad []string
	diff := func(field string, w, g any) {
		bad = append(bad, fmt.Sprintf("message %s on %s: %s is %v, want %v", want.MessageID, want.DeviceID, field, g, w))
	}
	for _, f := range []struct {
		name string
		w, g string
	}{
		{"status", string(want.Status), string(got.Status)}, {"error_code", want.ErrorCode, got.ErrorCode},
		{"error_msg", want.ErrorMsg, got.ErrorMsg}, {"last_request_id", want.LastRequestID, got.LastRequestID},
		{"name", want.Name, got.Name}, {"topic", want.Topic, got.Topic}, {"product_id", want.ProductID, got.ProductID},
		{"app_id", want.AppID, got.AppID}, {"gateway_id", want.GatewayID, got.GatewayID}, {"node_id", want.NodeID, got.NodeID},
	} {
		if f.w != f.g {
			diff(f.name, f.w, f.g)
		}
	}
	if !jsonEqual(want.Tags, got.Tags) {
		diff("tags", string(want.Tags), string(got.Tags))
	}
	for _, f := range []struct {
		name string
		w, g *time.Time
	}{
		{"pending_time", want.PendingTime, got.PendingTime}, {"delivered_time", want.DeliveredTime, got.DeliveredTime},
		{"failed_time", want.FailedTime, got.FailedTime}, {"timeout_time", want.TimeoutTime, got.TimeoutTime},
	} {
		if (f.w == nil) != (f.g == nil) || (f.w != nil && !f.w.Equal(*f.g)) {
			diff(f.name, fmtTime(f.w), fmtTime(f.g))
		}
	}
	if !want.LastEventTime.Equal(got.LastEventTime) {
		diff("last_event_time", want.LastEventTime.UTC().Format(time.RFC3339Nano), got.LastEventTime.UTC().Format(time.RFC3339Nano))
	}
	if want.Events != got.Events {
		diff("history rows", want.Events, got.Events)
	}
	return bad
}

// WriteExpectedMessages writes the expected state of every device message
// as JSON lines, one DeviceMessage per line.
func WriteExpectedMessages(w io.Writer, msgs []DeviceMessage) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	enc := json.NewEncoder(bw)
	for i := range msgs {
		if err := enc.Encode(&msgs[i]); err != nil {
			return fmt.Errorf("write expected state of message %s on %s: %w", msgs[i].MessageID, msgs[i].DeviceID, err)
		}
	}
	return bw.Flush()
}

// ReadExpectedMessages reads what WriteExpectedMessages wrote.
func ReadExpectedMessages(r io.Reader) ([]DeviceMessage, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	var msgs []DeviceMessage
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var m DeviceMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if m.DeviceID == "" || m.MessageID == "" {
			return nil, fmt.Errorf("line %d: no device_id or message_id", line)
		}
		msgs = append(msgs, m)
	}
	return msgs, sc.Err()
}
