package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Querier is what Verify needs of a database handle (*pgxpool.Pool, pgx.Tx).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Verify compares the stored rows and history counts of cmds with their
// expected state and returns one line per difference.
func Verify(ctx context.Context, db Querier, cmds []Command) ([]string, error) {
	var bad []string
	for start := 0; start < len(cmds); start += 5000 {
		chunk := cmds[start:min(start+5000, len(cmds))]
		ids := make([]string, len(chunk))
		for i, c := range chunk {
			ids[i] = c.ID
		}
		got, err := readRows(ctx, db, ids)
		if err != nil {
			return nil, err
		}
		for _, c := range chunk {
			g, ok := got[c.ID]
			if !ok {
				bad = append(bad, fmt.Sprintf("%s: no row", c.ID))
				continue
			}
			bad = append(bad, compare(c, g)...)
		}
	}
	return bad, nil
}

type stored struct {
	Command
	result []byte
	events int
}

func readRows(ctx context.Context, db Querier, ids []string) (map[string]*stored, error) {
	rows, err := db.Query(ctx, `
		SELECT c.command_id, coalesce(device_id, ''), coalesce(product_id, ''), coalesce(app_id, ''),
		       coalesce(gateway_id, ''), coalesce(node_id, ''), c.status, result::text,
		       created_time, sent_time, delivered_time, response_time, last_event_time,
		       (SELECT count(*) FROM device_command_events e WHERE e.command_id = c.command_id)
		FROM device_commands c WHERE c.command_id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("read command rows: %w", err)
	}
	out := make(map[string]*stored, len(ids))
	for rows.Next() {
		var s stored
		var created *time.Time
		var result *string
		if err := rows.Scan(&s.ID, &s.DeviceID, &s.ProductID, &s.AppID, &s.GatewayID, &s.NodeID, &s.Status, &result,
			&created, &s.SentTime, &s.DeliveredTime, &s.ResponseTime, &s.LastEventTime, &s.events); err != nil {
			return nil, err
		}
		if created != nil {
			s.CreatedTime = *created
		}
		if result != nil {
			s.result = []byte(*result)
		}
		out[s.ID] = &s
	}
	return out, rows.Err()
}

func compare(want Command, got *stored) []string {
	var bad []string
	diff := func(field string, w, g any) {
		bad = append(bad, fmt.Sprintf("%s: %s is %v, want %v", want.ID, field, g, w))
	}
	if got.Status != want.Status {
		diff("status", want.Status, got.Status)
	}
	for _, f := range []struct {
		name string
		w, g string
	}{
		{"device_id", want.DeviceID, got.DeviceID}, {"product_id", want.ProductID, got.ProductID},
		{"app_id", want.AppID, got.AppID}, {"gateway_id", want.GatewayID, got.GatewayID}, {"node_id", want.NodeID, got.NodeID},
	} {
		if f.w != f.g {
			diff(f.name, f.w, f.g)
		}
	}
	if !want.CreatedTime.Equal(got.CreatedTime) {
		diff("created_time", want.CreatedTime, got.CreatedTime)
	}
	for _, f := range []struct {
		name string
		w, g *time.Time
	}{
		{"sent_time", want.SentTime, got.SentTime}, {"delivered_time", want.DeliveredTime, got.DeliveredTime},
		{"response_time", want.ResponseTime, got.ResponseTime},
	} {
		if (f.w == nil) != (f.g == nil) || (f.w != nil && !f.w.Equal(*f.g)) {
			diff(f.name, fmtTime(f.w), fmtTime(f.g))
		}
	}
	if !want.LastEventTime.Equal(got.LastEventTime) {
		diff("last_event_time", want.LastEventTime, got.LastEventTime)
	}
	if !jsonEqual(want.Result, got.result) {
		diff("result", string(want.Result), string(got.result))
	}
	if got.events != want.Events {
		diff("history rows", want.Events, got.events)
	}
	return bad
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "NULL"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func jsonEqual(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}
