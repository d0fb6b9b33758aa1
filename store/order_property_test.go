package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// TestRowIsAFunctionOfTheSet applies the same notifications, about 1,500
// commands' worth, in several random orders, each into a schema of its own,
// and requires every command's row to be byte for byte the same in all of
// them. The notifications' JSON (tags, paras, result) is spelled in ways
// PostgreSQL's jsonb calls equal but keeps apart (numbers 1, 1.0, 1e0,
// 10E-1; keys escaped or not) or reads differently from how the key's
// canonical form does (duplicate keys, escaped and not, in another member
// order): the merge must not keep whichever spelling came first. Each
// command's notifications tie on time and rank (two final ones at the same
// second), omit facts (device, creation time, product, tags, paras) or
// disagree on one (sent time), carry a result on a loser only, and one
// command in six is a legacy callback's, timed by its receipt.
//
// The orders are: round by round (each notification of a command in a batch
// of its own, so every merge is the SQL's, across batches), each command's
// whole set in one batch (store/fold.go joins what it may, the rest is
// merged in rounds of one statement each), and a shuffle of everything with
// duplicates into batches of random size (both). Two of them track changes
// as the worker does (store.OnChange), which writes through the same merge.
//
// The seed is random; CMDTRACK_TEST_ORDER_SEED replays one.
func TestRowIsAFunctionOfTheSet(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CMDTRACK_TEST_ORDER_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "CMDTRACK_TEST_ORDER_SEED")
	}
	rng := rand.New(rand.NewPCG(seed, 26))

	const commands = 1500
	sets := make([][]notification.Notification, commands)
	for c := range sets {
		sets[c] = jsonVariants(rng, fmt.Sprintf("cmd-%04d", c))
	}

	modes := []struct {
		name  string
		order func(*rand.Rand, [][]notification.Notification) [][]*notification.Notification
		track bool // as the worker writes: with the outcome metrics' change tracking
	}{{"rounds", byRounds, false}, {"whole", wholeSets, true}, {"shuffled", shuffled, false}, {"shuffled", shuffled, true}}
	rows := make([]map[string]string, len(modes))
	t.Run("orders", func(t *testing.T) {
		for i, mode := range modes {
			batches := mode.order(rand.New(rand.NewPCG(seed, uint64(i))), sets)
			t.Run(fmt.Sprint(i, mode.name), func(t *testing.T) {
				t.Parallel()
				st := setup(t)
				if mode.track {
					st.OnChange(func([]store.Change) {})
				}
				for _, batch := range batches {
					items := make([]ingest.Item, len(batch))
					for j, n := range batch {
						items[j] = ingest.Item{Source: "test", Record: n}
					}
					res, err := st.Apply(context.Background(), items)
					require.NoError(t, err, "seed %d", seed)
					for j, r := range res {
						require.Equal(t, ingest.Applied, r.Outcome, "seed %d: %+v of %s", seed, r.DeadLetter, batch[j].CommandID)
					}
				}
				rows[i] = commandRows(t, st)
				require.Len(t, rows[i], commands)
			})
		}
	})
	if t.Failed() {
		return
	}

	differ := 0
	columns := map[string]int{} // which columns differ, how often
	var example string
	for id, want := range rows[0] {
		for i := 1; i < len(rows); i++ {
			got := rows[i][id]
			if got == want {
				continue
			}
			if differ == 0 {
				example = fmt.Sprintf("%s: order 0 stored\n%s\norder %d stored\n%s", id, want, i, got)
			}
			differ++
			var w, g map[string]json.RawMessage
			require.NoError(t, json.Unmarshal([]byte(want), &w))
			require.NoError(t, json.Unmarshal([]byte(got), &g))
			for k := range w {
				if string(w[k]) != string(g[k]) {
					columns[k]++
				}
			}
			break
		}
	}
	require.Zero(t, differ, "seed %d (CMDTRACK_TEST_ORDER_SEED=%d replays it): %d of %d commands' rows depend on the "+
		"order their notifications arrived in (by column: %v); the first:\n%s", seed, seed, differ, commands, columns, example)
}

