package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/console"
	"github.com/cmdtrack/cmdtrack/store"
)

func get(t *testing.T, base, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	// Redirects are part of what is tested.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

var asJSON = map[string]string{"Accept": "application/json"}

func getJSON(t *testing.T, base, path string, into any) *http.Response {
	t.Helper()
	resp, body := get(t, base, path, asJSON)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "%s: %s", path, body)
	require.NoError(t, json.Unmarshal([]byte(body), into), "%s: %s", path, body)
	return resp
}

// Every page answers as the reader role (SELECT only), in read-only
// transactions: the console needs nothing more, and writes nothing.
func TestEveryPageAsReader(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})
	pages := []string{
		"/", "/commands", "/commands?device=meter-4711", "/commands?product=gas-meter&status=FAILED",
		"/commands?since=2020-01-01&until=2099-01-01", "/commands/" + f.valve, "/commands/" + f.valve + "?history=all",
		"/devices/meter-4711", "/stuck", "/stuck?quiet=1h", "/dead-letters", "/dead-letters?class=invalid_json",
		"/dead-letters/" + itoa(f.deadID), "/dead-letters/" + itoa(f.binID), "/outcomes", "/outcomes?product=gas-meter&days=7",
		"/messages", "/messages?device=meter-4711", "/messages?product=gas-meter&status=FAILED",
		"/messages?since=2020-01-01&until=2099-01-01", "/messages/meter-4711/" + f.msgFailed,
		"/messages/meter-4711/" + f.msgFailed + "?history=all", "/calls/" + f.callSync, "/calls/" + f.callProps,
		"/webhooks", "/webhooks?endpoint=billing", "/webhooks?endpoint=billing&before_id=" + itoa(f.hooksFailed[2]),
		"/static/style.css", "/static/favicon.svg",
	}
	for _, p := range pages {
		resp, body := get(t, srv.URL, p, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", p, body)
		require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'self'", p)
		require.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'none'", p)
		if !strings.HasPrefix(p, "/static/") {
			require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"), p)
			require.NotContains(t, body, "<script", "%s: the console sends no script", p)
			resp, body = get(t, srv.URL, p, asJSON)
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", p, body)
			require.True(t, json.Valid([]byte(body)), p)
		}
	}

	// The role really can only read: the pages above proved that is enough.
	st, err := store.Open(context.Background(), f.reader, store.Options{MaxConns: 1})
	require.NoError(t, err)
	defer st.Close()
	_, err = st.Pool().Exec(context.Background(), `UPDATE device_commands SET status = 'FAILED'`)
	require.ErrorContains(t, err, "permission denied")
	// And the console's own connections refuse a write whatever the role.
	ro, err := store.Open(context.Background(), f.url, store.Options{MaxConns: 1, ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	_, err = ro.Pool().Exec(context.Background(), `DELETE FROM dead_letters`)
	require.ErrorContains(t, err, "read-only transaction")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// The command page's data: the row, the durations between its stages and
// the timeline in event order with the time since each previous event.
func TestCommandJSON(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})
	var p struct {
		Command struct {
			CommandID      string          `json:"command_id"`
			DeviceID       string          `json:"device_id"`
			ProductID      string          `json:"product_id"`
			Status         string          `json:"status"`
			Result         json.RawMessage `json:"result"`
			QueuedForMS    *int64          `json:"queued_for_ms"`
			DeliveryTookMS *int64          `json:"delivery_took_ms"`
			DeviceTookMS   *int64          `json:"device_took_ms"`
			TotalMS        *int64          `json:"total_ms"`
			CreatedTime    string          `json:"created_time"`
			ServiceID      string          `json:"service_id"`
			CommandName    string          `json:"command_name"`
			Paras          json.RawMessage `json:"paras"`
			SendStrategy   string          `json:"send_strategy"`
		} `json:"command"`
		Timeline []struct {
			Status          string `json:"status"`
			Source          string `json:"source"`
			RequestID       string `json:"request_id"`
			EventTime       string `json:"event_time"`
			SincePreviousMS *int64 `json:"since_previous_ms"`
			Payload         string `json:"payload"`
		} `json:"timeline"`
		TimelineFrom string `json:"timeline_from"`
		TimelineAll  bool   `json:"timeline_all"`
	}
	getJSON(t, srv.URL, "/commands/"+f.valve, &p)
	c := p.Command
	require.Equal(t, f.valve, c.CommandID)
	require.Equal(t, "meter-4711", c.DeviceID)
	require.Equal(t, "SUCCESSFUL", c.Status)
	require.JSONEq(t, `{"valve":"closed","pressure_kpa":212}`, string(c.Result))
	require.Equal(t, "Valve", c.ServiceID)
	require.Equal(t, "CLOSE", c.CommandName)
	require.JSONEq(t, `{"valve":"close","within_s":30}`, string(c.Paras))
	require.Equal(t, "immediately", c.SendStrategy)
	require.EqualValues(t, 1500, *c.QueuedForMS)
	require.EqualValues(t, 2500, *c.DeliveryTookMS)
	require.EqualValues(t, 5000, *c.DeviceTookMS)
	require.EqualValues(t, 9000, *c.TotalMS)
	require.NotEmpty(t, p.TimelineFrom)
	require.False(t, p.TimelineAll)
	require.Len(t, p.Timeline, 3)
	var got []string
	for _, e := range p.Timeline {
		got = append(got, e.Status)
		require.Equal(t, "amqp:DefaultQueue", e.Source)
		require.Equal(t, "req-"+f.valve+"-"+e.Status, e.RequestID)
		require.True(t, json.Valid([]byte(e.Payload)))
		require.Contains(t, e.Payload, `"status":"`+e.Status+`"`, "the payload as received")
	}
	require.Equal(t, []string{"SENT", "DELIVERED", "SUCCESSFUL"}, got)
	require.Nil(t, p.Timeline[0].SincePreviousMS)
	require.EqualValues(t, 2500, *p.Timeline[1].SincePreviousMS)
	require.EqualValues(t, 5000, *p.Timeline[2].SincePreviousMS)

	// The whole history gives the same here.
	var all struct {
		Timeline    []json.RawMessage `json:"timeline"`
		TimelineAll bool              `json:"timeline_all"`
	}
	getJSON(t, srv.URL, "/commands/"+url.PathEscape(f.valve)+"?history=all", &all)
	require.True(t, all.TimelineAll)
	require.Len(t, all.Timeline, 3)
}

// The other pages' documented fields.
func TestPagesJSON(t *testing.T) {
	t.Parallel()
	f := setup(t)
	// The fixture's stuck command has been quiet for 30 minutes.
	srv := f.server(t, console.Config{Addr: console.DefaultAddr, StuckQuiet: 10 * time.Minute})

	var o struct {
		Now     string `json:"now"`
		Windows []struct {
			Name     string `json:"name"`
			Statuses []struct {
				Status   string `json:"status"`
				Commands int64  `json:"commands"`
			} `json:"statuses"`
			Total struct {
				Commands    int64   `json:"commands"`
				FailureRate float64 `json:"failure_rate"`
			} `json:"total"`
			Products []struct {
				ProductID   string  `json:"product_id"`
				Commands    int64   `json:"commands"`
				SuccessRate float64 `json:"success_rate"`
				FailureRate float64 `json:"failure_rate"`
				TimeoutRate float64 `json:"timeout_rate"`
			} `json:"products"`
		} `json:"windows"`
		StuckNow    int64 `json:"stuck_now"`
		DeadLetters []struct {
			Class string `json:"class"`
			Count int64  `json:"count"`
		} `json:"dead_letters"`
		NewestEventTime string   `json:"newest_event_time"`
		NewestEventAgeS *float64 `json:"newest_event_age_s"`
	}
	getJSON(t, srv.URL, "/", &o)
	require.Len(t, o.Windows, 2)
	// Sliding, to the hour: the fixture's gas-meter commands are created
	// every 135 minutes from two hours ago, so 10 of them (2 h to 22 h 15
	// ago) and the 3 others are in the last 24 hours.
	require.Equal(t, "24 hours", o.Windows[0].Name)
	require.EqualValues(t, 13, o.Windows[0].Total.Commands)
	require.Equal(t, "7 days", o.Windows[1].Name)
	require.EqualValues(t, 63, o.Windows[1].Total.Commands)
	require.EqualValues(t, 1, o.StuckNow)
	require.Len(t, o.DeadLetters, 2)
	require.NotNil(t, o.NewestEventAgeS)
	var gas bool
	for _, p := range o.Windows[1].Products {
		if p.ProductID == "gas-meter" {
			gas = true
			require.EqualValues(t, 60, p.Commands)
			require.InDelta(t, 0.1, p.FailureRate, 1e-9)
			require.InDelta(t, 2.0/60, p.TimeoutRate, 1e-9) // 15 and 45 (30 failed)
		}
	}
	require.True(t, gas)

	var d struct {
		DeviceID string `json:"device_id"`
		Rates    struct {
			Commands    int64   `json:"commands"`
			SuccessRate float64 `json:"success_rate"`
		} `json:"rates"`
		Commands []struct {
			CommandID string `json:"command_id"`
		} `json:"commands"`
		More     bool `json:"more"`
		Presence *struct {
			Status      string    `json:"status"`
			StatusSince time.Time `json:"status_since"`
		} `json:"presence"`
	}
	getJSON(t, srv.URL, "/devices/meter-4711", &d)
	require.Equal(t, "meter-4711", d.DeviceID)
	require.NotNil(t, d.Presence, "the device's presence on its page")
	require.Equal(t, "ONLINE", d.Presence.Status)
	var cp struct {
		Presence *struct {
			Status string `json:"status"`
		} `json:"presence"`
	}
	getJSON(t, srv.URL, "/commands/"+f.valve, &cp)
	require.NotNil(t, cp.Presence, "the device's presence beside the command")
	require.Equal(t, "ONLINE", cp.Presence.Status)
	require.EqualValues(t, 2, d.Rates.Commands)
	require.InDelta(t, 0.5, d.Rates.SuccessRate, 1e-9)
	require.Equal(t, f.stuck, d.Commands[0].CommandID, "newest first")
	require.False(t, d.More)

	var s struct {
		Count    int64 `json:"count"`
		Commands []struct {
			CommandID    string  `json:"command_id"`
			StuckForS    float64 `json:"stuck_for_s"`
			DeviceStatus string  `json:"device_status"`
		} `json:"commands"`
	}
	getJSON(t, srv.URL, "/stuck", &s)
	require.EqualValues(t, 1, s.Count)
	require.Equal(t, f.stuck, s.Commands[0].CommandID)
	require.Equal(t, "ONLINE", s.Commands[0].DeviceStatus, "the device's presence beside the command")
	require.Greater(t, s.Commands[0].StuckForS, 29*60.0)
	getJSON(t, srv.URL, "/stuck?quiet=1h", &s)
	require.EqualValues(t, 0, s.Count)
	require.Empty(t, s.Commands)

	var dl struct {
		DeadLetters []struct {
			ID          int64  `json:"id"`
			ReasonClass string `json:"reason_class"`
			BodyText    string `json:"body_text"`
		} `json:"dead_letters"`
	}
	getJSON(t, srv.URL, "/dead-letters?class=invalid_json", &dl)
	require.Len(t, dl.DeadLetters, 1)
	require.Equal(t, hostileBody, dl.DeadLetters[0].BodyText)

	var one struct {
		ReasonClass string          `json:"reason_class"`
		Reason      string          `json:"reason"`
		BodyUTF8    bool            `json:"body_utf8"`
		BodyText    string          `json:"body_text"`
		BodyHex     string          `json:"body_hex"`
		Properties  json.RawMessage `json:"properties"`
	}
	getJSON(t, srv.URL, "/dead-letters/"+itoa(f.binID), &one)
	require.Equal(t, "not_utf8", one.ReasonClass)
	require.False(t, one.BodyUTF8)
	require.Empty(t, one.BodyText)
	require.Contains(t, one.BodyHex, "ff fe 3c 73 63 72 69 70  74 3e 00 80")

	var out struct {
		Days     int `json:"days"`
		Products []struct {
			ProductID string `json:"product_id"`
			Days      []struct {
				Day         string  `json:"day"`
				Commands    int64   `json:"commands"`
				FailureRate float64 `json:"failure_rate"`
				TimeoutRate float64 `json:"timeout_rate"`
			} `json:"days"`
		} `json:"products"`
	}
	getJSON(t, srv.URL, "/outcomes?product=gas-meter&days=7", &out)
	require.Equal(t, 7, out.Days)
	require.Len(t, out.Products, 1)
	var n int64
	for _, d := range out.Products[0].Days {
		n += d.Commands
	}
	require.EqualValues(t, 60, n)
}

// Keyset pagination: every command once, newest first, whatever the page.
func TestCommandsPagination(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})
	type list struct {
		Commands []struct {
			CommandID string `json:"command_id"`
			Key       string `json:"key"`
		} `json:"commands"`
		Next string `json:"next"`
	}
	var seen []string
	next := "device=meter-0007"
	for pages := 0; next != ""; pages++ {
		require.Less(t, pages, 3)
		var l list
		getJSON(t, srv.URL, "/commands?"+next, &l)
		for _, c := range l.Commands {
			seen = append(seen, c.CommandID)
		}
		next = l.Next
	}
	require.Len(t, seen, 60)
	for i, id := range seen {
		require.Equal(t, fmt.Sprintf("page-%03d", i), id, "newest first")
	}

	// The page's own Next link leads to the same next page.
	_, page1 := get(t, srv.URL, "/commands?device=meter-0007", nil)
	m := regexp.MustCompile(`id="next" rel="next" href="([^"]+)"`).FindStringSubmatch(page1)
	require.NotNil(t, m, "a Next link")
	_, page2 := get(t, srv.URL, html.UnescapeString(m[1]), nil)
	require.Contains(t, page2, ">page-050<")
	require.NotContains(t, page2, ">page-049<")
	require.NotContains(t, page2, ">stuck-0001<", "the filter is kept")

	var l list
	getJSON(t, srv.URL, "/commands?product=gas-meter&status=failed", &l)
	require.Len(t, l.Commands, 6)
	require.Empty(t, l.Next)
	getJSON(t, srv.URL, "/commands?since="+url.QueryEscape(f.now.Add(-time.Hour).Format("2006-01-02 15:04")), &l)
	require.Len(t, l.Commands, 3, "the valve, stuck and hostile commands, created in the last hour")

	resp, body := get(t, srv.URL, "/commands?status=LOST", nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, body, "status must be one of")
	resp, _ = get(t, srv.URL, "/commands?since=yesterday", nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)

	// The search box goes to the command.
	resp, _ = get(t, srv.URL, "/commands?command="+url.QueryEscape(" "+f.valve+" "), nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/commands/"+f.valve, resp.Header.Get("Location"))
}

