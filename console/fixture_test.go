package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/console"
	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	stamp = "20060102T150405Z"
	ms    = "2006-01-02T15:04:05.000Z"
)

// The hostile stream: values a notification or a dead letter may carry that
// would run script or smuggle links if shown as markup.
const (
	hostileScript = `<script>window.pwned="script"</script>`
	hostileImg    = `"><img src=x onerror="window.pwned='img'">`
	hostileLink   = `javascript:window.pwned='link'`
	// hostileDevice is a device id made to break out of an attribute and a
	// URL path.
	hostileDevice = `dev"><img src=x onerror="window.pwned='device'">/../x?y#z`
	// hostileMessageDevice is hostileDevice without its '/', which a device
	// message's device id may not hold (notification.DecodeMessage: a
	// message is named device_id/message_id): a hostile message's device.
	hostileMessageDevice = `dev"><img src=x onerror="window.pwned='device'">%2F..?y#z`
	hostileBody          = `<script>window.pwned="dead"</script>"><img src=x onerror="window.pwned='dead-img'"><a href="javascript:window.pwned='dead-link'">click</a>`
)

// fixture is the stream every console test reads: a walk a newcomer takes
// (device meter-4711, its valve command), enough commands for two pages,
// a stuck command, failures for the outcome chart, a hostile notification
// and hostile and binary dead letters.
type fixture struct {
	st      *store.Store
	schema  string
	url     string // the schema owner's
	reader  string // the reader role's URL
	now     time.Time
	valve   string // meter-4711's valve command
	created time.Time
	stuck   string
	hostile string // the hostile notification's command
	deadID  int64  // the hostile dead letter
	binID   int64  // the binary dead letter
	// meter-4711's messages: one that failed (PENDING, then FAILED, in
	// both body shapes; its id is reused by meter-0008), one PENDING for
	// 30 minutes; a hostile one.
	msgFailed, msgStuck, msgHostile string
	// meter-4711's synchronous calls (device_calls rows, as `cmdtrack
	// send -sync/-properties` writes them).
	callSync, callProps string
	// The webhooks' outbox (migration 021): endpoint "billing" failing,
	// its events failed for good about the valve command (replayed once),
	// meter-4711's failed message, the refused property set and the
	// hostile command (a hostile error), in that order (ids ascending),
	// and two pending; endpoint "field-service" answering, its outbox
	// empty.
	hooksFailed []int64
}

