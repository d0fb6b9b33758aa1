package console_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
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

func messageURL(device, id string) string {
	return "/messages/" + url.PathEscape(device) + "/" + url.PathEscape(id)
}

// A message's page: its status, its error, its times and header facts, and
// its timeline, from notifications of both body shapes; the same id on
// another device is another message.
func TestMessageJSON(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})
	var p struct {
		Message struct {
			DeviceID      string          `json:"device_id"`
			MessageID     string          `json:"message_id"`
			Status        string          `json:"status"`
			Name          string          `json:"name"`
			Topic         string          `json:"topic"`
			ErrorCode     string          `json:"error_code"`
			ErrorMsg      string          `json:"error_msg"`
			ProductID     string          `json:"product_id"`
			NodeID        string          `json:"node_id"`
			Tags          json.RawMessage `json:"tags"`
			PendingTime   *time.Time      `json:"pending_time"`
			DeliveredTime *time.Time      `json:"delivered_time"`
			FailedTime    *time.Time      `json:"failed_time"`
			TimeoutTime   *time.Time      `json:"timeout_time"`
			WaitedMS      *int64          `json:"waited_ms"`
		} `json:"message"`
		Presence *struct {
			Status string `json:"status"`
		} `json:"presence"`
		Timeline []struct {
			Status          string `json:"status"`
			Source          string `json:"source"`
			RequestID       string `json:"request_id"`
			SincePreviousMS *int64 `json:"since_previous_ms"`
			Payload         string `json:"payload"`
			PayloadURL      string `json:"payload_url"`
		} `json:"timeline"`
		TimelineFrom string `json:"timeline_from"`
	}
	getJSON(t, srv.URL, messageURL("meter-4711", f.msgFailed), &p)
	m := p.Message
	require.Equal(t, "meter-4711", m.DeviceID)
	require.Equal(t, f.msgFailed, m.MessageID)
	require.Equal(t, "FAILED", m.Status)
	require.Equal(t, "set-reporting-interval", m.Name)
	require.Equal(t, "$oc/devices/meter-4711/sys/messages/down", m.Topic)
	require.Equal(t, "IOTDA.014112", m.ErrorCode)
	require.Equal(t, "the device has not subscribed to the topic", m.ErrorMsg)
	require.Equal(t, "water-meter", m.ProductID)
	require.Equal(t, "node-1", m.NodeID)
	require.JSONEq(t, `[{"tag_key":"site","tag_value":"plant-7"}]`, string(m.Tags))
	pend := f.now.Add(-45 * time.Minute)
	require.NotNil(t, m.PendingTime)
	require.True(t, pend.Equal(*m.PendingTime), "%v", m.PendingTime)
	require.NotNil(t, m.FailedTime)
	require.True(t, pend.Add(time.Minute).Equal(*m.FailedTime))
	require.Nil(t, m.DeliveredTime)
	require.Nil(t, m.TimeoutTime)
	require.EqualValues(t, 60_000, *m.WaitedMS)
	require.NotNil(t, p.Presence)
	require.Equal(t, "ONLINE", p.Presence.Status)
	require.NotEmpty(t, p.TimelineFrom)
	require.Len(t, p.Timeline, 2)
	for i, want := range []string{"PENDING", "FAILED"} {
		e := p.Timeline[i]
		require.Equal(t, want, e.Status)
		require.Equal(t, "amqp:DefaultQueue", e.Source)
		require.Equal(t, "req-"+f.msgFailed+"-"+want, e.RequestID)
		require.Contains(t, e.Payload, `"status":"`+want+`"`, "the payload as received")
		require.True(t, strings.HasPrefix(e.PayloadURL, messageURL("meter-4711", f.msgFailed)+"/payload/"), e.PayloadURL)
	}
	require.Nil(t, p.Timeline[0].SincePreviousMS)
	require.EqualValues(t, 60_000, *p.Timeline[1].SincePreviousMS)

	// The payload link serves the notification whole.
	resp, whole := get(t, srv.URL, p.Timeline[0].PayloadURL, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, whole)
	require.Equal(t, p.Timeline[0].Payload, whole)

	// The same id on meter-0008: its own message.
	getJSON(t, srv.URL, messageURL("meter-0008", f.msgFailed), &p)
	require.Equal(t, "DELIVERED", p.Message.Status)
	require.Empty(t, p.Message.ErrorCode)
	require.Len(t, p.Timeline, 1)

	// The page shows the error.
	resp, body := get(t, srv.URL, messageURL("meter-4711", f.msgFailed), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, `id="error-code">IOTDA.014112<`)
	require.Contains(t, body, "the device has not subscribed to the topic")

	for _, p := range []string{messageURL("meter-4711", "no-such-message"), messageURL("no-such-device", f.msgFailed),
		"/calls/no-such-call", messageURL("meter-4711", f.msgFailed) + "/payload/00?at=2026-01-01T00:00:00Z"} {
		resp, _ := get(t, srv.URL, p, nil)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, p)
	}
}

