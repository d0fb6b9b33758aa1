package store_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// headedHistory is a history that keeps each notification's header once
// (notification_headers) and the payload without it: commands' (migration
// 027) and messages' (029). Every test below runs over each.
type headedHistory struct {
	name, resource string
	// table stores the rows, view gives them back with their payload, id
	// is the column naming the thing in the notification's body.
	table, view, id string
	// statuses are three of the kind's statuses, in its order.
	statuses [3]string
	// migration is the one that made it keep headers once; idCols and
	// idVals name the thing of note(id "before") in SQL.
	migration      int32
	idCols, idVals string
	// key is a record's key when it is the kind's.
	key func(ingest.Record) ([]byte, bool)
}

var headedHistories = []headedHistory{
	{
		name: "command", resource: "device.command.status", table: "device_command_events", view: "command_events", id: "command_id",
		statuses: [3]string{"SENT", "DELIVERED", "SUCCESSFUL"}, migration: 27, idCols: "command_id", idVals: "'before'",
		key: func(r ingest.Record) ([]byte, bool) {
			n, ok := r.(*notification.Notification)
			if !ok {
				return nil, false
			}
			return n.Key(), true
		},
	},
	{
		name: "message", resource: "device.message.status", table: "device_message_events", view: "message_events", id: "message_id",
		statuses: [3]string{"PENDING", "DELIVERED", "FAILED"}, migration: 29, idCols: "device_id, message_id", idVals: "'dev-before', 'before'",
		key: func(r ingest.Record) ([]byte, bool) {
			m, ok := r.(*notification.Message)
			if !ok {
				return nil, false
			}
			return m.Key(), true
		},
	},
}

// note is a notification of h's kind: notify_data is header and body,
// written by inner (header first, unless inner says otherwise).
func (h headedHistory) note(id string, status int, at, extra string, inner func(header, body string) string, header string) []byte {
	body := fmt.Sprintf(`"body":{%q:%q,"status":%q}`, h.id, id, h.statuses[status])
	return fmt.Appendf(nil, `{"resource":%q,"event":"update","event_time":%q,%s"notify_data":{%s}}`,
		h.resource, at, extra, inner(header, body))
}

func headerFirst(header, body string) string { return `"header":` + header + "," + body }

// The history keeps each notification's header once (notification_headers)
// and the payload without it: every payload must still come back byte for
// byte as received. These bodies are what the property runs over: the
// simulator's stream (disorder, duplicates, poison, other resources, device
// messages), the published samples, and, for each kind, the shapes the
// fast path leaves to encoding/json or places oddly.
func headerBodies(t *testing.T) [][]byte {
	t.Helper()
	s := simulate.GenerateN(simulate.Config{Seed: 30, OutOfOrder: 0.2, Duplicate: 0.05, Poison: 0.01,
		Foreign: 0.05, Presence: true, MessageShare: 0.2}, 3000)
	var bodies [][]byte
	for _, m := range s.Messages {
		bodies = append(bodies, m.Body)
	}
	for _, dir := range []string{"/work/shared/samples", "../notification/testdata"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			bodies = append(bodies, b)
		}
	}
	const head = `{"app_id":"app-ü","device_id":"dev-%[1]s","node_id":"n","product_id":"p","gateway_id":"gw","tags":[{"tag_key":"k","tag_value":"€"}]}`
	h := func(dev string) string { return fmt.Sprintf(head, dev) }
	for _, k := range headedHistories {
		bodies = append(bodies,
			// Multi-byte characters before the header and in it:
			// positions are characters, not bytes.
			k.note("odd-1", 0, "20261101T000001Z", `"request_id":"ünïcödé-€",`, headerFirst, h("1")),
			k.note("odd-1", 1, "20261101T000002Z", `"request_id":"ünïcödé-€",`, headerFirst, h("1")),
			// Another header within one command (a message of the same
			// id on another device).
			k.note("odd-1", 2, "20261101T000003Z", "", headerFirst, h("2")),
			// Whitespace inside and around the header.
			k.note("odd-2", 0, "20261101T000001Z", "", headerFirst, " \n\t"+strings.ReplaceAll(h("1"), ",", " ,\n ")+" "),
			// Escapes (encoding/json decides), a short header, a null one
			// (a message without a device is a dead letter).
			k.note("odd-3", 0, "20261101T000001Z", "", headerFirst, `{"device_id":"d\u00e9v-1","app_id":"a","product_id":"p","node_id":"n","gateway_id":"g"}`),
			k.note("odd-3", 1, "20261101T000002Z", "", headerFirst, `{"device_id":"d"}`),
			k.note("odd-3", 2, "20261101T000003Z", "", headerFirst, `null`),
			// The header after the body.
			k.note("odd-4", 0, "20261101T000001Z", "", func(header, body string) string { return body + `,"header":` + header }, h("1")),
			// A key spelled in another case (encoding/json matches it).
			k.note("odd-4", 1, "20261101T000002Z", "", func(header, body string) string { return `"Header":` + header + "," + body }, h("1")),
		)
	}
	return bodies
}