// messageNotification is a device.message.status push, its body inside
// notify_data or, beside, next to it (the published sample's shape).
func messageNotification(device, id, product, status string, at time.Time, beside bool, errInfo map[string]string,
	extra map[string]any) []byte {
	body := map[string]any{"message_id": id, "name": "set-reporting-interval", "status": status,
		"topic": "$oc/devices/" + device + "/sys/messages/down", "timestamp": at.UTC().Format(stamp)}
	if errInfo != nil {
		body["error_info"] = errInfo
	}
	h := map[string]any{"app_id": "app-1", "device_id": device, "node_id": "node-1", "product_id": product, "gateway_id": device}
	for k, v := range extra {
		if k == "name" || k == "topic" {
			body[k] = v
		} else {
			h[k] = v
		}
	}
	data := map[string]any{"header": h}
	doc := map[string]any{
		"resource": "device.message.status", "event": "update",
		"event_time": at.UTC().Format(stamp), "event_time_ms": at.UTC().Format(ms),
		"request_id":  "req-" + id + "-" + status,
		"notify_data": data,
	}
	if beside {
		doc["body"] = body
	} else {
		data["body"] = body
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return b
}

// notification is a v5 device.command.status push.
func notification(cmd, device, product, status string, created, at time.Time, extra map[string]any, header map[string]any) []byte {
	body := map[string]any{"command_id": cmd, "created_time": created.UTC().Format(stamp), "status": status}
	for k, v := range extra {
		body[k] = v
	}
	h := map[string]any{"app_id": "app-1", "device_id": device, "node_id": "node-1", "product_id": product, "gateway_id": device}
	for k, v := range header {
		h[k] = v
	}
	doc := map[string]any{
		"resource": "device.command.status", "event": "update",
		"event_time": at.UTC().Format(stamp), "event_time_ms": at.UTC().Format("2006-01-02T15:04:05.000Z"),
		"request_id":  "req-" + cmd + "-" + status,
		"notify_data": map[string]any{"header": h, "body": body},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return b
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	st, schema, u := testenv.Schema(t)
	f := &fixture{st: st, schema: schema, url: u, now: time.Now().UTC().Truncate(time.Second)}
	lim := ingest.Limits{MaxBodyBytes: 1 << 20, MaxFutureSkew: time.Hour}
	var items []ingest.Item
	add := func(source string, bodies ...[]byte) {
		for _, b := range bodies {
			it := ingest.Classify(b, source, f.now, lim)
			require.True(t, it.Record != nil || it.DeadLetter != nil, "%s", b)
			items = append(items, it)
		}
	}

	// The newcomer's command: created 50 minutes ago, sent 1.5 s later,
	// delivered 2.5 s after that, answered 5 s after that.
	f.valve, f.created = "b1224afb-e9f0-4916-8220-b6bab568e888", f.now.Add(-50*time.Minute)
	c := f.created
	sent, delivered, answered := c.Add(1500*time.Millisecond), c.Add(4*time.Second), c.Add(9*time.Second)
	add("amqp:DefaultQueue",
		notification(f.valve, "meter-4711", "water-meter", "SENT", c, sent, map[string]any{"sent_time": sent.Format(ms)}, nil),
		notification(f.valve, "meter-4711", "water-meter", "DELIVERED", c, delivered, map[string]any{
			"sent_time": sent.Format(ms), "delivered_time": delivered.Format(ms)}, nil),
		notification(f.valve, "meter-4711", "water-meter", "SUCCESSFUL", c, answered, map[string]any{
			"sent_time": sent.Format(ms), "delivered_time": delivered.Format(ms),
			"response_time": answered.Format(ms), "result": map[string]any{"valve": "closed", "pressure_kpa": 212}}, nil))
	// A command of the same device stuck in SENT for 30 minutes.
	f.stuck = "stuck-0001"
	add("http", notification(f.stuck, "meter-4711", "water-meter", "SENT", f.now.Add(-31*time.Minute), f.now.Add(-30*time.Minute), nil, nil))
	// Its device is online again: the stuck page says so.
	add("amqp:DefaultQueue", fmt.Appendf(nil, `{"resource":"device.status","event":"update","event_time":%q,`+
		`"notify_data":{"header":{"device_id":"meter-4711"},"body":{"status":"ONLINE"}}}`, f.now.Add(-10*time.Minute).Format(stamp)))
	// 60 commands of another device, over the last six days, for
	// pagination and the outcome chart: every tenth failed, every fifteenth
	// timed out.
	for i := range 60 {
		id := fmt.Sprintf("page-%03d", i)
		created := f.now.Add(-2*time.Hour - time.Duration(i)*135*time.Minute)
		status := "SUCCESSFUL"
		switch {
		case i%10 == 0:
			status = "FAILED"
		case i%15 == 0:
			status = "TIMEOUT"
		}
		add("amqp:DefaultQueue", notification(id, "meter-0007", "gas-meter", status, created, created.Add(3*time.Second), nil, nil))
	}
	// The hostile notification.
	f.hostile = "hostile-0001"
	hc := f.now.Add(-40 * time.Minute)
	add("amqp:DefaultQueue", notification(f.hostile, hostileDevice, "prod"+hostileImg, "FAILED", hc, hc.Add(2*time.Second),
		map[string]any{"response_time": hc.Add(2 * time.Second).Format(stamp),
			"result": map[string]any{"script": hostileScript, "img": hostileImg, "link": hostileLink}},
		map[string]any{"tags": []map[string]string{{"tag_key": hostileScript, "tag_value": hostileLink}}}))
	// Device messages. meter-4711's configuration message: held for the
	// device 45 minutes ago, failed a minute later.
	f.msgFailed, f.msgStuck = "cfg-0001", "cfg-0002"
	pend := f.now.Add(-45 * time.Minute)
	add("amqp:DefaultQueue",
		messageNotification("meter-4711", f.msgFailed, "water-meter", "PENDING", pend, true, nil, nil),
		messageNotification("meter-4711", f.msgFailed, "water-meter", "FAILED", pend.Add(time.Minute), false,
			map[string]string{"error_code": "IOTDA.014112", "error_msg": "the device has not subscribed to the topic"},
			map[string]any{"tags": []map[string]string{{"tag_key": "site", "tag_value": "plant-7"}}}))
	// The same id on another device is another message.
	add("http", messageNotification("meter-0008", f.msgFailed, "water-meter", "DELIVERED", f.now.Add(-20*time.Minute), false, nil, nil))
	// A message PENDING for 30 minutes: stuck beside the stuck command.
	add("amqp:DefaultQueue", messageNotification("meter-4711", f.msgStuck, "water-meter", "PENDING", f.now.Add(-30*time.Minute), false, nil, nil))
	// 60 messages of meter-0007 over the last six days, as its commands:
	// every tenth failed, every fifteenth timed out.
	for i := range 60 {
		id := fmt.Sprintf("msg-%03d", i)
		at := f.now.Add(-2*time.Hour - time.Duration(i)*135*time.Minute)
		status := "DELIVERED"
		var e map[string]string
		switch {
		case i%10 == 0:
			status, e = "FAILED", map[string]string{"error_code": "IOTDA.014112", "error_msg": "not subscribed"}
		case i%15 == 0:
			status = "TIMEOUT"
		}
		add("amqp:DefaultQueue", messageNotification("meter-0007", id, "gas-meter", "PENDING", at, i%2 == 0, nil, nil),
			messageNotification("meter-0007", id, "gas-meter", status, at.Add(3*time.Second), i%2 == 1, e, nil))
	}
	// The hostile message.
	f.msgHostile = `msg"><img src=x onerror="window.pwned='msg'">/../x?y#z`
	add("amqp:DefaultQueue", messageNotification(hostileMessageDevice, f.msgHostile, "prod"+hostileImg, "FAILED", hc, false,
		map[string]string{"error_code": hostileImg, "error_msg": hostileScript},
		map[string]any{"name": hostileScript, "topic": hostileLink, "tags": []map[string]string{{"tag_key": hostileScript, "tag_value": hostileLink}}}))
	// Dead letters: hostile text, and bytes that are not UTF-8.
	add("amqp:DefaultQueue", []byte(hostileBody))
	add("amqp:DefaultQueue", []byte{0xff, 0xfe, '<', 's', 'c', 'r', 'i', 'p', 't', '>', 0x00, 0x80})
	_, err := st.Apply(ctx, items)
	require.NoError(t, err)
	require.NoError(t, st.RefreshRollup(ctx, 8, f.now))
	// What `cmdtrack send` records for a command it created.
	_, err = st.Pool().Exec(ctx, `UPDATE device_commands SET service_id = 'Valve', command_name = 'CLOSE',
		paras = '{"valve":"close","within_s":30}', send_strategy = 'immediately' WHERE command_id = $1`, f.valve)
	require.NoError(t, err)
	// meter-4711's synchronous calls, as `cmdtrack send -sync` and
	// `-properties` record them: a command the device answered, and a
	// property set the platform refused.
	f.callSync, f.callProps = "call-0001", "call-0002"
	_, err = st.Pool().Exec(ctx, `INSERT INTO device_calls (call_id, call_kind, device_id, product_id, service_id, command_name,
		request, status, status_rank, command_id, response, http_status, error_code, error_msg, sent_time, finished_time,
		last_event_time, last_event_key)
		VALUES ($1, 'command', 'meter-4711', 'water-meter', 'Valve', 'OPEN', '{"valve":"open"}', 'SUCCESSFUL', 1, 'sync-cmd-1',
			'{"result_code":0,"paras":{"valve":"open"}}', 200, NULL, NULL, $3::timestamptz, $3::timestamptz + interval '1.2 s', $3::timestamptz + interval '1.2 s', '\x01'),
		($2, 'properties', 'meter-4711', 'water-meter', 'Config', NULL, '{"services":[{"service_id":"Config","properties":{"interval":60}}]}',
			'FAILED', 1, NULL, NULL, 409, 'IOTDA.014016', 'the device is offline', $4::timestamptz, $4::timestamptz + interval '0.3 s', $4::timestamptz + interval '0.3 s', '\x02')`,
		f.callSync, f.callProps, f.now.Add(-15*time.Minute), f.now.Add(-5*time.Minute))
	require.NoError(t, err)
	for _, h := range []struct {
		typ, subject, state, err string
		occurred, failed         time.Duration // ago
		replayed                 bool
	}{
		{"command.finished", f.valve, "failed", "HTTP 503: down for maintenance", 50 * time.Minute, 20 * time.Minute, true},
		{"message.finished", "meter-4711/" + f.msgFailed, "failed", "HTTP 410", 44 * time.Minute, 15 * time.Minute, false},
		{"call.finished", f.callProps, "failed", "no answer within 10s (CMDTRACK_WEBHOOK_TIMEOUT)", 5 * time.Minute, 4 * time.Minute, false},
		{"command.finished", f.hostile, "failed", hostileScript + hostileImg + hostileLink, 40 * time.Minute, 3 * time.Minute, false},
		{"command.finished", "page-001", "pending", "HTTP 503", 90 * time.Minute, 0, false},
		{"command.finished", "page-002", "pending", "", 10 * time.Minute, 0, false},
	} {
		var id int64
		failed, replayed := &time.Time{}, &time.Time{}
		*failed, *replayed = f.now.Add(-h.failed), f.now.Add(-30*time.Minute)
		if h.state != "failed" {
			failed = nil
		}
		if !h.replayed {
			replayed = nil
		}
		require.NoError(t, st.Pool().QueryRow(ctx, `INSERT INTO webhook_deliveries (endpoint, webhook_id, type, subject, product_id,
			status, from_status, occurred_at, attempts, state, last_error, failed_at, replayed_at)
			VALUES ('billing', 'evt_' || $1::int, $2, $3, 'water-meter', 'FAILED', '', $4, 7, $5, nullif($6, ''), $7, $8) RETURNING id`,
			len(f.hooksFailed)+1, h.typ, h.subject, f.now.Add(-h.occurred), h.state, h.err, failed, replayed).Scan(&id))
		if h.state == "failed" {
			f.hooksFailed = append(f.hooksFailed, id)
		}
	}
	_, err = st.Pool().Exec(ctx, `INSERT INTO webhook_endpoints (endpoint, delivered, failed, last_success_at, last_failure_at, last_error)
		VALUES ('billing', 120, 5, $1::timestamptz - interval '2 hours', $1::timestamptz - interval '1 minute', 'HTTP 503: down for maintenance'),
			('field-service', 42, 0, $1::timestamptz - interval '1 minute', NULL, NULL)`, f.now)
	require.NoError(t, err)
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT id FROM dead_letters WHERE reason_class = 'invalid_json'`).Scan(&f.deadID))
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT id FROM dead_letters WHERE reason_class = 'not_utf8'`).Scan(&f.binID))
	f.reader = readerURL(t, st, schema, u)
	return f
}

