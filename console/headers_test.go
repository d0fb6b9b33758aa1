package console_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/console"
)

// headedHistories are the histories that store most payloads without their
// header, which notification_headers keeps once (migrations 027 and 029):
// the view that gives them back (store's TestHistoryPayloadsComeBackByteForByte
// holds it to the bytes received), the columns naming a thing, and its
// page.
var headedHistories = []struct {
	name, view, ids string
	page            func(ids []string) string
}{
	{"command", "command_events", "command_id", func(ids []string) string { return "/commands/" + url.PathEscape(ids[0]) }},
	{"message", "message_events", "device_id, message_id", func(ids []string) string { return messageURL(ids[0], ids[1]) }},
}

// The timeline and the payload page give every payload back as received,
// as the history's view does, for every history that keeps headers once.
func TestPayloadsWithTheirHeader(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})
	for _, h := range headedHistories {
		t.Run(h.name, func(t *testing.T) {
			ctx := context.Background()
			rows, err := f.st.Pool().Query(ctx, `SELECT ARRAY[`+h.ids+`], payload, header_at IS NOT NULL FROM `+h.view)
			require.NoError(t, err)
			type stored struct {
				IDs     []string
				Payload string
				Cut     bool
			}
			all, err := pgx.CollectRows(rows, pgx.RowToStructByPos[stored])
			require.NoError(t, err)
			want := map[string]map[string]bool{}
			cut := 0
			for _, s := range all {
				page := h.page(s.IDs)
				if want[page] == nil {
					want[page] = map[string]bool{}
				}
				want[page][s.Payload] = true
				if s.Cut {
					cut++
				}
			}
			require.NotZero(t, cut, "rows stored without their header")
			for id, payloads := range want {
				var p timelineJSON
				getJSON(t, srv.URL, id+"?history=all", &p)
				require.Len(t, p.Timeline, len(payloads), id)
				for _, e := range p.Timeline {
					require.False(t, e.PayloadTruncated)
					require.True(t, payloads[e.Payload], "%s: timeline payload %q is none of those received", id, e.Payload)
					resp, body := get(t, srv.URL, e.PayloadURL, nil)
					require.Equal(t, http.StatusOK, resp.StatusCode)
					require.Equal(t, e.Payload, body, "%s: the payload page", id)
				}
			}
		})
	}
}