// classified are the items the worker would hand to Apply for bodies, and
// the payload each history row must give back, by history and key.
func classified(t *testing.T, bodies [][]byte) ([]ingest.Item, map[string]map[string]string) {
	t.Helper()
	at := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	var items []ingest.Item
	want := map[string]map[string]string{}
	for _, k := range headedHistories {
		want[k.name] = map[string]string{}
	}
	for _, b := range bodies {
		it := ingest.Classify(b, "amqp:q", at, ingest.Limits{MaxBodyBytes: 1 << 20})
		if it.Record == nil && it.DeadLetter == nil {
			continue
		}
		items = append(items, it)
		for _, k := range headedHistories {
			if key, ok := k.key(it.Record); ok {
				want[k.name][hex.EncodeToString(key)] = string(b)
			}
		}
	}
	return items, want
}

// storedPayloads reads every payload of h's history through its view, by
// key.
func storedPayloads(t *testing.T, st *store.Store, h headedHistory) (map[string]string, int) {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `SELECT encode(event_key, 'hex'), payload, header_at IS NOT NULL FROM `+h.view)
	require.NoError(t, err)
	defer rows.Close()
	got := map[string]string{}
	cut := 0
	for rows.Next() {
		var key string
		var payload []byte
		var wasCut bool
		require.NoError(t, rows.Scan(&key, &payload, &wasCut))
		_, dup := got[key]
		require.False(t, dup, "two %s history rows with the key %s", h.name, key)
		got[key] = string(payload)
		if wasCut {
			cut++
		}
	}
	require.NoError(t, rows.Err())
	return got, cut
}

func requirePayloads(t *testing.T, h headedHistory, want, got map[string]string) {
	t.Helper()
	require.Len(t, got, len(want), "one %s history row per distinct notification", h.name)
	for k, w := range want {
		require.Equal(t, w, got[k], "payload of %s, read through %s", k, h.view)
	}
}

func applyAll(t *testing.T, st *store.Store, items []ingest.Item, batch int) {
	t.Helper()
	for len(items) > 0 {
		n := min(batch, len(items))
		_, err := st.Apply(context.Background(), items[:n])
		require.NoError(t, err)
		items = items[n:]
	}
}

// histories is each history's rows, as text, hashed.
func histories(t *testing.T, st *store.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, h := range headedHistories {
		var sum string
		require.NoError(t, st.Pool().QueryRow(context.Background(), `
			SELECT md5(string_agg(e::text, ',' ORDER BY e::text)) FROM `+h.table+` e`).Scan(&sum))
		out[h.name] = sum
	}
	return out
}

func TestHistoryPayloadsComeBackByteForByte(t *testing.T) {
	t.Parallel()
	st := setup(t)
	items, want := classified(t, headerBodies(t))
	applyAll(t, st, items, 97)

	for _, h := range headedHistories {
		t.Run(h.name, func(t *testing.T) {
			got, cut := storedPayloads(t, st, h)
			requirePayloads(t, h, want[h.name], got)
			// Not a vacuous pass: most rows are stored without their header.
			require.Greater(t, cut, len(want[h.name])*9/10, "rows stored without their header, of %d", len(want[h.name]))
			// The odd shapes: which are cut is what the decoders place
			// (characters before the header are multi-byte in odd-1; the
			// short and null headers, and one spelled "Header", are
			// stored whole).
			for id, n := range map[string]int{"odd-1": 3, "odd-2": 1, "odd-3": 1, "odd-4": 1} {
				require.Equal(t, n, count(t, st, `SELECT count(*) FROM `+h.table+` WHERE `+h.id+` = $1 AND header_at IS NOT NULL`, id), id)
			}
			var stored int
			require.NoError(t, st.Pool().QueryRow(context.Background(), `SELECT sum(octet_length(stored_payload)) FROM `+h.table).Scan(&stored))
			t.Logf("%d rows, %d without their header, %d payload bytes stored", len(want[h.name]), cut, stored)
		})
	}
	headers := count(t, st, `SELECT count(*) FROM notification_headers`)

	// A redelivery changes nothing: no row, no header, no byte.
	before := histories(t, st)
	applyAll(t, st, items, 61)
	require.Equal(t, before, histories(t, st), "the histories after every notification was delivered again")
	require.Equal(t, headers, count(t, st, `SELECT count(*) FROM notification_headers`))
}

