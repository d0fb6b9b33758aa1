package main_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// statusChange is a device.status push, with its body in notify_data or,
// as the platform's sample has it, beside notify_data.
func statusChange(device, status, changed, eventTime, request string, beside bool) string {
	body := fmt.Sprintf(`{"status":%q,"status_update_time":%q,"last_online_time":"20261101T000000Z"}`, status, changed)
	data := fmt.Sprintf(`{"header":{"device_id":%q,"product_id":"prod-p","app_id":"app-p","gateway_id":%q,"node_id":"node-p"},"body":%s}`,
		device, device, body)
	tail := ""
	if beside {
		data = fmt.Sprintf(`{"header":{"device_id":%q,"product_id":"prod-p","app_id":"app-p","gateway_id":%q,"node_id":"node-p"}}`, device, device)
		tail = `,"body":` + body
	}
	return fmt.Sprintf(`{"resource":"device.status","event":"update","event_time":%q,"request_id":%q,"notify_data":%s%s}`,
		eventTime, request, data, tail)
}

// TestPresenceStream sends device status changes out of order, twice, in
// both shapes, with poison among them, by the queue and by HTTP push, and
// requires the exact presence rows, the dead letters with their reasons,
// and the stuck view showing each command's device.
func TestPresenceStream(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	// dev-a: ONLINE 10:00, OFFLINE 10:05, ONLINE 10:09, sent newest first,
	// each twice, one of them by HTTP push. dev-b: ONLINE 10:00, OFFLINE
	// 10:07 (the last word), then poison that must change nothing.
	on1 := statusChange("dev-a", "ONLINE", "2026-11-20T10:00:00.000Z", "20261120T100001Z", "r1", false)
	off := statusChange("dev-a", "OFFLINE", "2026-11-20T10:05:00.250Z", "20261120T100501Z", "r2", true)
	on2 := statusChange("dev-a", "online", "2026-11-20T10:09:00.000Z", "20261120T100901Z", "r3", true)
	bOn := statusChange("dev-b", "ONLINE", "2026-11-20T10:00:00.000Z", "20261120T100001Z", "r4", false)
	bOff := statusChange("dev-b", "OFFLINE", "2026-11-20T10:07:00.000Z", "20261120T100701Z", "r5", false)
	poison := []string{
		statusChange("dev-b", "ONLINE", "2099-01-01T00:00:00.000Z", "20991231T000000Z", "p1", false),  // from the future
		statusChange("dev-b", "SLEEPING", "2026-11-20T10:08:00.000Z", "20261120T100801Z", "p2", true), // unknown status
		strings.Replace(statusChange("dev-b", "ONLINE", "2026-11-20T10:08:00.000Z", "20261120T100801Z", "p3", false),
			`"status_update_time":"2026-11-20T10:08:00.000Z"`, `"status_update_time":"later"`, 1), // a bad time
		`{"resource":"device.status","event":"update","event_time":"20261120T100801Z","notify_data":{"header":{"device_id":"dev-b"}}}`, // no body
	}
	// Commands stuck on both devices, and foreign messages that stay skipped.
	stuck := func(cmd, device string) string {
		now := time.Now().UTC()
		return fmt.Sprintf(`{"resource":"device.command.status","event":"update","event_time":%q,`+
			`"notify_data":{"header":{"device_id":%q},"body":{"command_id":%q,"status":"DELIVERED"}}}`,
			now.Add(-time.Hour).Format("20060102T150405Z"), device, cmd)
	}
	foreign := `{"resource":"device.property","event":"report","event_time":"20261120T100000Z","notify_data":{"header":{"device_id":"dev-a"},"body":{}}}`
	stream := []string{on2, bOff, poison[0], off, stuck("cmd-a", "dev-a"), on2, foreign, poison[1], bOn, off, on1,
		poison[2], stuck("cmd-b", "dev-b"), bOn, poison[3], bOff, on1, poison[0]}
	msgs := make([][]byte, len(stream))
	for i, s := range stream {
		msgs[i] = []byte(s)
	}
	f.pub.SendAll(t, msgs)

	w := testenv.StartWorker(t, f.env("CMDTRACK_HTTP_ADDR", addr, "CMDTRACK_HTTP_ALLOW_UNAUTHENTICATED", "true"))
	w.WaitReady(30 * time.Second)
	for range 2 {
		resp, err := http.Post("http://"+addr+"/", "application/json", strings.NewReader(off))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
	}
	require.Eventually(t, func() bool {
		return f.count(t, `SELECT count(*) FROM dead_letters`) >= 4 && f.count(t, `SELECT count(*) FROM device_commands`) == 2 &&
			f.count(t, `SELECT count(*) FROM device_presence`) == 2
	}, time.Minute, 50*time.Millisecond)
	stopCleanly(t, w)
	testenv.RequireQueueEmpty(t, f.queue)

	rows, err := f.st.Pool().Query(context.Background(), `
		SELECT device_id || ' ' || status || ' since ' || to_char(status_since AT TIME ZONE 'UTC', 'HH24:MI:SS.MS')
		       || ' online ' || to_char(last_online_time AT TIME ZONE 'UTC', 'HH24:MI:SS.MS')
		       || ' offline ' || to_char(last_offline_time AT TIME ZONE 'UTC', 'HH24:MI:SS.MS')
		       || ' ' || concat_ws('/', last_request_id, product_id, app_id, gateway_id, node_id)
		FROM device_presence ORDER BY device_id`)
	require.NoError(t, err)
	var got []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		got = append(got, s)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{
		"dev-a ONLINE since 10:09:00.000 online 10:09:00.000 offline 10:05:00.250 r3/prod-p/app-p/dev-a/node-p",
		"dev-b OFFLINE since 10:07:00.000 online 10:00:00.000 offline 10:07:00.000 r5/prod-p/app-p/dev-b/node-p",
	}, got)

	rows, err = f.st.Pool().Query(context.Background(), `SELECT reason_class FROM dead_letters ORDER BY reason_class`)
	require.NoError(t, err)
	var classes []string
	for rows.Next() {
		var c string
		require.NoError(t, rows.Scan(&c))
		classes = append(classes, c)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"future_event_time", "invalid_time", "missing_field", "unknown_status"}, classes)

	rows, err = f.st.Pool().Query(context.Background(), `SELECT command_id || ' ' || device_status FROM stuck_commands ORDER BY command_id`)
	require.NoError(t, err)
	var views []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		views = append(views, s)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"cmd-a ONLINE", "cmd-b OFFLINE"}, views)
}

// TestSimulatedPresence runs the simulator's stream with presence (a
// device offline while its commands time out or stay stuck), shuffled,
// duplicated and poisoned, and checks every command and device.
func TestSimulatedPresence(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s := simulate.Generate(simulate.Config{Commands: 600, Seed: 41, OutOfOrder: 1, Duplicate: 0.1, Poison: 0.02, Presence: true})
	require.NotEmpty(t, s.Devices)
	f.pub.SendAll(t, bodies(s.Messages))
	w := testenv.StartWorker(t, f.env())
	w.WaitReady(30 * time.Second)
	f.waitStored(t, s, time.Minute)
	stopCleanly(t, w)
	f.verify(t, s)
	// Every command that timed out or stays on its way shows its device's status.
	require.Zero(t, f.count(t, `SELECT count(*) FROM command_durations
		WHERE status IN ('SENT', 'DELIVERED', 'TIMEOUT') AND device_status IS NULL`))
	require.NotZero(t, f.count(t, `SELECT count(*) FROM command_durations WHERE status IN ('SENT', 'DELIVERED') AND device_status = 'OFFLINE'`))
}
