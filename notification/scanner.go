package notification

// scanner walks a JSON text in one pass and reports where things are; it
// decodes nothing, so it allocates nothing. It is exactly as strict as
// encoding/json's grammar (RFC 8259), so that whatever it accepts
// encoding/json accepts too: the fast decoder may then answer for a body
// without asking encoding/json. Whatever it rejects goes to encoding/json,
// which says why.
type scanner struct {
	data  []byte
	pos   int
	depth int
}

// maxScanDepth bounds nesting. A notification nests four deep; encoding/json
// allows 10,000 levels, so anything deeper than this is left to it rather
// than followed by recursion here.
const maxScanDepth = 64

// space skips whitespace: only the four characters JSON allows (not \v, \f
// or U+00A0, which encoding/json refuses).
func (s *scanner) space() {
	d, i := s.data, s.pos
	for i < len(d) && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r') {
		i++
	}
	s.pos = i
}

// peek skips whitespace and returns the next byte, or 0 at the end.
func (s *scanner) peek() byte {
	s.space()
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

// eat skips whitespace and consumes c if it comes next.
func (s *scanner) eat(c byte) bool {
	if s.peek() == c {
		s.pos++
		return true
	}
	return false
}

// plainString marks the bytes a string holds as they are: not its quote,
// not a backslash and not a control character (which JSON forbids raw).
// Anything from 0x80 up is taken as it is: the caller has checked that the
// whole body is UTF-8.
var plainString = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str reads a string and returns where its contents lie (without quotes)
// and whether it holds any escape, since then its contents are not its
// value.
func (s *scanner) str() (start, end int, escaped, ok bool) {
	if s.peek() != '"' {
		return 0, 0, false, false
	}
	start = s.pos + 1
	d, i := s.data, start // locals, which the compiler keeps in registers
	for {
		for i < len(d) && plainString[d[i]] {
			i++
		}
		if i >= len(d) {
			return 0, 0, false, false
		}
		switch d[i] {
		case '"':
			s.pos = i + 1
			return start, i, escaped, true
		case '\\':
			s.pos = i
			if !s.escape() {
				return 0, 0, false, false
			}
			i = s.pos
			escaped = true
		default: // a control character
			return 0, 0, false, false
		}
	}
}

// escape reads one escape sequence, s.pos being at its backslash.
func (s *scanner) escape() bool {
	if s.pos+1 >= len(s.data) {
		return false
	}
	switch s.data[s.pos+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.pos += 2
		return true
	case 'u':
		if _, ok := hex4(s.data, s.pos+2); !ok {
			return false
		}
		s.pos += 6
		return true
	}
	return false
}

// number reads a number in JSON's grammar,
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?; what may follow it is
// the enclosing value's business.
func (s *scanner) number() bool {
	d, i := s.data, s.pos
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		i = digits(d, i)
	default:
		return false
	}
	if i < len(d) && d[i] == '.' {
		j := digits(d, i+1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		j := digits(d, i)
		if j == i {
			return false
		}
		i = j
	}
	s.pos = i
	return true
}

// digits returns the index past the decimal digits starting at d[i].
func digits(d []byte, i int) int {
	for i < len(d) && '0' <= d[i] && d[i] <= '9' {
		i++
	}
	return i
}

// literal reads true, false or null, whichever word is.
func (s *scanner) literal(word string) bool {
	if len(s.data)-s.pos < len(word) || string(s.data[s.pos:s.pos+len(word)]) != word {
		return false
	}
	s.pos += len(word)
	return true
}

// value reads any one value.
func (s *scanner) value() bool {
	switch s.peek() {
	case '{':
		return s.object(func([]byte, bool) bool { return s.value() })
	case '[':
		return s.array()
	case '"':
		_, _, _, ok := s.str()
		return ok
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	}
	return s.number()
}

// enter counts one more level of nesting and reports whether it is allowed.
func (s *scanner) enter() bool {
	s.depth++
	return s.depth <= maxScanDepth
}

// object reads an object. For each member it calls member with the key as
// written (quotes stripped; escaped says whether it holds escapes) and the
// scanner before the member's value, which member must read.
func (s *scanner) object(member func(key []byte, escaped bool) bool) bool {
	if !s.eat('{') || !s.enter() {
		return false
	}
	if s.eat('}') {
		s.depth--
		return true
	}
	for {
		start, end, escaped, ok := s.str()
		if !ok || !s.eat(':') || !member(s.data[start:end], escaped) {
			return false
		}
		if s.eat(',') {
			continue
		}
		if s.eat('}') {
			s.depth--
			return true
		}
		return false
	}
}

// array reads an array.
func (s *scanner) array() bool {
	if !s.eat('[') || !s.enter() {
		return false
	}
	if s.eat(']') {
		s.depth--
		return true
	}
	for {
		if !s.value() {
			return false
		}
		if s.eat(',') {
			continue
		}
		if s.eat(']') {
			s.depth--
			return true
		}
		return false
	}
}

// document reads the whole text as one object with nothing but whitespace
// after it, calling member for each of its members as object does.
func (s *scanner) document(member func(key []byte, escaped bool) bool) bool {
	if s.peek() != '{' || !s.object(member) {
		return false
	}
	s.space()
	return s.pos == len(s.data)
}

// rawValue reads any one value and returns where it lies, without the
// whitespace around it.
func (s *scanner) rawValue() (start, end int, ok bool) {
	s.space()
	start = s.pos
	ok = s.value()
	return start, s.pos, ok
}

// LeadingResource is the resource body names in its first member, when that
// member is "resource" and its value a string without escapes, as the
// platform writes a notification (seed 000); nil for any other body. It
// reads nothing after that member: a hint of the kind, which the kind's
// decoder then checks (ingest.decode).
func LeadingResource(body []byte) []byte {
	s := scanner{data: body}
	if !s.eat('{') {
		return nil
	}
	start, end, escaped, ok := s.str()
	if !ok || escaped || string(body[start:end]) != "resource" || !s.eat(':') {
		return nil
	}
	if start, end, escaped, ok = s.str(); !ok || escaped {
		return nil
	}
	return body[start:end]
}