// readerURL makes a login role with the README's cmdtrack_reader grants
// (USAGE on the schema, SELECT on its tables) and returns the schema's URL
// as that role.
func readerURL(t *testing.T, st *store.Store, schema, schemaURL string) string {
	t.Helper()
	ctx := context.Background()
	role := testenv.Name("reader_")
	for _, q := range []string{
		`CREATE ROLE ` + role + ` LOGIN PASSWORD 'reader-pw'`,
		`GRANT USAGE ON SCHEMA ` + schema + ` TO ` + role,
		`GRANT SELECT ON ALL TABLES IN SCHEMA ` + schema + ` TO ` + role,
	} {
		_, err := st.Pool().Exec(ctx, q)
		require.NoError(t, err, q)
	}
	// Before the schema is dropped (cleanups run last first).
	t.Cleanup(func() {
		_, _ = st.Pool().Exec(context.Background(), `DROP OWNED BY `+role)
		_, _ = st.Pool().Exec(context.Background(), `DROP ROLE `+role)
	})
	u, err := url.Parse(schemaURL)
	require.NoError(t, err)
	u.User = url.UserPassword(role, "reader-pw")
	return u.String()
}

// handler serves the fixture as the reader role, in read-only transactions
// as `cmdtrack console` does.
func (f *fixture) handler(t *testing.T, cfg console.Config) http.Handler {
	t.Helper()
	st, err := store.Open(context.Background(), f.reader, store.Options{MaxConns: 4, ReadOnly: true})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	h, err := console.NewHandler(st.Pool(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	return h
}

var discard = slog.New(slog.DiscardHandler)

// newServer serves h over HTTP for the test; it returns the base URL.
func newServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// server serves the fixture over HTTP.
func (f *fixture) server(t *testing.T, cfg console.Config) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(f.handler(t, cfg))
	t.Cleanup(srv.Close)
	return srv
}