// The cases of TestRowIsAFunctionOfTheSet one by one, in both orders, in
// separate batches (the SQL merge) and in one (the fold, then the SQL): of
// jsonb-equal facts the smallest text stays; of two results with one key,
// the greater text wins.
func TestEqualJSONKeepsOneSpelling(t *testing.T) {
	t.Parallel()
	st := setup(t)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	note := func(id string, tags, paras, result string) *notification.Notification {
		n := &notification.Notification{CommandID: id, Status: notification.Successful, EventTime: at, Payload: []byte(`{}`)}
		if tags != "" {
			n.Tags = json.RawMessage(tags)
		}
		if paras != "" {
			n.Creation = &notification.Creation{Paras: json.RawMessage(paras)}
		}
		if result != "" {
			n.Result = json.RawMessage(result)
		}
		return n
	}
	for _, c := range []struct {
		name       string
		a, b       [3]string // tags, paras, result
		column     string
		want       string
		oneKeyWant bool
	}{
		{"tags 1 and 1.0", [3]string{`[1.0]`}, [3]string{`[1]`}, "tags", `[1.0]`, false}, // "." is before "]"
		{"tags 10E-1 and 1e0", [3]string{`[10E-1]`}, [3]string{`[1e0]`}, "tags", `[1.0]`, false},
		{"paras", [3]string{"", `{"v":1}`}, [3]string{"", `{"v":1.0}`}, "paras", `{"v": 1.0}`, false},
		{"paras, a key escaped", [3]string{"", `{"\u0076":1.00}`}, [3]string{"", `{"v":1.0}`}, "paras", `{"v": 1.00}`, false},
		{"a result's duplicate keys", [3]string{"", "", `{"\u0061":1,"a":2}`}, [3]string{"", "", `{"a":2,"\u0061":1}`},
			"result", `{"a": 2}`, true},
		{"a result's equal duplicates", [3]string{"", "", `{"\u0061":1,"a":1.0}`}, [3]string{"", "", `{"a":1.0,"\u0061":1}`},
			"result", `{"a": 1}`, true},
	} {
		for i, order := range []string{"ab", "ba", "ab together", "ba together"} {
			id := fmt.Sprintf("%s %d", c.name, i)
			a, b := note(id, c.a[0], c.a[1], c.a[2]), note(id, c.b[0], c.b[1], c.b[2])
			require.Equal(t, c.oneKeyWant, string(a.Key()) == string(b.Key()), c.name)
			if order[0] == 'b' {
				a, b = b, a
			}
			if strings.HasSuffix(order, "together") {
				apply(t, st, []ingest.Item{{Source: "test", Record: a}, {Source: "test", Record: b}})
			} else {
				apply(t, st, []ingest.Item{{Source: "test", Record: a}})
				apply(t, st, []ingest.Item{{Source: "test", Record: b}})
			}
			var got string
			require.NoError(t, st.Pool().QueryRow(context.Background(),
				`SELECT `+c.column+`::text FROM device_commands WHERE command_id = $1`, id).Scan(&got))
			require.Equal(t, c.want, got, "%s, %s", c.name, order)
		}
	}
}

// commandRows is every command's row as text, but for what records when
// and from what it was written (updated_at, first_seen_at, and the row
// before the last change, previous_status and previous_known).
func commandRows(t *testing.T, st *store.Store) map[string]string {
	t.Helper()
	r, err := st.Pool().Query(context.Background(), `SELECT command_id,
		(to_jsonb(c) - 'updated_at' - 'first_seen_at' - 'previous_status' - 'previous_known')::text
		FROM device_commands c`)
	require.NoError(t, err)
	out := map[string]string{}
	for r.Next() {
		var id, row string
		require.NoError(t, r.Scan(&id, &row))
		out[id] = row
	}
	require.NoError(t, r.Err())
	return out
}

// byRounds gives each command's notifications in a random order, with a
// duplicate or two, one per command per batch: round k holds the k-th of
// every command, in batches of up to 256 commands.
func byRounds(rng *rand.Rand, sets [][]notification.Notification) [][]*notification.Notification {
	var rounds [][]*notification.Notification
	for c := range sets {
		notes := withDuplicates(rng, sets[c])
		for k, n := range notes {
			if k == len(rounds) {
				rounds = append(rounds, nil)
			}
			rounds[k] = append(rounds[k], n)
		}
	}
	var out [][]*notification.Notification
	for _, round := range rounds {
		rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		for len(round) > 0 {
			k := min(len(round), 256)
			out = append(out, round[:k])
			round = round[k:]
		}
	}
	return out
}

// wholeSets puts each command's notifications, in a random order, into one
// batch, about 256 notifications a batch.
func wholeSets(rng *rand.Rand, sets [][]notification.Notification) [][]*notification.Notification {
	var out [][]*notification.Notification
	var batch []*notification.Notification
	for _, c := range rng.Perm(len(sets)) {
		batch = append(batch, withDuplicates(rng, sets[c])...)
		if len(batch) >= 256 {
			out, batch = append(out, batch), nil
		}
	}
	if len(batch) > 0 {
		out = append(out, batch)
	}
	return out
}

