package notification

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// keyV0 and canonicalV0 are Key and canonical as they were when keys were
// first stored, frozen here byte for byte: stored keys de-duplicate history
// and break merge ties, so Key may get faster but must never change.

func keyV0(n *Notification) []byte {
	h := sha256.New()
	var buf [binary.MaxVarintLen64]byte
	str := func(s string) {
		h.Write(buf[:binary.PutUvarint(buf[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	raw := func(b []byte) {
		h.Write(buf[:binary.PutUvarint(buf[:], uint64(len(b)))])
		h.Write(b)
	}
	ts := func(t time.Time) {
		if t.IsZero() {
			h.Write([]byte{0})
			return
		}
		h.Write([]byte{1})
		h.Write(buf[:binary.PutVarint(buf[:], t.UnixMicro())])
	}
	str(n.CommandID)
	str(string(n.Status))
	if n.TimeFromReceipt {
		ts(time.Time{})
	} else {
		ts(n.EventTime)
	}
	str(n.RequestID)
	str(n.DeviceID)
	str(n.ProductID)
	str(n.AppID)
	str(n.GatewayID)
	str(n.NodeID)
	raw(canonicalV0(n.Tags))
	ts(n.CreatedTime)
	ts(n.SentTime)
	ts(n.DeliveredTime)
	ts(n.ResponseTime)
	raw(canonicalV0(n.Result))
	if c := n.Creation; c != nil {
		str(c.ServiceID)
		str(c.CommandName)
		raw(canonicalV0(c.Paras))
		str(c.SendStrategy)
		if c.ExpireTime != nil {
			h.Write(buf[:binary.PutVarint(buf[:], int64(*c.ExpireTime))])
		}
	}
	return h.Sum(nil)
}

func canonicalV0(raw []byte) []byte {
	if len(raw) == 0 {
		return nil
	}
	out, i, ok := canonValueV0(make([]byte, 0, len(raw)), raw, 0)
	if !ok || skipSpaceV0(raw, i) != len(raw) {
		return raw
	}
	return out
}

func skipSpaceV0(in []byte, i int) int {
	for i < len(in) && (in[i] == ' ' || in[i] == '\t' || in[i] == '\n' || in[i] == '\r') {
		i++
	}
	return i
}

// memberV0 is an object member's place in out: its key (quoted) and the whole
// "key":value text.
type memberV0 struct {
	key        []byte
	start, end int
}

func canonValueV0(out, in []byte, i int) ([]byte, int, bool) {
	i = skipSpaceV0(in, i)
	if i >= len(in) {
		return out, i, false
	}
	switch in[i] {
	case '"':
		j, ok := stringEndV0(in, i)
		if !ok {
			return out, i, false
		}
		return append(out, in[i:j]...), j, true
	case '[':
		out = append(out, '[')
		i = skipSpaceV0(in, i+1)
		if i < len(in) && in[i] == ']' {
			return append(out, ']'), i + 1, true
		}
		for {
			var ok bool
			if out, i, ok = canonValueV0(out, in, i); !ok {
				return out, i, false
			}
			i = skipSpaceV0(in, i)
			if i >= len(in) {
				return out, i, false
			}
			if in[i] == ']' {
				return append(out, ']'), i + 1, true
			}
			if in[i] != ',' {
				return out, i, false
			}
			out = append(out, ',')
			i++
		}
	case '{':
		return canonObjectV0(out, in, i)
	default:
		j := i
		for j < len(in) && !bytes.ContainsRune([]byte(",]} \t\r\n"), rune(in[j])) {
			j++
		}
		if j == i {
			return out, i, false
		}
		return append(out, in[i:j]...), j, true
	}
}

func canonObjectV0(out, in []byte, i int) ([]byte, int, bool) {
	base := len(out)
	out = append(out, '{')
	i = skipSpaceV0(in, i+1)
	if i < len(in) && in[i] == '}' {
		return append(out, '}'), i + 1, true
	}
	var members []memberV0
	sorted := true
	for {
		i = skipSpaceV0(in, i)
		if i >= len(in) || in[i] != '"' {
			return out, i, false
		}
		j, ok := stringEndV0(in, i)
		if !ok {
			return out, i, false
		}
		key := in[i:j]
		if n := len(members); n > 0 && bytes.Compare(members[n-1].key, key) > 0 {
			sorted = false
		}
		start := len(out)
		out = append(out, key...)
		i = skipSpaceV0(in, j)
		if i >= len(in) || in[i] != ':' {
			return out, i, false
		}
		out = append(out, ':')
		if out, i, ok = canonValueV0(out, in, i+1); !ok {
			return out, i, false
		}
		members = append(members, memberV0{key: key, start: start, end: len(out)})
		i = skipSpaceV0(in, i)
		if i >= len(in) {
			return out, i, false
		}
		if in[i] == '}' {
			i++
			break
		}
		if in[i] != ',' {
			return out, i, false
		}
		out = append(out, ',')
		i++
	}
	if sorted {
		return append(out, '}'), i, true
	}
	// Rewrite the members in key order (a stable sort keeps duplicate keys
	// in their original order).
	text := slices.Clone(out[base+1:])
	off := base + 1
	slices.SortStableFunc(members, func(a, b memberV0) int { return bytes.Compare(a.key, b.key) })
	out = out[:base+1]
	for k, m := range members {
		if k > 0 {
			out = append(out, ',')
		}
		out = append(out, text[m.start-off:m.end-off]...)
	}
	return append(out, '}'), i, true
}

// stringEnd returns the index just past the JSON string starting at in[i].
func stringEndV0(in []byte, i int) (int, bool) {
	for j := i + 1; j < len(in); j++ {
		switch in[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return i, false
}

// keyCases are notifications whose keys exercise what Key's buffer and
// canonical's member table do with sizes and orders: objects with more
// members than fit on the stack, unsorted ones nested in sorted ones,
// repeated keys, values larger than Key's stack buffer, invalid JSON (kept
// as is), and every optional part.
func keyCases() []Notification {
	expire := 300
	at := time.Date(2024, 1, 2, 3, 4, 5, 678901000, time.UTC)
	big := `{"z":"` + strings.Repeat("x", 3000) + `","a":[` + strings.Repeat(`{"b":1,"a":2},`, 50) + `{}]}`
	var many strings.Builder
	many.WriteString("{")
	for i := 40; i > 0; i-- {
		fmt.Fprintf(&many, `"k%02d" : %d ,`, i, i)
	}
	many.WriteString(`"k00":{"y":[3,{"d":1,"c":2}],"x":null}}`)
	raws := []string{
		``, `null`, `{}`, `[]`, `"s"`, `-1.5e3`, `true`,
		`{"b":1,"a":2}`, ` { "a" : [ 1 , {"z":null,"y":true} ] , "b" : "x y" } `,
		`{"a":1,"a":0,"b":{"a":{"d":4,"c":3,"b":2,"a":1}}}`,
		`[{"tag_value":"v","tag_key":"k"},{"tag_key":"k2","tag_value":"v2"}]`,
		`{"s":"q\"}{,","t":"\u00e9\\"}`,
		many.String(), big,
		`{"a":`, `{"b":1,"a":2} x`, `[1,2`, `{"b":1,,"a":2}`,
	}
	var out []Notification
	for i, r := range raws {
		n := Notification{
			CommandID: "cmd", Status: Successful, EventTime: at, RequestID: "req", DeviceID: "dev",
			ProductID: "prod", AppID: "app", GatewayID: "gw", NodeID: "node",
			Tags: []byte(r), Result: []byte(raws[(i+7)%len(raws)]),
			CreatedTime: at.Add(-time.Hour), SentTime: at.Add(-time.Minute),
		}
		out = append(out, n)
		n.TimeFromReceipt = true
		n.Creation = &Creation{ServiceID: "svc", CommandName: "on", Paras: []byte(r), SendStrategy: "immediately"}
		out = append(out, n)
		n.Creation = &Creation{Paras: []byte(raws[(i+3)%len(raws)]), ExpireTime: &expire}
		n.DeliveredTime, n.ResponseTime = at, at.Add(time.Second)
		out = append(out, n)
	}
	return append(out, Notification{})
}

func TestKeyMatchesV0(t *testing.T) {
	t.Parallel()
	for _, n := range keyCases() {
		require.Equal(t, keyV0(&n), n.Key(), "%+v", n)
	}
}

// The key of the API reference's example, as main computed it before Key
// was rewritten: a change of Key's bytes would change it.
func TestKeyGolden(t *testing.T) {
	t.Parallel()
	body, err := os.ReadFile(filepath.Join("testdata", "seed000.json"))
	require.NoError(t, err)
	n, err := DecodeAt(body, time.Now())
	require.NoError(t, err)
	require.Equal(t, "4e9392a123970857b0cac927509a0c4713fa105a773b4f4fe0490b13f755082e", hex.EncodeToString(n.Key()))
}

func FuzzKeyMatchesV0(f *testing.F) {
	for _, n := range keyCases() {
		var paras []byte // json.RawMessage is not a type fuzzing takes
		if n.Creation != nil {
			paras = n.Creation.Paras
		}
		f.Add([]byte(n.Tags), []byte(n.Result), paras, n.CommandID, n.EventTime.UnixMicro(), n.Creation != nil)
	}
	f.Fuzz(func(t *testing.T, tags, result, paras []byte, text string, micros int64, creation bool) {
		n := Notification{CommandID: text, Status: Status(text), DeviceID: text, Tags: tags, Result: result,
			EventTime: time.UnixMicro(micros).UTC(), SentTime: time.UnixMicro(-micros).UTC()}
		if creation {
			expire := int(micros)
			n.Creation = &Creation{ServiceID: text, Paras: paras, ExpireTime: &expire}
		}
		if k, want := n.Key(), keyV0(&n); !bytes.Equal(k, want) {
			t.Fatalf("Key %x, keyV0 %x for %+v", k, want, n)
		}
	})
}
