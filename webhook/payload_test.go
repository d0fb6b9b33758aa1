package webhook_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/store"
	"github.com/cmdtrack/cmdtrack/webhook"
)

// The subject goes first into the row's object as "id" and the outcome
// last, the row's keys kept in their order between;
// a row that is not an object is cmdtrack's fault, tried again and named.
func TestPayloadRows(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	f := newFakeOutbox()
	data := map[string]string{
		"keys":  ` { "z": 1, "a": {"b": [1, 2]} } `,
		"empty": `{}`,
		"list":  `[1]`,
	}
	for _, s := range []string{"keys", "empty", "list"} {
		f.add("hooks", store.KindFinalChanged, s, time.Now())
	}
	rowOf := func(_ context.Context, _, subject string) (json.RawMessage, error) {
		return json.RawMessage(data[subject]), nil
	}
	s := startData(t, f, rc, secret, webhook.Config{}, rowOf)
	waitFor(t, f, "two deliveries and a retry", func() bool { return len(f.deliveredIDs()) == 2 && len(f.retries(3)) > 0 })
	s.stop()
	rc.check()
	bodies := map[string]string{}
	for _, d := range rc.deliveries() {
		var p webhook.Payload
		require.NoError(t, json.Unmarshal(d.body, &p))
		bodies[d.id] = string(p.Data)
	}
	keys := bodies["evt_1_1"]
	require.JSONEq(t, `{"id":"keys","z":1,"a":{"b":[1,2]},"outcome":{"status":"SUCCESSFUL"}}`, keys)
	require.Less(t, strings.Index(keys, `"id"`), strings.Index(keys, `"z"`), "the id first: %s", keys)
	require.Less(t, strings.Index(keys, `"z"`), strings.Index(keys, `"a"`), "the row's order: %s", keys)
	require.Less(t, strings.Index(keys, `"a"`), strings.Index(keys, `"outcome"`), "the outcome last: %s", keys)
	require.JSONEq(t, `{"id":"empty","outcome":{"status":"SUCCESSFUL"}}`, bodies["evt_2_1"])
	require.Equal(t, "cmdtrack could not make the payload: the row's JSON is not an object", f.retries(3)[0])
	require.NotContains(t, bodies, "evt_3_1", "nothing sent")
}
