package console_test

import (
	"context"
	"crypto/sha256"
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/console"
)

// maxPage bounds a command page, whatever its command's history: a page of
// the timeline, each payload's first characters. Measured: 55 KB with 50
// small notifications, 63 KB with 8 large quote-heavy ones; at worst 50
// payloads of 2,048 characters that html/template writes 5 bytes each (" is
// &#34;), about 520 KB. Before: 3.0 MB and 25 MB.
const maxPage = 1 << 20

type timelineJSON struct {
	Timeline []struct {
		Status           string `json:"status"`
		RequestID        string `json:"request_id"`
		Payload          string `json:"payload"`
		PayloadBytes     int64  `json:"payload_bytes"`
		PayloadTruncated bool   `json:"payload_truncated"`
		PayloadURL       string `json:"payload_url"`
	} `json:"timeline"`
	Next string `json:"next"`
}

// Thousands of notifications of one command make a page of them, with a
// link to the rest; following it shows every notification once, in order.
func TestCommandPageBoundedManyNotifications(t *testing.T) {
	t.Parallel()
	f := setup(t)
	const extra = 3000
	_, err := f.st.Pool().Exec(context.Background(), `INSERT INTO device_command_events
		(command_id, event_key, status, event_time, request_id, source, stored_payload, received_at)
		SELECT $1, decode(md5(i::text), 'hex'), 'DELIVERED', $2::timestamptz + i * interval '1 millisecond',
			'many-' || lpad(i::text, 5, '0'), 'http', '{"n":' || i || ',"pad":"' || repeat('x', 400) || '"}', now()
		FROM generate_series(1, $3) i`, f.valve, f.created.Add(10*time.Second), extra)
	require.NoError(t, err)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})

	resp, body := get(t, srv.URL, "/commands/"+f.valve, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Less(t, len(body), maxPage, "the page is bounded")
	t.Logf("the first page: %d bytes", len(body))

	// The HTML's own link to the rest, followed to the end.
	next := regexp.MustCompile(`id="timeline-next" rel="next" href="([^"]+)"`)
	events := regexp.MustCompile(`class="id request-id">([^<]*)<`)
	var seen []string
	for pages := 0; ; pages++ {
		require.Less(t, pages, extra, "the pages end")
		require.Less(t, len(body), maxPage, "every page is bounded")
		for _, m := range events.FindAllStringSubmatch(body, -1) {
			seen = append(seen, m[1])
		}
		m := next.FindStringSubmatch(body)
		if m == nil {
			break
		}
		resp, body = get(t, srv.URL, html.UnescapeString(m[1]), nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", m[1], body)
	}
	require.Len(t, seen, extra+3, "every notification once")
	require.Equal(t, "req-"+f.valve+"-SENT", seen[0], "in event order")
	require.Equal(t, "req-"+f.valve+"-SUCCESSFUL", seen[2])
	require.Equal(t, "many-00001", seen[3])
	require.Equal(t, "many-03000", seen[extra+2])

	// The JSON's next, likewise, and over the whole history.
	for _, first := range []string{"/commands/" + f.valve, "/commands/" + f.valve + "?history=all"} {
		var n int
		path := first
		for pages := 0; path != ""; pages++ {
			require.Less(t, pages, extra)
			var p timelineJSON
			getJSON(t, srv.URL, path, &p)
			require.LessOrEqual(t, len(p.Timeline), 100, "a page of the timeline")
			n += len(p.Timeline)
			path = ""
			if p.Next != "" {
				path = "/commands/" + f.valve + "?" + p.Next
			}
		}
		require.Equal(t, extra+3, n, first)
	}

	// A cursor that is not one is a clear 400.
	resp, body = get(t, srv.URL, "/commands/"+f.valve+"?after=yesterday", nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
}

// Large quote-heavy payloads are shown by their first characters, each with
// a link to the whole payload, which is served byte for byte.
func TestCommandPageBoundedLargePayloads(t *testing.T) {
	t.Parallel()
	f := setup(t)
	// Each " is &#34; (5 bytes) in HTML: 8 of these made a 40 MB page.
	big := `{"s":"` + strings.Repeat(`\"`, 1<<19-4) + `"}`
	_, err := f.st.Pool().Exec(context.Background(), `INSERT INTO device_command_events
		(command_id, event_key, status, event_time, request_id, source, stored_payload, received_at)
		SELECT $1, decode(md5('big' || i), 'hex'), 'DELIVERED', $2::timestamptz + i * interval '1 millisecond',
			'big-' || i, 'http', $3, now()
		FROM generate_series(1, 8) i`, f.valve, f.created, big)
	require.NoError(t, err)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})

	resp, body := get(t, srv.URL, "/commands/"+f.valve, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Less(t, len(body), maxPage, "the page is bounded")
	t.Logf("the page: %d bytes", len(body))
	links := regexp.MustCompile(`class="payload-whole" href="([^"]+)"`).FindAllStringSubmatch(body, -1)
	require.Len(t, links, 8, "a link to each truncated payload, none to the whole ones")

	resp, body = get(t, srv.URL, "/commands/"+f.valve, asJSON)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Less(t, len(body), maxPage, "the JSON is bounded")
	t.Logf("the JSON: %d bytes", len(body))
	var p timelineJSON
	getJSON(t, srv.URL, "/commands/"+f.valve, &p)
	var truncated int
	for _, e := range p.Timeline {
		if !strings.HasPrefix(e.RequestID, "big-") {
			require.False(t, e.PayloadTruncated, e.RequestID)
			require.True(t, strings.HasSuffix(e.Payload, "}"), "a small payload whole")
			continue
		}
		truncated++
		require.True(t, e.PayloadTruncated)
		require.EqualValues(t, len(big), e.PayloadBytes)
		require.True(t, strings.HasPrefix(big, e.Payload), "the payload's first characters")
		require.NotEmpty(t, e.PayloadURL)
	}
	require.Equal(t, 8, truncated)

	// The whole payload, its own response.
	for _, u := range []string{html.UnescapeString(links[0][1]), p.Timeline[1].PayloadURL} {
		resp, whole := get(t, srv.URL, u, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %.200s", u, whole)
		require.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
		require.Equal(t, sha256.Sum256([]byte(big)), sha256.Sum256([]byte(whole)), "byte for byte: %d bytes of %d", len(whole), len(big))
	}
	// A payload link for another command, or a key that is not one, is 404.
	resp, _ = get(t, srv.URL, strings.Replace(p.Timeline[1].PayloadURL, f.valve, f.stuck, 1), nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = get(t, srv.URL, "/commands/"+f.valve+"/payload/zz?at=2026-01-01T00:00:00Z", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}
