package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// callRecords are the two records `cmdtrack send -sync` writes for one
// call: before it, and its outcome.
func callRecords(id string, outcome notification.CallStatus) (pending, final *notification.Call) {
	sent := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	base := notification.Call{CallID: id, CallKind: notification.CallCommand, DeviceID: "dev-" + id, ServiceID: "Switch",
		CommandName: "ON_OFF", Request: json.RawMessage(`{"value":"ON"}`), SentTime: sent, Payload: []byte(`{}`)}
	p, f := base, base
	p.Status, p.EventTime = notification.CallPending, sent
	f.Status, f.EventTime, f.FinishedTime = outcome, sent.Add(3*time.Second), sent.Add(3*time.Second)
	switch outcome {
	case notification.CallSuccessful:
		f.CommandID, f.Response = "sc-"+id, json.RawMessage(`{"result_code":0}`)
	default:
		f.HTTPStatus, f.ErrorCode, f.ErrorMsg = 400, "FAKE.OFFLINE", "The device is offline."
	}
	return &p, &f
}

type callRow struct {
	Status, Kind, Device                     string
	Product, Service, Name, Command, Request *string
	Response, ErrorCode, ErrorMsg            *string
	HTTPStatus                               *int32
	Sent, Finished                           *time.Time
	Updated                                  time.Time
}

func readCall(t *testing.T, st *store.Store, id string) callRow {
	t.Helper()
	var r callRow
	require.NoError(t, st.Pool().QueryRow(context.Background(), `
		SELECT status, call_kind, device_id, product_id, service_id, command_name, command_id, request::text,
		       response::text, error_code, error_msg, http_status, sent_time, finished_time, updated_at
		FROM device_calls WHERE call_id = $1`, id).Scan(&r.Status, &r.Kind, &r.Device, &r.Product, &r.Service, &r.Name,
		&r.Command, &r.Request, &r.Response, &r.ErrorCode, &r.ErrorMsg, &r.HTTPStatus, &r.Sent, &r.Finished, &r.Updated))
	return r
}

// finishedCalls are the call.finished outcome events: product, status and
// how many calls.
func finishedCalls(t *testing.T, st *store.Store) map[[2]string]int {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `SELECT product_id, status, cardinality(command_ids) FROM outcome_events
		WHERE kind = $1`, store.KindCallFinished)
	require.NoError(t, err)
	out := map[[2]string]int{}
	for rows.Next() {
		var product, status string
		var n int
		require.NoError(t, rows.Scan(&product, &status, &n))
		out[[2]string{product, status}] += n
	}
	require.NoError(t, rows.Err())
	return out
}

func applyCall(t *testing.T, st *store.Store, cs ...*notification.Call) []ingest.Result {
	t.Helper()
	items := make([]ingest.Item, len(cs))
	for i, c := range cs {
		items[i] = ingest.Item{Source: ingest.SourceSend, Record: c}
	}
	res, err := st.ApplyReportingChanges(context.Background(), items)
	require.NoError(t, err)
	return res
}

// A call's two records make the same row in either order, in one batch or
// two, however often each is written: the outcome outranks the record
// before the call, and what the call sent stays. The call counts once as
// finished, with its product taken from the device's presence.
func TestCallMergeOrderIndependent(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	_, err := st.Pool().Exec(ctx, `INSERT INTO device_presence (device_id, status, status_since, last_event_key, last_event_time, product_id)
		VALUES ('dev-c2', 'ONLINE', now(), '\x00', now(), 'meter')`)
	require.NoError(t, err)

	p1, f1 := callRecords("c1", notification.CallSuccessful)
	p2, f2 := callRecords("c2", notification.CallFailed)
	p3, f3 := callRecords("c3", notification.CallSuccessful)
	applyCall(t, st, p1)
	require.Equal(t, []bool{true}, changed(applyCall(t, st, f1)))
	applyCall(t, st, f2) // the outcome first: a redelivery of the record before would be late
	require.Equal(t, []bool{false}, changed(applyCall(t, st, p2)))
	applyCall(t, st, f3, p3, f3) // one batch
	require.Equal(t, []bool{false, false}, changed(applyCall(t, st, p1, f1)), "redelivered: nothing changes")

	r1 := readCall(t, st, "c1")
	require.Equal(t, "SUCCESSFUL", r1.Status)
	require.Equal(t, `{"result_code": 0}`, *r1.Response)
	require.JSONEq(t, `{"value":"ON"}`, *r1.Request)
	require.Equal(t, "sc-c1", *r1.Command)
	require.Nil(t, r1.ErrorCode)
	require.Equal(t, time.Date(2026, 12, 1, 10, 0, 3, 0, time.UTC), r1.Finished.UTC())
	require.Equal(t, r1.Status, readCall(t, st, "c3").Status)
	r2 := readCall(t, st, "c2")
	require.Equal(t, "FAILED", r2.Status)
	require.Equal(t, "FAKE.OFFLINE", *r2.ErrorCode)
	require.Equal(t, int32(400), *r2.HTTPStatus)
	require.Equal(t, "meter", *r2.Product)
	require.Equal(t, "Switch", *r2.Service)

	require.Equal(t, map[[2]string]int{{"", "SUCCESSFUL"}: 2, {"meter", "FAILED"}: 1}, finishedCalls(t, st))

	// A second, later outcome of a call already final (never written by
	// cmdtrack send, but possible by hand) wins the row; the call finished
	// once, and is not counted again.
	late := *f1
	late.Status, late.EventTime, late.Response = notification.CallError, f1.EventTime.Add(time.Second), nil
	require.Equal(t, []bool{true}, changed(applyCall(t, st, &late)))
	require.Equal(t, "ERROR", readCall(t, st, "c1").Status)
	require.Equal(t, map[[2]string]int{{"", "SUCCESSFUL"}: 2, {"meter", "FAILED"}: 1}, finishedCalls(t, st))
}

// A call whose process died between the call and its answer keeps its
// record: PENDING, with what was sent; it is not counted as finished.
func TestCallPendingStays(t *testing.T) {
	t.Parallel()
	st := setup(t)
	p, _ := callRecords("c4", notification.CallTimeout)
	applyCall(t, st, p)
	r := readCall(t, st, "c4")
	require.Equal(t, "PENDING", r.Status)
	require.Equal(t, "ON_OFF", *r.Name)
	require.Nil(t, r.Finished)
	require.Empty(t, finishedCalls(t, st))
}

func changed(res []ingest.Result) []bool {
	out := make([]bool, len(res))
	for i, r := range res {
		out[i] = r.Changed
	}
	return out
}

// BenchmarkCallRecords is what one `cmdtrack send -sync` costs the
// database: the record before the call and its outcome, each its own
// transaction, as send writes them.
func BenchmarkCallRecords(b *testing.B) {
	st, _, _ := testenv.Schema(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		p, f := callRecords(fmt.Sprintf("b%d", i), notification.CallSuccessful)
		for _, c := range []*notification.Call{p, f} {
			if _, err := st.Apply(ctx, []ingest.Item{{Source: ingest.SourceSend, Record: c}}); err != nil {
				b.Fatal(err)
			}
		}
	}
}
