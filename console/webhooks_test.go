package console_test

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/console"
)

// webhooksJSON is /webhooks' JSON, its documented fields.
type webhooksJSON struct {
	Endpoints []struct {
		Endpoint          string     `json:"endpoint"`
		Pending           int64      `json:"pending"`
		Failed            int64      `json:"failed"`
		OldestPending     *time.Time `json:"oldest_pending"`
		OldestPendingAgeS *float64   `json:"oldest_pending_age_s"`
		Delivered         int64      `json:"delivered"`
		FailedTotal       int64      `json:"failed_total"`
		LastSuccessAt     *time.Time `json:"last_success_at"`
		LastFailureAt     *time.Time `json:"last_failure_at"`
		LastError         string     `json:"last_error"`
	} `json:"endpoints"`
	Endpoint string `json:"endpoint"`
	Failed   []struct {
		ID         int64      `json:"id"`
		WebhookID  string     `json:"webhook_id"`
		Endpoint   string     `json:"endpoint"`
		Type       string     `json:"type"`
		Subject    string     `json:"subject"`
		Status     string     `json:"status"`
		Attempts   int        `json:"attempts"`
		FailedAt   *time.Time `json:"failed_at"`
		ReplayedAt *time.Time `json:"replayed_at"`
		LastError  string     `json:"last_error"`
		URL        string     `json:"url"`
	} `json:"failed"`
	Next   string `json:"next"`
	Replay string `json:"replay"`
}

// The webhooks page: each endpoint's outbox and record, the events failed
// for good newest first, each linking to the row it is about, and the
// command that sends them again (the console only reads).
func TestWebhooksPage(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})

	var p webhooksJSON
	getJSON(t, srv.URL, "/webhooks", &p)
	require.Len(t, p.Endpoints, 2)
	b, fs := p.Endpoints[0], p.Endpoints[1]
	require.Equal(t, "billing", b.Endpoint)
	require.EqualValues(t, 2, b.Pending)
	require.EqualValues(t, 4, b.Failed)
	require.NotNil(t, b.OldestPending)
	require.WithinDuration(t, f.now.Add(-90*time.Minute), *b.OldestPending, 0, "the oldest pending event's outcome")
	require.NotNil(t, b.OldestPendingAgeS)
	require.GreaterOrEqual(t, *b.OldestPendingAgeS, 90*60.0)
	require.EqualValues(t, 120, b.Delivered)
	require.EqualValues(t, 5, b.FailedTotal)
	require.WithinDuration(t, f.now.Add(-2*time.Hour), *b.LastSuccessAt, 0)
	require.WithinDuration(t, f.now.Add(-time.Minute), *b.LastFailureAt, 0)
	require.Equal(t, "HTTP 503: down for maintenance", b.LastError)
	require.Equal(t, "field-service", fs.Endpoint)
	require.Zero(t, fs.Pending)
	require.Nil(t, fs.OldestPending, "nothing pending: no age")
	require.Nil(t, fs.OldestPendingAgeS)
	require.Nil(t, fs.LastFailureAt)
	require.EqualValues(t, 42, fs.Delivered)

	require.Equal(t, "cmdtrack webhooks replay", p.Replay)
	require.Empty(t, p.Next)
	var ids []int64
	for _, e := range p.Failed {
		ids = append(ids, e.ID)
		require.Equal(t, "billing", e.Endpoint)
		require.Equal(t, 7, e.Attempts)
		require.NotNil(t, e.FailedAt)
	}
	h := f.hooksFailed
	require.Equal(t, []int64{h[3], h[2], h[1], h[0]}, ids, "newest first")
	require.Equal(t, hostileScript+hostileImg+hostileLink, p.Failed[0].LastError)
	require.NotNil(t, p.Failed[3].ReplayedAt, "the valve's event was replayed and failed again")
	require.Nil(t, p.Failed[2].ReplayedAt)

	// Each links to its row's page, which names that very row.
	wantURL := map[string]string{
		"command.finished/" + f.valve:                "/commands/" + f.valve,
		"message.finished/meter-4711/" + f.msgFailed: messageURL("meter-4711", f.msgFailed),
		"call.finished/" + f.callProps:               "/calls/" + f.callProps,
		"command.finished/" + f.hostile:              "/commands/" + f.hostile,
	}
	for _, e := range p.Failed {
		require.Equal(t, wantURL[e.Type+"/"+e.Subject], e.URL, "%s %s", e.Type, e.Subject)
		var row struct {
			Command struct {
				CommandID string `json:"command_id"`
			} `json:"command"`
			Message struct {
				DeviceID  string `json:"device_id"`
				MessageID string `json:"message_id"`
			} `json:"message"`
			Call struct {
				CallID string `json:"call_id"`
			} `json:"call"`
		}
		resp := getJSON(t, srv.URL, e.URL, &row)
		require.Equal(t, http.StatusOK, resp.StatusCode, e.URL)
		got := row.Command.CommandID + row.Call.CallID
		if row.Message.MessageID != "" {
			got = row.Message.DeviceID + "/" + row.Message.MessageID
		}
		require.Equal(t, e.Subject, got, e.URL)
	}

	// As a page: the same links, and the command to run.
	resp, body := get(t, srv.URL, "/webhooks", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, `<code id="replay-command">cmdtrack webhooks replay</code>`)
	require.Contains(t, body, `href="/messages/meter-4711/`+f.msgFailed+`"`)
	require.Contains(t, body, `href="/calls/`+f.callProps+`"`)
	require.Contains(t, body, `href="/webhooks?endpoint=field-service"`)
	require.Contains(t, body, `aria-current="page">Webhooks</a>`, "lit in the navigation")
	require.Equal(t, 1, strings.Count(body, "<form"), "the layout's search only: the console only reads, no replay button")

	// Filtered by endpoint: that endpoint's failed events, and its command.
	getJSON(t, srv.URL, "/webhooks?endpoint=field-service", &p)
	require.Equal(t, "field-service", p.Endpoint)
	require.Empty(t, p.Failed)
	require.Len(t, p.Endpoints, 2, "every endpoint's state still")
	require.Equal(t, "cmdtrack webhooks replay -endpoint field-service", p.Replay)
	_, body = get(t, srv.URL, "/webhooks?endpoint=field-service", nil)
	require.Contains(t, body, `id="no-failed"`)
	getJSON(t, srv.URL, "/webhooks?endpoint=billing", &p)
	require.Len(t, p.Failed, 4)

	// A name from a link someone sent is quoted in the command to copy.
	getJSON(t, srv.URL, "/webhooks?endpoint="+url.QueryEscape("x; rm -rf ~ 'y'"), &p)
	require.Equal(t, `cmdtrack webhooks replay -endpoint 'x; rm -rf ~ '\''y'\'''`, p.Replay)
}

