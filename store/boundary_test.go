package store_test

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// Every exported method of the store's types that returns an error returns
// it translated (a *store.Error), whatever it does: called with a database
// that is not there, each must fail, and say so in the store's terms. The
// methods are found by reflection, so a method added later is checked too;
// its arguments are made from their types (argFor), and a type argFor does
// not know fails the test, naming it.
func TestEveryMethodTranslatesItsErrors(t *testing.T) {
	t.Parallel()
	// A socket directory with no server: every connection is refused at
	// once, with no network involved.
	dir := t.TempDir()
	st, err := store.Open(context.Background(), "host="+filepath.Join(dir, "none")+" dbname=x user=x connect_timeout=2", store.Options{})
	require.NoError(t, err)
	t.Cleanup(st.Close)

	errType := reflect.TypeFor[error]()
	for _, recv := range []any{st, st.Lease("boundary")} {
		v := reflect.ValueOf(recv)
		for i := range v.NumMethod() {
			m := v.Type().Method(i)
			ft := m.Type // the receiver is the first argument
			if ft.NumOut() == 0 || ft.Out(ft.NumOut()-1) != errType {
				continue
			}
			name := v.Type().String() + "." + m.Name
			in := make([]reflect.Value, ft.NumIn()-1)
			for j := range in {
				in[j] = argFor(t, name, ft.In(j+1))
			}
			out := v.Method(i).Call(in)
			err, _ := out[len(out)-1].Interface().(error)
			// Each method is reported, not only the first that fails.
			var se *store.Error
			if assert.ErrorAs(t, err, &se, "%s returned an untranslated error (%T)", name, err) {
				assert.Equal(t, string(store.ConnectionError), se.Class(), "%s: %v", name, err)
			}
		}
	}
}

// argFor is an argument of type typ for method name: one that makes the
// method go to the database.
func argFor(t *testing.T, name string, typ reflect.Type) reflect.Value {
	t.Helper()
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var v any
	switch typ {
	case reflect.TypeFor[context.Context]():
		v = context.Background()
	case reflect.TypeFor[time.Time]():
		v = now
	case reflect.TypeFor[time.Duration]():
		v = time.Hour
	case reflect.TypeFor[int](), reflect.TypeFor[int32](), reflect.TypeFor[int64]():
		return reflect.ValueOf(1).Convert(typ)
	case reflect.TypeFor[string]():
		v = "boundary"
	case reflect.TypeFor[[]string]():
		v = []string{"c1"}
	case reflect.TypeFor[[]int64]():
		v = []int64{1}
	case reflect.TypeFor[[]store.WebhookSettle]():
		v = []store.WebhookSettle{{ID: 1, Attempts: 1}}
	case reflect.TypeFor[[]store.WebhookRoute]():
		v = []store.WebhookRoute{{Endpoint: "boundary"}}
	case reflect.TypeFor[[]ingest.Item]():
		v = []ingest.Item{{Source: "test", Record: &notification.Notification{
			CommandID: "c1", Status: notification.Sent, EventTime: now, Payload: []byte(`{}`)}}}
	case reflect.TypeFor[func(store.StoredDeadLetter) ingest.Item]():
		v = func(store.StoredDeadLetter) ingest.Item { return ingest.Item{} }
	case reflect.TypeFor[map[string]time.Time]():
		v = map[string]time.Time{"q": now}
	case reflect.TypeFor[store.OpenQuery]():
		v = store.OpenQuery{Before: now, Limit: 1}
	case reflect.TypeFor[store.StuckMessageQuery]():
		v = store.StuckMessageQuery{Quiet: time.Hour, Limit: 1}
	case reflect.TypeFor[store.Retention]():
		v = store.Retention{DeadLetters: time.Hour, Commands: time.Hour}
	case reflect.TypeFor[store.Partitioning]():
		v = store.Partitioning{Size: store.Daily, Retention: time.Hour}
	default:
		t.Fatalf("%s takes a %s: teach argFor one that makes it go to the database", name, typ)
	}
	return reflect.ValueOf(v)
}
