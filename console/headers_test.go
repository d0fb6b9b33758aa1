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

// The history stores most payloads without their header, which
// notification_headers keeps once (migration 027): the timeline and the
// payload page give every payload back as received, as command_events does
// (store's TestHistoryPayloadsComeBackByteForByte holds that view to the
// bytes received).
func TestCommandPayloadsWithTheirHeader(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})
	ctx := context.Background()
	rows, err := f.st.Pool().Query(ctx, `SELECT command_id, payload, header_at IS NOT NULL FROM command_events`)
	require.NoError(t, err)
	type stored struct {
		ID, Payload string
		Cut         bool
	}
	all, err := pgx.CollectRows(rows, pgx.RowToStructByPos[stored])
	require.NoError(t, err)
	want := map[string]map[string]bool{}
	cut := 0
	for _, s := range all {
		if want[s.ID] == nil {
			want[s.ID] = map[string]bool{}
		}
		want[s.ID][s.Payload] = true
		if s.Cut {
			cut++
		}
	}
	require.NotZero(t, cut, "rows stored without their header")
	for id, payloads := range want {
		var p timelineJSON
		getJSON(t, srv.URL, "/commands/"+url.PathEscape(id)+"?history=all", &p)
		require.Len(t, p.Timeline, len(payloads), id)
		for _, e := range p.Timeline {
			require.False(t, e.PayloadTruncated)
			require.True(t, payloads[e.Payload], "%s: timeline payload %q is none of those received", id, e.Payload)
			resp, body := get(t, srv.URL, e.PayloadURL, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Equal(t, e.Payload, body, "%s: the payload page", id)
		}
	}
}
