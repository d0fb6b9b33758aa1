package notification

import (
	"bytes"
	"slices"
)

// canonical re-encodes a valid JSON value compactly, with every object's
// members ordered by their key's bytes, so that formatting and member order
// do not change a notification's key. Strings and numbers are kept as
// written. It works on the bytes, without building maps: it runs for every
// notification. Invalid JSON (which Decode never passes on) comes back as is.
func canonical(raw []byte) []byte {
	if len(raw) == 0 {
		return nil
	}
	out, i, ok := canonValue(make([]byte, 0, len(raw)), raw, 0)
	if !ok || skipSpace(raw, i) != len(raw) {
		return raw
	}
	return out
}

func skipSpace(in []byte, i int) int {
	for i < len(in) && (in[i] == ' ' || in[i] == '\t' || in[i] == '\n' || in[i] == '\r') {
		i++
	}
	return i
}

// member is an object member's place in out: its key (quoted) and the whole
// "key":value text.
type member struct {
	key        []byte
	start, end int
}

func canonValue(out, in []byte, i int) ([]byte, int, bool) {
	i = skipSpace(in, i)
	if i >= len(in) {
		return out, i, false
	}
	switch in[i] {
	case '"':
		j, ok := stringEnd(in, i)
		if !ok {
			return out, i, false
		}
		return append(out, in[i:j]...), j, true
	case '[':
		out = append(out, '[')
		i = skipSpace(in, i+1)
		if i < len(in) && in[i] == ']' {
			return append(out, ']'), i + 1, true
		}
		for {
			var ok bool
			if out, i, ok = canonValue(out, in, i); !ok {
				return out, i, false
			}
			i = skipSpace(in, i)
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
		return canonObject(out, in, i)
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

func canonObject(out, in []byte, i int) ([]byte, int, bool) {
	base := len(out)
	out = append(out, '{')
	i = skipSpace(in, i+1)
	if i < len(in) && in[i] == '}' {
		return append(out, '}'), i + 1, true
	}
	var members []member
	sorted := true
	for {
		i = skipSpace(in, i)
		if i >= len(in) || in[i] != '"' {
			return out, i, false
		}
		j, ok := stringEnd(in, i)
		if !ok {
			return out, i, false
		}
		key := in[i:j]
		if n := len(members); n > 0 && bytes.Compare(members[n-1].key, key) > 0 {
			sorted = false
		}
		start := len(out)
		out = append(out, key...)
		i = skipSpace(in, j)
		if i >= len(in) || in[i] != ':' {
			return out, i, false
		}
		out = append(out, ':')
		if out, i, ok = canonValue(out, in, i+1); !ok {
			return out, i, false
		}
		members = append(members, member{key: key, start: start, end: len(out)})
		i = skipSpace(in, i)
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
	slices.SortStableFunc(members, func(a, b member) int { return bytes.Compare(a.key, b.key) })
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
func stringEnd(in []byte, i int) (int, bool) {
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
