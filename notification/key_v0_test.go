package notification

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"time"
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