// /messages: every filter, keyset paging, newest first, as /commands.
func TestMessagesPagination(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})
	type list struct {
		Messages []struct {
			DeviceID  string `json:"device_id"`
			MessageID string `json:"message_id"`
			Status    string `json:"status"`
			ErrorCode string `json:"error_code"`
			URL       string `json:"url"`
		} `json:"messages"`
		Next string `json:"next"`
	}
	var seen []string
	next := "device=meter-0007"
	for pages := 0; next != ""; pages++ {
		require.Less(t, pages, 3)
		var l list
		getJSON(t, srv.URL, "/messages?"+next, &l)
		for _, m := range l.Messages {
			seen = append(seen, m.MessageID)
		}
		next = l.Next
	}
	require.Len(t, seen, 60)
	for i, id := range seen {
		require.Equal(t, fmt.Sprintf("msg-%03d", i), id, "newest first")
	}

	// The page's own Next link leads to the same next page.
	_, page1 := get(t, srv.URL, "/messages?device=meter-0007", nil)
	m := regexp.MustCompile(`id="next" rel="next" href="([^"]+)"`).FindStringSubmatch(page1)
	require.NotNil(t, m, "a Next link")
	_, page2 := get(t, srv.URL, html.UnescapeString(m[1]), nil)
	require.Contains(t, page2, ">msg-050<")
	require.NotContains(t, page2, ">msg-049<")
	require.NotContains(t, page2, ">cfg-0002<", "the filter is kept")

	// Every message of every device, across pages: the cursor names a
	// message by its device and its id, so the reused id is listed twice.
	var all []string
	next = "x=1"
	for pages := 0; next != ""; pages++ {
		require.Less(t, pages, 5)
		var l list
		getJSON(t, srv.URL, "/messages?"+next, &l)
		for _, m := range l.Messages {
			all = append(all, m.DeviceID+"/"+m.MessageID)
		}
		next = l.Next
	}
	require.Len(t, all, 64)
	require.Contains(t, all, "meter-4711/"+f.msgFailed)
	require.Contains(t, all, "meter-0008/"+f.msgFailed)

	var l list
	getJSON(t, srv.URL, "/messages?product=gas-meter&status=failed", &l)
	require.Len(t, l.Messages, 6)
	require.Equal(t, "IOTDA.014112", l.Messages[0].ErrorCode)
	require.Empty(t, l.Next)
	getJSON(t, srv.URL, "/messages?status=PENDING", &l)
	require.Len(t, l.Messages, 1)
	require.Equal(t, f.msgStuck, l.Messages[0].MessageID)
	require.Equal(t, messageURL("meter-4711", f.msgStuck), l.Messages[0].URL)
	getJSON(t, srv.URL, "/messages?device=meter-4711&product=water-meter", &l)
	require.Len(t, l.Messages, 2)
	getJSON(t, srv.URL, "/messages?device=meter-4711&product=gas-meter", &l)
	require.Empty(t, l.Messages)
	getJSON(t, srv.URL, "/messages?since="+url.QueryEscape(f.now.Add(-time.Hour).Format("2006-01-02 15:04")), &l)
	require.Len(t, l.Messages, 4, "meter-4711's two, meter-0008's and the hostile one, of the last hour")

	resp, body := get(t, srv.URL, "/messages?status=SUCCESSFUL", nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, body, "status must be one of PENDING, DELIVERED, FAILED, TIMEOUT")
	resp, _ = get(t, srv.URL, "/messages?until=tomorrow", nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

// The device page: its commands, messages and calls together, newest
// first; a call's page.
func TestDeviceDownlinksTogether(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})
	var d struct {
		Rates struct {
			Commands int64 `json:"commands"`
		} `json:"rates"`
		MessageRates struct {
			Messages    int64   `json:"messages"`
			Failed      int64   `json:"failed"`
			Pending     int64   `json:"pending"`
			FailureRate float64 `json:"failure_rate"`
		} `json:"message_rates"`
		Messages []struct {
			MessageID string `json:"message_id"`
		} `json:"messages"`
		Calls []struct {
			CallID string `json:"call_id"`
		} `json:"calls"`
		Downlinks []struct {
			Kind   string    `json:"kind"`
			ID     string    `json:"id"`
			Status string    `json:"status"`
			Time   time.Time `json:"time"`
			URL    string    `json:"url"`
		} `json:"downlinks"`
	}
	getJSON(t, srv.URL, "/devices/meter-4711", &d)
	require.EqualValues(t, 2, d.Rates.Commands)
	require.EqualValues(t, 2, d.MessageRates.Messages)
	require.EqualValues(t, 1, d.MessageRates.Failed)
	require.EqualValues(t, 1, d.MessageRates.Pending)
	require.InDelta(t, 0.5, d.MessageRates.FailureRate, 1e-9)
	require.Len(t, d.Messages, 2)
	require.Len(t, d.Calls, 2)
	var got []string
	for i, l := range d.Downlinks {
		got = append(got, l.Kind+" "+l.ID+" "+l.Status)
		if i > 0 {
			require.False(t, l.Time.After(d.Downlinks[i-1].Time), "newest first")
		}
		resp, body := get(t, srv.URL, l.URL, asJSON)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", l.URL, body)
	}
	require.Equal(t, []string{
		"call " + f.callProps + " FAILED",    // 5 min ago
		"call " + f.callSync + " SUCCESSFUL", // 15 min ago
		"message " + f.msgStuck + " PENDING", // 30 min ago
		"command " + f.stuck + " SENT",       // 31 min ago
		"message " + f.msgFailed + " FAILED", // 45 min ago
		"command " + f.valve + " SUCCESSFUL", // 50 min ago
	}, got)

	var c struct {
		Call struct {
			CallKind    string          `json:"call_kind"`
			ServiceID   string          `json:"service_id"`
			CommandName string          `json:"command_name"`
			Request     json.RawMessage `json:"request"`
			Response    json.RawMessage `json:"response"`
			Status      string          `json:"status"`
			HTTPStatus  *int            `json:"http_status"`
			ErrorCode   string          `json:"error_code"`
			TookMS      *int64          `json:"took_ms"`
		} `json:"call"`
	}
	getJSON(t, srv.URL, "/calls/"+f.callSync, &c)
	require.Equal(t, "command", c.Call.CallKind)
	require.Equal(t, "OPEN", c.Call.CommandName)
	require.JSONEq(t, `{"valve":"open"}`, string(c.Call.Request))
	require.JSONEq(t, `{"result_code":0,"paras":{"valve":"open"}}`, string(c.Call.Response))
	require.EqualValues(t, 1200, *c.Call.TookMS)
	getJSON(t, srv.URL, "/calls/"+f.callProps, &c)
	require.Equal(t, "properties", c.Call.CallKind)
	require.Equal(t, "FAILED", c.Call.Status)
	require.Equal(t, 409, *c.Call.HTTPStatus)
	require.Equal(t, "IOTDA.014016", c.Call.ErrorCode)
	resp, body := get(t, srv.URL, "/calls/"+f.callProps, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "the device is offline")

	// A device known from its messages alone has its page.
	var other struct {
		Commands []any `json:"commands"`
		Messages []any `json:"messages"`
	}
	getJSON(t, srv.URL, "/devices/meter-0008", &other)
	require.Empty(t, other.Commands)
	require.Len(t, other.Messages, 1)
}