// Unknown ids are a 404 page (or a 404 JSON problem), never an empty page.
func TestNotFound(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})
	for _, p := range []string{"/commands/no-such-command", "/devices/no-such-device", "/dead-letters/999999999",
		"/dead-letters/x", "/nowhere", "/commands/" + url.PathEscape("a/b")} {
		resp, body := get(t, srv.URL, p, nil)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, p)
		require.Contains(t, body, "<h1>404", p)
		var prob struct {
			Status int    `json:"status"`
			Error  string `json:"error"`
		}
		resp = getJSON(t, srv.URL, p, &prob)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, p)
		require.Equal(t, 404, prob.Status)
		require.NotEmpty(t, prob.Error)
	}
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/commands", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	f := setup(t)
	basic := f.server(t, console.Config{Addr: "0.0.0.0:9465", User: "support", Password: "s3cret"})
	resp, body := get(t, basic.URL, "/", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Basic")
	require.NotContains(t, body, "meter-4711")
	for _, p := range []string{"/commands/" + f.valve, "/static/style.css", "/dead-letters/" + itoa(f.deadID)} {
		resp, body = get(t, basic.URL, p, asJSON)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, p)
		require.NotContains(t, body, f.valve)
	}
	req, err := http.NewRequest(http.MethodGet, basic.URL+"/", nil)
	require.NoError(t, err)
	req.SetBasicAuth("support", "wrong")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	req.SetBasicAuth("support", "s3cret")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	token := f.server(t, console.Config{Addr: "0.0.0.0:9465", Token: "tok-1"})
	resp, _ = get(t, token.URL, "/", map[string]string{"Authorization": "Bearer tok-2"})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = get(t, token.URL, "/", map[string]string{"Authorization": "Bearer tok-1"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// A console that anyone on the network could read is refused.
func TestConfigCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg console.Config
		err string
	}{
		{console.Config{Addr: "127.0.0.1:9465"}, ""},
		{console.Config{Addr: "[::1]:9465"}, ""},
		{console.Config{Addr: "localhost:9465"}, ""},
		{console.Config{Addr: ":9465"}, "CMDTRACK_CONSOLE_ALLOW_UNAUTHENTICATED"},
		{console.Config{Addr: "0.0.0.0:9465"}, "CMDTRACK_CONSOLE_USER"},
		// A name is decided by the address it binds (Listen).
		{console.Config{Addr: "console.example:9465"}, ""},
		{console.Config{Addr: "0.0.0.0:9465", AllowUnauthenticated: true}, ""},
		{console.Config{Addr: "0.0.0.0:9465", User: "u", Password: "p"}, ""},
		{console.Config{Addr: "0.0.0.0:9465", User: "u"}, "go together"},
		{console.Config{Addr: "0.0.0.0:9465", Token: "t"}, ""},
		{console.Config{Addr: "0.0.0.0:9465", CertFile: "c", KeyFile: "k", ClientCAFile: "ca"}, ""},
		{console.Config{Addr: "0.0.0.0:9465", ClientCAFile: "ca"}, "CMDTRACK_CONSOLE_CLIENT_CA needs CMDTRACK_CONSOLE_TLS_CERT"},
		{console.Config{Addr: "9465"}, "not host:port"},
	} {
		err := tc.cfg.Check()
		if tc.err == "" {
			require.NoError(t, err, "%+v", tc.cfg)
		} else {
			require.ErrorContains(t, err, tc.err, "%+v", tc.cfg)
			require.NotContains(t, err.Error(), "\n")
		}
	}
}

