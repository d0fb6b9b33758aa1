package console_test

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/console"
	"github.com/cmdtrack/cmdtrack/store"
)

// An outcome event's data is its row as the console's JSON page gives it
// (without the page's timeline and presence), for each kind; nothing, and
// no error, when the row is gone.
func TestOutcomeData(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})
	ctx := context.Background()
	for _, c := range []struct{ typ, subject, page, field string }{
		{store.KindFinished, f.valve, "/commands/" + url.PathEscape(f.valve), "command"},
		{store.KindFinalChanged, "page-000", "/commands/page-000", "command"},
		{store.KindMessageFinished, "meter-4711/" + f.msgFailed, messageURL("meter-4711", f.msgFailed), "message"},
		{store.KindMessageFinalChanged, "meter-0008/" + f.msgFailed, messageURL("meter-0008", f.msgFailed), "message"},
		{store.KindCallFinished, f.callSync, "/calls/" + f.callSync, "call"},
	} {
		var page map[string]json.RawMessage
		getJSON(t, srv.URL, c.page, &page)
		require.NotEmpty(t, page[c.field], c.page)
		data, err := console.OutcomeData(ctx, f.st.Pool(), c.typ, c.subject)
		require.NoError(t, err, c.typ)
		require.JSONEq(t, string(page[c.field]), string(data), "%s %s", c.typ, c.subject)
	}

	for _, c := range [][2]string{
		{store.KindFinished, "gone"}, {store.KindMessageFinished, "meter-4711/gone"}, {store.KindCallFinished, "gone"},
	} {
		data, err := console.OutcomeData(ctx, f.st.Pool(), c[0], c[1])
		require.NoError(t, err, c)
		require.Nil(t, data, c)
	}
	for _, c := range [][2]string{{store.KindMessageFinished, "no-slash"}, {"batch.finished", "b1"}} {
		_, err := console.OutcomeData(ctx, f.st.Pool(), c[0], c[1])
		require.Error(t, err, c)
	}
}

// OutcomeDataMany reads a claim's rows at once, each as OutcomeData gives
// it, in the order asked, a row gone nil; a subject it cannot read fails
// the whole read.
func TestOutcomeDataMany(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	subjects := []console.OutcomeSubject{
		{store.KindFinished, f.valve}, {store.KindMessageFinished, "meter-4711/" + f.msgFailed},
		{store.KindFinished, "gone"}, {store.KindCallFinished, f.callSync}, {store.KindFinalChanged, "page-000"},
		{store.KindMessageFinalChanged, "meter-0008/" + f.msgFailed}, {store.KindMessageFinished, "meter-4711/gone"},
		{store.KindCallFinished, "gone"},
	}
	many, err := console.OutcomeDataMany(ctx, f.st.Pool(), subjects)
	require.NoError(t, err)
	require.Len(t, many, len(subjects))
	for i, s := range subjects {
		one, err := console.OutcomeData(ctx, f.st.Pool(), s.Type, s.Subject)
		require.NoError(t, err, s)
		if one == nil {
			require.Nil(t, many[i], s)
			continue
		}
		require.JSONEq(t, string(one), string(many[i]), "%v", s)
	}
	for _, s := range []console.OutcomeSubject{{store.KindMessageFinished, "no-slash"}, {"batch.finished", "b1"}} {
		_, err := console.OutcomeDataMany(ctx, f.st.Pool(), append(subjects[:1:1], s))
		require.Error(t, err, s)
	}
}