// Messages PENDING too long are on the stuck page and counted in the
// overview, with the commands' quiet time; the overview and the outcomes
// count messages per product.
func TestMessagesStuckAndOutcomes(t *testing.T) {
	t.Parallel()
	f := setup(t)
	// The fixture's stuck message has been PENDING for 30 minutes.
	srv := f.server(t, console.Config{Addr: console.DefaultAddr, StuckQuiet: 10 * time.Minute})
	var s struct {
		Count        int64 `json:"count"`
		MessageCount int64 `json:"message_count"`
		Messages     []struct {
			DeviceID     string  `json:"device_id"`
			MessageID    string  `json:"message_id"`
			Name         string  `json:"name"`
			StuckForS    float64 `json:"stuck_for_s"`
			DeviceStatus string  `json:"device_status"`
			URL          string  `json:"url"`
		} `json:"messages"`
	}
	getJSON(t, srv.URL, "/stuck", &s)
	require.EqualValues(t, 1, s.Count)
	require.EqualValues(t, 1, s.MessageCount)
	require.Len(t, s.Messages, 1)
	require.Equal(t, f.msgStuck, s.Messages[0].MessageID)
	require.Equal(t, "meter-4711", s.Messages[0].DeviceID)
	require.Equal(t, "ONLINE", s.Messages[0].DeviceStatus)
	require.Greater(t, s.Messages[0].StuckForS, 29*60.0)
	require.Equal(t, messageURL("meter-4711", f.msgStuck), s.Messages[0].URL)
	getJSON(t, srv.URL, "/stuck?quiet=1h", &s)
	require.EqualValues(t, 0, s.MessageCount)
	require.Empty(t, s.Messages)
	_, body := get(t, srv.URL, "/stuck", nil)
	require.Contains(t, body, `id="stuck-message-count">1<`)

	var o struct {
		StuckMessagesNow int64 `json:"stuck_messages_now"`
		Windows          []struct {
			Name     string `json:"name"`
			Messages struct {
				Statuses []struct {
					Status   string `json:"status"`
					Messages int64  `json:"messages"`
				} `json:"statuses"`
				Total struct {
					Messages int64 `json:"messages"`
				} `json:"total"`
				Products []struct {
					ProductID   string  `json:"product_id"`
					Messages    int64   `json:"messages"`
					FailureRate float64 `json:"failure_rate"`
					TimeoutRate float64 `json:"timeout_rate"`
				} `json:"products"`
			} `json:"messages"`
		} `json:"windows"`
	}
	getJSON(t, srv.URL, "/", &o)
	require.EqualValues(t, 1, o.StuckMessagesNow)
	require.Len(t, o.Windows, 2)
	// As the commands: 10 of meter-0007's messages and the 4 others are in
	// the last 24 hours.
	require.EqualValues(t, 14, o.Windows[0].Messages.Total.Messages)
	require.EqualValues(t, 64, o.Windows[1].Messages.Total.Messages)
	var gas bool
	for _, p := range o.Windows[1].Messages.Products {
		if p.ProductID == "gas-meter" {
			gas = true
			require.EqualValues(t, 60, p.Messages)
			require.InDelta(t, 0.1, p.FailureRate, 1e-9)
			require.InDelta(t, 2.0/60, p.TimeoutRate, 1e-9)
		}
	}
	require.True(t, gas)

	var out struct {
		MessageProducts []struct {
			ProductID string `json:"product_id"`
			Days      []struct {
				Messages  int64 `json:"messages"`
				Delivered int64 `json:"delivered"`
				Failed    int64 `json:"failed"`
				TimedOut  int64 `json:"timed_out"`
			} `json:"days"`
		} `json:"message_products"`
	}
	for _, path := range []string{"/outcomes?product=gas-meter&days=7", "/outcomes?days=7"} {
		getJSON(t, srv.URL, path, &out)
		var n, delivered, failed, timedOut int64
		for _, p := range out.MessageProducts {
			if p.ProductID != "gas-meter" {
				continue
			}
			for _, d := range p.Days {
				n, delivered, failed, timedOut = n+d.Messages, delivered+d.Delivered, failed+d.Failed, timedOut+d.TimedOut
			}
		}
		require.EqualValues(t, 60, n, path)
		require.EqualValues(t, 6, failed, path)
		require.EqualValues(t, 2, timedOut, path)
		require.EqualValues(t, 52, delivered, path)
	}
	require.Len(t, out.MessageProducts, 3, "gas-meter, water-meter and the hostile product")
	_, body = get(t, srv.URL, "/outcomes?days=7", nil)
	require.Equal(t, 3+3, strings.Count(body, `<svg class="chart"`), "a chart per product of commands and of messages")
}