// shuffled mixes every notification, with duplicates, into batches of 1 to
// 300.
func shuffled(rng *rand.Rand, sets [][]notification.Notification) [][]*notification.Notification {
	var all []*notification.Notification
	for c := range sets {
		all = append(all, withDuplicates(rng, sets[c])...)
	}
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	var out [][]*notification.Notification
	for len(all) > 0 {
		k := min(len(all), 1+rng.IntN(300))
		out = append(out, all[:k])
		all = all[k:]
	}
	return out
}

// withDuplicates is notes in a random order, some of them twice.
func withDuplicates(rng *rand.Rand, notes []notification.Notification) []*notification.Notification {
	out := make([]*notification.Notification, 0, len(notes)+2)
	for i := range notes {
		out = append(out, &notes[i])
	}
	for range rng.IntN(3) {
		out = append(out, &notes[rng.IntN(len(notes))])
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// jsonVariants is one command's notifications: a lifecycle whose tags,
// paras and results mean the same (or nearly) but are spelled differently,
// and twins of some of them that differ only in their members' order, which
// may give the same key (the canonical form sorts members) and yet another
// value in jsonb (which keeps the last of duplicate keys).
func jsonVariants(rng *rand.Rand, id string) []notification.Notification {
	base := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(rng.IntN(1e6)) * time.Second)
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }
	tags := randomValue(rng, 2, true)
	paras := randomValue(rng, 2, false)
	result := randomValue(rng, 2, false)
	maybe := func(v *spelled) json.RawMessage {
		if rng.IntN(5) == 0 {
			return nil
		}
		return json.RawMessage(v.respell(rng).render())
	}
	// A legacy callback carries no event time: it is timed by its receipt
	// (the same for a redelivery, which is the same *Notification here).
	legacy := rng.IntN(6) == 0
	mk := func(st notification.Status, sec int) notification.Notification {
		n := notification.Notification{CommandID: id, Status: st, EventTime: at(sec), TimeFromReceipt: legacy,
			Tags: maybe(tags), Payload: []byte(`{}`)}
		// Facts each notification may omit, or (sent_time) disagree on.
		if rng.IntN(4) != 0 {
			n.DeviceID = "dev-" + id
		}
		if rng.IntN(4) != 0 {
			n.CreatedTime = at(0)
		}
		if rng.IntN(3) == 0 {
			n.ProductID = "prod-" + id[len(id)-1:]
		}
		if r, _ := st.Rank(); r > 0 && rng.IntN(2) == 0 {
			n.SentTime = at(1 + rng.IntN(2))
		}
		if rng.IntN(3) == 0 {
			n.Creation = &notification.Creation{CommandName: "SET", Paras: maybe(paras)}
		}
		// A final status sometimes without a result: of two of equal rank
		// and time, the result may be on the loser only.
		if r, _ := st.Rank(); r == 3 && rng.IntN(3) != 0 {
			n.Result = json.RawMessage(result.respell(rng).render())
		}
		return n
	}
	notes := []notification.Notification{
		mk(notification.Pending, 0), mk(notification.Sent, 1), mk(notification.Delivered, 2),
		mk(notification.Successful, 5),
		mk(notification.Successful, 5), // the same but for its spelling: the key decides
		mk(notification.Failed, 5),
	}
	for _, i := range []int{0, 2, 3} {
		notes = append(notes, twin(rng, notes[i]))
	}
	return notes
}

// twin is n with the members of its JSON values in another order.
func twin(rng *rand.Rand, n notification.Notification) notification.Notification {
	reorder := func(raw json.RawMessage) json.RawMessage {
		if raw == nil {
			return nil
		}
		return json.RawMessage(parseSpelled(raw).shuffle(rng).render())
	}
	n.Tags, n.Result = reorder(n.Tags), reorder(n.Result)
	if n.Creation != nil {
		c := *n.Creation
		c.Paras = reorder(c.Paras)
		n.Creation = &c
	}
	return n
}

// spelled is a JSON value as written: scalars as their text, objects as
// their members in order, each key as written (quoted).
type spelled struct {
	text    string // a number or a string, as written
	items   []*spelled
	keys    []string // as written
	names   []string // what they say, for respell
	object  bool
	array   bool
	meaning any // for respell: an int, a string, or nothing for containers
}