// A header stored under the id of another's text (a hash collision, or a
// row someone changed) is never cut out by mistake: the rows whose header
// it is not keep their payload whole.
func TestHistoryHeaderCollisionStoresWhole(t *testing.T) {
	t.Parallel()
	st := setup(t)
	const header = `{"app_id":"a","device_id":"collide","node_id":"n","product_id":"p","gateway_id":"g","tags":null}`
	h := fnv.New64a()
	h.Write([]byte(header))
	_, err := st.Pool().Exec(context.Background(), `INSERT INTO notification_headers (id, header) VALUES ($1, $2)`,
		int64(h.Sum64()), strings.Replace(header, "collide", "another", 1))
	require.NoError(t, err)
	var bodies [][]byte
	for _, k := range headedHistories {
		bodies = append(bodies, k.note("c-collide", 0, "20261101T000001Z", "", headerFirst, header))
	}
	items, want := classified(t, bodies)
	applyAll(t, st, items, 1)
	for _, k := range headedHistories {
		got, cut := storedPayloads(t, st, k)
		requirePayloads(t, k, want[k.name], got)
		require.Zero(t, cut, k.name)
	}
}

// Writers storing overlapping batches at once (each notification delivered
// to several of them, in its own order) neither deadlock on the headers
// they add nor lose a byte.
func TestHistoryHeadersConcurrentWriters(t *testing.T) {
	t.Parallel()
	st := setup(t)
	items, want := classified(t, headerBodies(t))
	const writers = 4
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		mine := append([]ingest.Item(nil), items...)
		rand.New(rand.NewPCG(uint64(w), 30)).Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
		wg.Add(1)
		go func() {
			defer wg.Done()
			for len(mine) > 0 {
				n := min(50+w*13, len(mine))
				if _, err := st.Apply(context.Background(), mine[:n]); err != nil {
					errs[w] = err
					return
				}
				mine = mine[n:]
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	for _, h := range headedHistories {
		got, _ := storedPayloads(t, st, h)
		requirePayloads(t, h, want[h.name], got)
	}
}

// The migration leaves the rows written before it as they are (payload
// renamed stored_payload, header_id and header_at NULL): each reads back
// through the view as it was stored, and its notification delivered again
// is still a duplicate, whose row stays whole.
func TestHistoryRowsFromBeforeTheMigration(t *testing.T) {
	t.Parallel()
	for _, h := range headedHistories {
		t.Run(h.name, func(t *testing.T) {
			t.Parallel()
			st, _, _ := testenv.EmptySchema(t)
			ctx := context.Background()
			require.NoError(t, st.MigrateTo(ctx, h.migration-1))
			body := h.note("before", 0, "20261101T000001Z", "", headerFirst,
				`{"app_id":"app-1","device_id":"dev-before","node_id":"n","product_id":"p","gateway_id":"g"}`)
			items, want := classified(t, [][]byte{body})
			require.Len(t, want[h.name], 1)
			for key := range want[h.name] {
				_, err := st.Pool().Exec(ctx, `INSERT INTO `+h.table+` (`+h.idCols+`, event_key, status, event_time, source, payload)
					VALUES (`+h.idVals+`, decode($1, 'hex'), $2, '2026-11-01 00:00:01Z', 'amqp:q', $3)`, key, h.statuses[0], string(body))
				require.NoError(t, err)
			}
			require.NoError(t, st.Migrate(ctx))
			applyAll(t, st, items, 1)
			got, cut := storedPayloads(t, st, h)
			requirePayloads(t, h, want[h.name], got)
			require.Zero(t, cut, "the row from before the migration is whole")
		})
	}
}
