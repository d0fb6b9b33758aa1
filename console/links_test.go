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
	"github.com/cmdtrack/cmdtrack/ingest"
	n11n "github.com/cmdtrack/cmdtrack/notification"
)

// Links to ids with characters that URLs escape lead to those ids, escaped
// once: a product "my product" links to its own commands, not to those of
// "my+product", and "é" stays "é".
func TestLinksKeepIDs(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	ids := []string{"my product", "a+b", "é", "x/y", "50%", "a&b=c", "q?r#s"}
	var items []ingest.Item
	lim := ingest.Limits{MaxBodyBytes: 1 << 20, MaxFutureSkew: time.Hour}
	for i, id := range ids {
		// 51 commands each: the device page links to the rest.
		for j := range 51 {
			c := f.now.Add(-time.Duration(i*60+j+1) * time.Minute)
			b := notification(fmt.Sprintf("cmd %s %02d", id, j), "dev "+id, "prod "+id, "SUCCESSFUL", c, c.Add(time.Second), nil, nil)
			it := ingest.Classify(b, "http", f.now, lim)
			require.NotNil(t, it.Notification(), "%s", b)
			items = append(items, it)
		}
	}
	_, err := f.st.Apply(ctx, items)
	require.NoError(t, err)
	require.NoError(t, f.st.RefreshRollup(ctx, 8, f.now))
	// Each id's first command failed at a webhook endpoint: /webhooks links
	// to it.
	for _, id := range ids {
		_, err := f.st.Pool().Exec(ctx, `INSERT INTO webhook_deliveries (endpoint, webhook_id, type, subject, product_id,
			status, from_status, occurred_at, state, failed_at) VALUES ('e', 'evt', 'command.finished', $1, 'p', 'SUCCESSFUL', '',
			now(), 'failed', now())`, fmt.Sprintf("cmd %s %02d", id, 0))
		require.NoError(t, err)
	}
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})

	href := regexp.MustCompile(`href="(/[^"]*)"`)
	// followed[kind+id]: a link of that kind led to exactly that id.
	followed := map[string]bool{}
	check := func(from, link string) {
		t.Helper()
		u, err := url.Parse(link)
		require.NoError(t, err, link)
		var got struct {
			DeviceID string `json:"device_id"`
			Product  string `json:"product"`
			Filter   struct {
				Device  string `json:"device"`
				Product string `json:"product"`
			} `json:"filter"`
			Command struct {
				CommandID string `json:"command_id"`
			} `json:"command"`
		}
		resp := getJSON(t, srv.URL, link, &got)
		require.Equal(t, http.StatusOK, resp.StatusCode, link)
		var kind, id string
		switch {
		case strings.HasPrefix(u.Path, "/devices/"):
			kind, id = "device page", got.DeviceID
		case u.Path == "/commands" && u.Query().Has("device"):
			kind, id = "device's commands", got.Filter.Device
		case u.Path == "/commands" && u.Query().Has("product"):
			kind, id = "product's commands", got.Filter.Product
		case u.Path == "/outcomes" && u.Query().Has("product"):
			kind, id = "product's outcomes", got.Product
		case strings.HasPrefix(u.Path, "/commands/"):
			kind, id = "command page", got.Command.CommandID
		default:
			return
		}
		require.NotEmpty(t, id, "%s leads nowhere", link)
		followed[kind+": "+id] = true
		if from == "/webhooks" {
			followed["webhook's "+kind+": "+id] = true
		}
	}
	pages := []string{"/", "/outcomes", "/commands", "/webhooks"}
	for _, id := range ids {
		pages = append(pages, "/devices/"+url.PathEscape("dev "+id), "/commands/"+url.PathEscape(fmt.Sprintf("cmd %s %02d", id, 0)),
			"/outcomes?product="+url.QueryEscape("prod "+id), "/commands?product="+url.QueryEscape("prod "+id))
	}
	for _, p := range pages {
		resp, body := get(t, srv.URL, p, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", p, body)
		for _, m := range href.FindAllStringSubmatch(body, -1) {
			if link := html.UnescapeString(m[1]); !strings.HasPrefix(link, "/static/") {
				check(p, link)
			}
		}
	}
	for _, id := range ids {
		for _, k := range []string{"device page: dev " + id, "device's commands: dev " + id, "product's commands: prod " + id,
			"product's outcomes: prod " + id, fmt.Sprintf("command page: cmd %s %02d", id, 0),
			fmt.Sprintf("webhook's command page: cmd %s %02d", id, 0)} {
			require.True(t, followed[k], "no link led to %s", k)
		}
	}
}

// A device heard of only through its presence (device.status, no command)
// has its page.
func TestPresenceOnlyDevice(t *testing.T) {
	t.Parallel()
	f := setup(t)
	b := fmt.Appendf(nil, `{"resource":"device.status","event":"update","event_time":%q,`+
		`"notify_data":{"header":{"device_id":"quiet-meter"},"body":{"status":"OFFLINE"}}}`, f.now.Add(-time.Minute).Format(stamp))
	it := ingest.Classify(b, "http", f.now, ingest.Limits{MaxBodyBytes: 1 << 20, MaxFutureSkew: time.Hour})
	require.Equal(t, n11n.KindPresence, it.Record.Kind())
	_, err := f.st.Apply(context.Background(), []ingest.Item{it})
	require.NoError(t, err)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})

	resp, body := get(t, srv.URL, "/devices/quiet-meter", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, "OFFLINE")
	var d struct {
		DeviceID string `json:"device_id"`
		Presence *struct {
			Status string `json:"status"`
		} `json:"presence"`
		Commands []any `json:"commands"`
	}
	getJSON(t, srv.URL, "/devices/quiet-meter", &d)
	require.Equal(t, "quiet-meter", d.DeviceID)
	require.NotNil(t, d.Presence)
	require.Equal(t, "OFFLINE", d.Presence.Status)
	require.NotNil(t, d.Commands, "an empty list, not null")
	require.Empty(t, d.Commands)

	// Neither commands nor presence: still 404.
	resp, _ = get(t, srv.URL, "/devices/never-heard-of", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}