func (s *spelled) render() string {
	switch {
	case s.object:
		parts := make([]string, len(s.keys))
		for i := range s.keys {
			parts[i] = s.keys[i] + ":" + s.items[i].render()
		}
		return "{" + strings.Join(parts, ",") + "}"
	case s.array:
		parts := make([]string, len(s.items))
		for i, it := range s.items {
			parts[i] = it.render()
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return s.text
}

// respell writes s's meaning anew: each number, string and key in a random
// one of its spellings, members in a random order, sometimes after a
// duplicate of the same key (another spelling, another value) that the
// member after it overrides.
func (s *spelled) respell(rng *rand.Rand) *spelled {
	switch {
	case s.object:
		out := &spelled{object: true}
		for _, i := range rng.Perm(len(s.keys)) {
			key := s.names[i]
			if rng.IntN(3) == 0 {
				out.keys, out.names = append(out.keys, spellString(rng, key)), append(out.names, key)
				out.items = append(out.items, number(rng, 7))
			}
			out.keys, out.names = append(out.keys, spellString(rng, key)), append(out.names, key)
			out.items = append(out.items, s.items[i].respell(rng))
		}
		return out
	case s.array:
		out := &spelled{array: true}
		for _, it := range s.items {
			out.items = append(out.items, it.respell(rng))
		}
		return out
	}
	switch m := s.meaning.(type) {
	case int:
		return number(rng, m)
	case string:
		return &spelled{text: spellString(rng, m), meaning: m}
	}
	return s
}

// shuffle is s with every object's members in a random order, spelled as
// they were.
func (s *spelled) shuffle(rng *rand.Rand) *spelled {
	out := *s
	out.items = make([]*spelled, len(s.items))
	out.keys, out.names = slices.Clone(s.keys), nil // the names may no longer be in the keys' order
	for i, it := range s.items {
		out.items[i] = it.shuffle(rng)
	}
	if s.object {
		rng.Shuffle(len(out.keys), func(i, j int) {
			out.keys[i], out.keys[j] = out.keys[j], out.keys[i]
			out.items[i], out.items[j] = out.items[j], out.items[i]
		})
	}
	return &out
}

// randomValue is a small nested value: for tags an array of tag objects,
// otherwise an object, with numbers from 0 to 3 and short keys.
func randomValue(rng *rand.Rand, depth int, tags bool) *spelled {
	if tags {
		out := &spelled{array: true}
		for range 1 + rng.IntN(2) {
			out.items = append(out.items, &spelled{object: true,
				keys:  []string{`"tag_key"`, `"tag_value"`},
				names: []string{"tag_key", "tag_value"},
				items: []*spelled{{text: `"k"`, meaning: "k"}, randomValue(rng, depth-1, false)}})
		}
		return out
	}
	switch {
	case depth <= 0 || rng.IntN(4) == 0:
		return number(rng, rng.IntN(4))
	case rng.IntN(3) == 0:
		out := &spelled{array: true}
		for range 1 + rng.IntN(3) {
			out.items = append(out.items, randomValue(rng, depth-1, false))
		}
		return out
	}
	out := &spelled{object: true}
	for _, k := range []string{"a", "b", "code", "v"}[:1+rng.IntN(4)] {
		out.keys, out.names = append(out.keys, strconv.Quote(k)), append(out.names, k)
		out.items = append(out.items, randomValue(rng, depth-1, false))
	}
	return out
}

// number spells v, from 0 to 9, in one of the ways jsonb reads as v.
func number(rng *rand.Rand, v int) *spelled {
	forms := []string{"%d", "%d.0", "%de0", "%dE-1", "%d.00", "0.%de1", "%dE+0", "%d.0e0"}
	f := forms[rng.IntN(len(forms))]
	text := fmt.Sprintf(f, v)
	if f == "%dE-1" {
		text = fmt.Sprintf(f, v*10) // 10E-1, and 0E-1 (00E-1 is not JSON)
	}
	if v == 0 && rng.IntN(4) == 0 {
		text = "-" + text
	}
	return &spelled{text: text, meaning: v}
}

// spellString quotes s with some of its letters escaped as \u00XX.
func spellString(rng *rand.Rand, s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range []byte(s) {
		if rng.IntN(3) == 0 {
			fmt.Fprintf(&b, `\u%04x`, c)
		} else {
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// parseSpelled reads raw, written by render, back into its spelling.
func parseSpelled(raw []byte) *spelled {
	s, rest := parseValue(string(raw))
	if rest != "" {
		panic("trailing " + rest)
	}
	return s
}

func parseValue(in string) (*spelled, string) {
	switch in[0] {
	case '{', '[':
		out := &spelled{object: in[0] == '{', array: in[0] == '['}
		in = in[1:]
		for in[0] != '}' && in[0] != ']' {
			if out.object {
				end := strings.IndexByte(in[1:], '"') + 2 // keys have no escaped quotes
				out.keys = append(out.keys, in[:end])
				in = in[end+1:] // and the colon
			}
			var v *spelled
			v, in = parseValue(in)
			out.items = append(out.items, v)
			if in[0] == ',' {
				in = in[1:]
			}
		}
		return out, in[1:]
	}
	end := strings.IndexAny(in, ",]}")
	if end < 0 {
		end = len(in)
	}
	return &spelled{text: in[:end]}, in[end:]
}