// The failed events page by id, newest first: every one once, whatever the
// page, filtered or not.
func TestWebhooksPagination(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	// 120 more failed events, alternating between two endpoints.
	_, err := f.st.Pool().Exec(ctx, `INSERT INTO webhook_deliveries (endpoint, webhook_id, type, subject, product_id, status,
		from_status, occurred_at, attempts, state, last_error, failed_at)
		SELECT CASE WHEN i % 2 = 0 THEN 'billing' ELSE 'field-service' END, 'evt_p' || i, 'command.finished',
			'page-' || lpad((i % 60)::text, 3, '0'), 'gas-meter', 'SUCCESSFUL', '', now(), 3, 'failed', 'HTTP 500', now()
		FROM generate_series(1, 120) i`)
	require.NoError(t, err)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})
	walk := func(endpoint string) []int64 {
		t.Helper()
		var ids []int64
		link := "/webhooks?" + url.Values{"endpoint": {endpoint}}.Encode()
		for pages := 0; link != ""; pages++ {
			require.Less(t, pages, 10, "the pages end")
			var p webhooksJSON
			getJSON(t, srv.URL, link, &p)
			require.LessOrEqual(t, len(p.Failed), 50)
			for _, e := range p.Failed {
				if endpoint != "" {
					require.Equal(t, endpoint, e.Endpoint)
				}
				ids = append(ids, e.ID)
			}
			link = ""
			if p.Next != "" {
				link = "/webhooks?" + p.Next
			}
		}
		for i := 1; i < len(ids); i++ {
			require.Greater(t, ids[i-1], ids[i], "newest first, each once")
		}
		return ids
	}
	require.Len(t, walk(""), 124)
	require.Len(t, walk("billing"), 64)
	require.Len(t, walk("field-service"), 60)

	// The page's own link leads on.
	_, body := get(t, srv.URL, "/webhooks?endpoint=billing", nil)
	next := regexp.MustCompile(`id="next" rel="next" href="([^"]+)"`).FindStringSubmatch(body)
	require.NotNil(t, next, body)
	u, err := url.Parse(html.UnescapeString(next[1]))
	require.NoError(t, err)
	require.Equal(t, "billing", u.Query().Get("endpoint"))
	require.NotEmpty(t, u.Query().Get("before_id"))
	var p webhooksJSON
	getJSON(t, srv.URL, u.RequestURI(), &p)
	require.Len(t, p.Failed, 14)

	for _, bad := range []string{"x", "-1", "0", fmt.Sprint(uint64(1) << 63)} {
		resp, body := get(t, srv.URL, "/webhooks?before_id="+bad, nil)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s: %s", bad, body)
		require.Contains(t, body, "before_id is the cursor of the next page")
	}
}