// Untrusted values come out as text: no markup of theirs in the HTML, and
// <, > and & escaped in the JSON.
func TestHostileValuesEscaped(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})
	for _, p := range []string{"/", "/commands", "/commands/" + f.hostile, "/devices/" + url.PathEscape(hostileDevice),
		"/devices/" + url.PathEscape(hostileMessageDevice), "/dead-letters", "/dead-letters/" + itoa(f.deadID), "/dead-letters/" + itoa(f.binID), "/outcomes",
		"/messages", "/messages/" + url.PathEscape(hostileMessageDevice) + "/" + url.PathEscape(f.msgHostile), "/stuck?quiet=1s",
		"/webhooks", "/webhooks?endpoint=" + url.QueryEscape(hostileScript)} {
		resp, body := get(t, srv.URL, p, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", p, body)
		for _, bad := range []string{"<script", "<img", `href="javascript:`, "onerror=\"window"} {
			require.NotContains(t, body, bad, p)
		}
		resp, body = get(t, srv.URL, p, asJSON)
		require.Equal(t, http.StatusOK, resp.StatusCode, p)
		require.NotContains(t, body, "<", p)
		require.NotContains(t, body, ">", p)
	}
	_, body := get(t, srv.URL, "/commands/"+f.hostile, nil)
	require.Contains(t, body, `href="/devices/`+url.PathEscape(hostileDevice)+`"`, "the device id is one path segment")
	require.Contains(t, body, "&lt;script&gt;", "shown as text")
	_, body = get(t, srv.URL, "/messages", nil)
	require.Contains(t, body, `href="/messages/`+url.PathEscape(hostileMessageDevice)+"/"+url.PathEscape(f.msgHostile)+`"`,
		"the device and message ids are a path segment each")
}

