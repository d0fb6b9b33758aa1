package store

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/notification"
)

// The history's de-duplication and the merge's last tie-break both rest on
// Notification.Key: two notifications that would store anything differently
// must have different keys, or one of them is silently dropped as a
// duplicate. This test changes every field of a notification in turn and
// requires the key to change whenever any stored column's value changes.
func TestKeyCoversEveryStoredField(t *testing.T) {
	t.Parallel()
	base := fullNotification()
	baseValues := storedValues(&base)
	fields := 0
	for _, path := range fieldPaths(reflect.TypeOf(base), nil) {
		n := fullNotification()
		mutate(t, reflect.ValueOf(&n).Elem(), path)
		changed := changedColumns(baseValues, storedValues(&n))
		if len(changed) == 0 {
			continue // not stored (or only as the payload received)
		}
		fields++
		require.NotEqual(t, base.Key(), n.Key(),
			"field %v is stored (columns %v) but does not feed Notification.Key", fieldName(path), changed)
	}
	require.Greater(t, fields, 15, "the walk over Notification's fields found too few stored ones")
}

// Columns that are not part of a notification's content: the key itself,
// where it came from, and the body as received (whose formatting may differ
// between two deliveries of one notification), with where its header lies.
var notContent = map[string]bool{"last_event_key": true, "event_key": true, "source": true, "payload": true,
	"stored_payload": true, "header_id": true, "header_at": true}

// storedValues is every column value, by table and name, that storing n
// would write.
func storedValues(n *notification.Notification) map[string]any {
	rows := []noteRow{{n: n, source: "test", key: n.Key()}}
	out := map[string]any{}
	for _, c := range commandColumns {
		out["device_commands."+c.name] = c.arg(rows)
	}
	for _, c := range eventColumns {
		out["device_command_events."+c.name] = c.arg(rows)
	}
	return out
}

func changedColumns(a, b map[string]any) []string {
	var out []string
	for k, v := range a {
		_, name, _ := cutTable(k)
		if notContent[name] {
			continue
		}
		if !reflect.DeepEqual(v, b[k]) {
			out = append(out, k)
		}
	}
	return out
}

func cutTable(k string) (string, string, bool) {
	for i := range k {
		if k[i] == '.' {
			return k[:i], k[i+1:], true
		}
	}
	return "", k, false
}

func fullNotification() notification.Notification {
	at := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	expire := 600
	return notification.Notification{
		CommandID: "cmd-1", Status: notification.Delivered, EventTime: at.Add(3 * time.Second), RequestID: "req-1",
		DeviceID: "dev-1", ProductID: "prod-1", AppID: "app-1", GatewayID: "gw-1", NodeID: "node-1",
		Tags:        json.RawMessage(`[{"tag_key":"k","tag_value":"v"}]`),
		CreatedTime: at, SentTime: at.Add(time.Second), DeliveredTime: at.Add(2 * time.Second), ResponseTime: at.Add(3 * time.Second),
		Result:  json.RawMessage(`{"code":0}`),
		Payload: []byte(`{"as":"received"}`),
		Creation: &notification.Creation{ServiceID: "svc", CommandName: "ON_OFF",
			Paras: json.RawMessage(`{"value":"ON"}`), SendStrategy: "delay", ExpireTime: &expire},
	}
}

// fieldPaths lists every leaf field of t, descending into pointers to
// structs other than time.Time.
func fieldPaths(t reflect.Type, prefix []int) [][]int {
	var out [][]int
	for i := range t.NumField() {
		f := t.Field(i)
		path := append(append([]int{}, prefix...), i)
		ft := f.Type
		if ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct {
			out = append(out, fieldPaths(ft.Elem(), path)...)
			continue
		}
		out = append(out, path)
	}
	return out
}

func fieldName(path []int) string {
	t := reflect.TypeOf(notification.Notification{})
	name := ""
	for _, i := range path {
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		f := t.Field(i)
		if name != "" {
			name += "."
		}
		name += f.Name
		t = f.Type
	}
	return name
}

// mutate changes the field at path to another valid value of its type.
func mutate(t *testing.T, v reflect.Value, path []int) {
	for _, i := range path {
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		v = v.Field(i)
	}
	switch x := v.Addr().Interface().(type) {
	case *string:
		*x += "-changed"
	case *notification.Status:
		*x = notification.Successful
	case *time.Time:
		*x = x.Add(time.Minute)
	case *json.RawMessage:
		*x = json.RawMessage(`[{"changed":true}]`)
	case *[]byte:
		*x = []byte(`{"changed":true}`)
	case *bool:
		*x = !*x
	case *int:
		*x++
	case **int:
		n := **x + 1
		*x = &n
	default:
		t.Fatalf("field %v has a type (%s) this test cannot change: teach mutate", fieldName(path), v.Type())
	}
}
