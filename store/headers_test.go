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
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// The history keeps each notification's header once (notification_headers)
// and the payload without it: every payload must still come back byte for
// byte as received. These bodies are what the property runs over: the
// simulator's stream (disorder, duplicates, poison, other resources), the
// published samples, and the shapes the fast path leaves to encoding/json or
// places oddly.
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
	note := func(id, status, at, header, extra string) []byte {
		return fmt.Appendf(nil, `{"resource":"device.command.status","event":"update","event_time":"%s",%s"notify_data":{"header":%s,"body":{"command_id":"%s","status":"%s"}}}`,
			at, extra, header, id, status)
	}
	h := func(dev string) string { return fmt.Sprintf(head, dev) }
	bodies = append(bodies,
		// Multi-byte characters before the header and in it: positions are
		// characters, not bytes.
		note("odd-1", "SENT", "20261101T000001Z", h("1"), `"request_id":"ünïcödé-€",`),
		note("odd-1", "DELIVERED", "20261101T000002Z", h("1"), `"request_id":"ünïcödé-€",`),
		// Another header within one command.
		note("odd-1", "SUCCESSFUL", "20261101T000003Z", h("2"), ""),
		// Whitespace inside and around the header.
		note("odd-2", "SENT", "20261101T000001Z", " \n\t"+strings.ReplaceAll(h("1"), ",", " ,\n ")+" ", ""),
		// Escapes (encoding/json decides), a short header, a null one.
		note("odd-3", "SENT", "20261101T000001Z", `{"device_id":"d\u00e9v-1","app_id":"a","product_id":"p","node_id":"n","gateway_id":"g"}`, ""),
		note("odd-3", "DELIVERED", "20261101T000002Z", `{"device_id":"d"}`, ""),
		note("odd-3", "SUCCESSFUL", "20261101T000003Z", `null`, ""),
		// The header after the body.
		[]byte(`{"resource":"device.command.status","event":"update","event_time":"20261101T000001Z","notify_data":{"body":{"command_id":"odd-4","status":"SENT"},"header":`+h("1")+`}}`),
		// A key spelled in another case (encoding/json matches it).
		[]byte(`{"resource":"device.command.status","event":"update","event_time":"20261101T000002Z","notify_data":{"Header":`+h("1")+`,"body":{"command_id":"odd-4","status":"DELIVERED"}}}`),
	)
	return bodies
}

// classified are the items the worker would hand to Apply for bodies, and
// the payload each history row must give back, by its key.
func classified(t *testing.T, bodies [][]byte) ([]ingest.Item, map[string]string) {
	t.Helper()
	at := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	var items []ingest.Item
	want := map[string]string{}
	for _, b := range bodies {
		it := ingest.Classify(b, "amqp:q", at, ingest.Limits{MaxBodyBytes: 1 << 20})
		if it.Record == nil && it.DeadLetter == nil {
			continue
		}
		items = append(items, it)
		if n, ok := it.Record.(*notification.Notification); ok {
			want[hex.EncodeToString(n.Key())] = string(b)
		}
	}
	return items, want
}

// storedPayloads reads every history payload through command_events, by key.
func storedPayloads(t *testing.T, st *store.Store) (map[string]string, int) {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `SELECT encode(event_key, 'hex'), payload, header_at IS NOT NULL FROM command_events`)
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
		require.False(t, dup, "two history rows with the key %s", key)
		got[key] = string(payload)
		if wasCut {
			cut++
		}
	}
	require.NoError(t, rows.Err())
	return got, cut
}

func requirePayloads(t *testing.T, want, got map[string]string) {
	t.Helper()
	require.Len(t, got, len(want), "one history row per distinct notification")
	for k, w := range want {
		require.Equal(t, w, got[k], "payload of %s, read through command_events", k)
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

func TestHistoryPayloadsComeBackByteForByte(t *testing.T) {
	t.Parallel()
	st := setup(t)
	items, want := classified(t, headerBodies(t))
	applyAll(t, st, items, 97)

	got, cut := storedPayloads(t, st)
	requirePayloads(t, want, got)
	// Not a vacuous pass: most rows are stored without their header.
	require.Greater(t, cut, len(want)*9/10, "rows stored without their header, of %d", len(want))
	// The odd shapes: which are cut is what the decoders place (characters
	// before the header are multi-byte in odd-1; the short and null headers,
	// and one spelled "Header", are stored whole).
	for id, n := range map[string]int{"odd-1": 3, "odd-2": 1, "odd-3": 1, "odd-4": 1} {
		require.Equal(t, n, count(t, st, `SELECT count(*) FROM device_command_events WHERE command_id = $1 AND header_at IS NOT NULL`, id), id)
	}
	var stored, headers int
	require.NoError(t, st.Pool().QueryRow(context.Background(), `
		SELECT (SELECT sum(octet_length(stored_payload)) FROM device_command_events),
		       (SELECT count(*) FROM notification_headers)`).Scan(&stored, &headers))
	t.Logf("%d rows, %d without their header, %d headers kept, %d payload bytes stored", len(want), cut, headers, stored)

	// A redelivery changes nothing: no row, no header, no byte.
	var before string
	require.NoError(t, st.Pool().QueryRow(context.Background(), `
		SELECT md5(string_agg(e::text, ',' ORDER BY command_id, event_key)) FROM device_command_events e`).Scan(&before))
	applyAll(t, st, items, 61)
	var after string
	require.NoError(t, st.Pool().QueryRow(context.Background(), `
		SELECT md5(string_agg(e::text, ',' ORDER BY command_id, event_key)) FROM device_command_events e`).Scan(&after))
	require.Equal(t, before, after, "the history after every notification was delivered again")
	var headersAfter int
	require.NoError(t, st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM notification_headers`).Scan(&headersAfter))
	require.Equal(t, headers, headersAfter)
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
	body := `{"resource":"device.command.status","event":"update","event_time":"20261101T000001Z","notify_data":{"header":` +
		header + `,"body":{"command_id":"c-collide","status":"SENT"}}}`
	items, want := classified(t, [][]byte{[]byte(body)})
	applyAll(t, st, items, 1)
	got, cut := storedPayloads(t, st)
	requirePayloads(t, want, got)
	require.Zero(t, cut)
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
	got, _ := storedPayloads(t, st)
	requirePayloads(t, want, got)
}