// A message's timeline is bounded as a command's: thousands of
// notifications make pages of 50, followed to the end; a large payload is
// cut, with a link to the whole, served byte for byte.
func TestMessagePageBounded(t *testing.T) {
	t.Parallel()
	f := setup(t)
	const extra = 300
	pend := f.now.Add(-45 * time.Minute)
	_, err := f.st.Pool().Exec(context.Background(), `INSERT INTO device_message_events
		(device_id, message_id, event_key, status, event_time, request_id, source, stored_payload, received_at)
		SELECT 'meter-4711', $1, decode(md5(i::text), 'hex'), 'PENDING', $2::timestamptz + i * interval '1 millisecond',
			'many-' || lpad(i::text, 5, '0'), 'http', '{"n":' || i || '}', now()
		FROM generate_series(1, $3) i`, f.msgFailed, pend.Add(time.Second), extra)
	require.NoError(t, err)
	big := `{"s":"` + strings.Repeat(`\"`, 1<<19-4) + `"}`
	_, err = f.st.Pool().Exec(context.Background(), `INSERT INTO device_message_events
		(device_id, message_id, event_key, status, event_time, request_id, source, stored_payload, received_at)
		VALUES ('meter-4711', $1, '\xbb', 'PENDING', $2, 'big', 'http', $3, now())`, f.msgFailed, pend.Add(-time.Second), big)
	require.NoError(t, err)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})

	base := messageURL("meter-4711", f.msgFailed)
	resp, body := get(t, srv.URL, base, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Less(t, len(body), maxPage, "the page is bounded")
	next := regexp.MustCompile(`id="timeline-next" rel="next" href="([^"]+)"`)
	events := regexp.MustCompile(`class="id request-id">([^<]*)<`)
	var seen []string
	whole := regexp.MustCompile(`class="payload-whole" href="([^"]+)"`).FindStringSubmatch(body)
	require.NotNil(t, whole, "a link to the whole payload")
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
	require.Equal(t, "big", seen[0], "in event order")
	require.Equal(t, "req-"+f.msgFailed+"-PENDING", seen[1])
	require.Equal(t, "many-00001", seen[2])
	require.Equal(t, "req-"+f.msgFailed+"-FAILED", seen[extra+2])

	resp, got := get(t, srv.URL, html.UnescapeString(whole[1]), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Equal(t, sha256.Sum256([]byte(big)), sha256.Sum256([]byte(got)), "byte for byte")
	// The link of one device's message does not serve another's.
	resp, _ = get(t, srv.URL, strings.Replace(html.UnescapeString(whole[1]), "meter-4711", "meter-0008", 1), nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}
