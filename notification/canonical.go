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
	return appendCanonical(make([]byte, 0, len(raw)), raw)
}

// appendCanonical appends canonical(raw) to out.
func appendCanonical(out, raw []byte) []byte {
	if len(raw) == 0 {
		return out
	}
	start := len(out)
	out, i, ok := canonValue(out, raw, 0)
	if !ok || skipSpace(raw, i) != len(raw) {
		return append(out[:start], raw...)
	}
	return out
}

func skipSpace(in []byte, i int) int {
	for i < len(in) && (in[i] == ' ' || in[i] == '\t' || in[i] == '\n' || in[i] == '\r') {
		i++
	}
	return i
}

// member is an object member's place in out: the whole "key":value text
// from start to end, its key (quoted) from start to keyEnd.
type member struct {
	start, keyEnd, end int
}

func (m member) key(out []byte) []byte { return out[m.start:m.keyEnd] }

// canonValue appends the canonical form of the value at in[i:] to out.
// Objects are read here too, not in a function of their own: Go's escape
// analysis gives up on mutually recursive functions and would move every
// caller's buffer (Key's, on the stack) to the heap.
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
		base := len(out)
		out = append(out, '{')
		i = skipSpace(in, i+1)
		if i < len(in) && in[i] == '}' {
			return append(out, '}'), i + 1, true
		}
		// Room on the stack for the members of any usual object.
		var stack [8]member
		members := stack[:0]
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
			m := member{start: len(out)}
			out = append(out, in[i:j]...)
			m.keyEnd = len(out)
			if n := len(members); n > 0 && bytes.Compare(members[n-1].key(out), m.key(out)) > 0 {
				sorted = false
			}
			i = skipSpace(in, j)
			if i >= len(in) || in[i] != ':' {
				return out, i, false
			}
			out = append(out, ':')
			if out, i, ok = canonValue(out, in, i+1); !ok {
				return out, i, false
			}
			m.end = len(out)
			members = append(members, m)
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
		if !sorted {
			out = sortMembers(out, base, members)
		}
		return append(out, '}'), i, true
	default:
		j := i
		for j < len(in) && !endsLiteral(in[j]) {
			j++
		}
		if j == i {
			return out, i, false
		}
		return append(out, in[i:j]...), j, true
	}
}

// endsLiteral reports whether c ends a number, true, false or null.
func endsLiteral(c byte) bool {
	switch c {
	case ',', ']', '}', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

// sortMembers rewrites the members of the object at out[base:] in key order
// (a stable sort keeps duplicate keys in their original order): it appends
// them in that order after the text written so far, then moves them over
// it, which they fill exactly.
func sortMembers(out []byte, base int, members []member) []byte {
	slices.SortStableFunc(members, func(a, b member) int { return bytes.Compare(a.key(out), b.key(out)) })
	end := len(out)
	for k, m := range members {
		if k > 0 {
			out = append(out, ',')
		}
		out = append(out, out[m.start:m.end]...)
	}
	copy(out[base+1:], out[end:])
	return out[:end]
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