// queryRecorder keeps the statements a handler ran.
type queryRecorder struct {
	mu    sync.Mutex
	stmts []recordedQuery
}

type recordedQuery struct {
	sql  string
	args []any
}

func (r *queryRecorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	r.stmts = append(r.stmts, recordedQuery{d.SQL, d.Args})
	r.mu.Unlock()
	return ctx
}

func (r *queryRecorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// A command's timeline reads the history partitions of its own days, not
// every one retention keeps; ?history=all reads them all.
func TestTimelineReadsOnlyItsDays(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	// 44 daily partitions, as with six weeks of history.
	_, err := f.st.MaintainPartitions(ctx, store.Partitioning{Size: store.Daily, Ahead: 3, Back: 40 * 24 * time.Hour}, f.now)
	require.NoError(t, err)
	var parts int
	require.NoError(t, f.st.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_inherits WHERE inhparent = 'device_command_events'::regclass`).Scan(&parts))
	require.GreaterOrEqual(t, parts, 44)

	cfg, err := pgxpool.ParseConfig(f.reader)
	require.NoError(t, err)
	rec := &queryRecorder{}
	cfg.ConnConfig.Tracer = rec
	db, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	h, err := console.NewHandler(db, console.Config{Addr: console.DefaultAddr}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	scanned := func(path string) int {
		t.Helper()
		rec.mu.Lock()
		rec.stmts = nil
		rec.mu.Unlock()
		resp, _ := get(t, srv.URL, path, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		rec.mu.Lock()
		stmts := rec.stmts
		rec.mu.Unlock()
		for _, s := range stmts {
			if !strings.Contains(s.sql, "device_command_events") {
				continue
			}
			rows, err := db.Query(ctx, "EXPLAIN "+s.sql, s.args...)
			require.NoError(t, err)
			plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
			require.NoError(t, err)
			return len(regexp.MustCompile(`on device_command_events_\w+ device_command_events`).FindAllString(strings.Join(plan, "\n"), -1))
		}
		require.Fail(t, "no timeline query")
		return 0
	}
	// The valve command's day, a day either side, and the default partition.
	require.LessOrEqual(t, scanned("/commands/"+f.valve), 5)
	require.Equal(t, parts, scanned("/commands/"+f.valve+"?history=all"))
}

// The stuck page's form shows the threshold in use; submitted unchanged, it
// must give the same page, not a 400 for a duration it printed itself.
func TestStuckFormResubmits(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})
	for _, p := range []string{"/stuck", "/stuck?quiet=1h30m", "/stuck?quiet=90s"} {
		resp, body := get(t, srv.URL, p, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", p, body)
		m := regexp.MustCompile(`<input name="quiet" value="([^"]*)"`).FindStringSubmatch(body)
		require.NotNil(t, m, "%s: no quiet field in\n%s", p, body)
		resp, body = get(t, srv.URL, "/stuck?quiet="+url.QueryEscape(html.UnescapeString(m[1])), nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s resubmitted as %q: %s", p, m[1], body)
	}
}
