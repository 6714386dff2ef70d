// Package jsonr reads JSON without reflection, for the hot paths that
// decode a known shape (the distributor's /ingest packet, the analyzers'
// envelope summary): a strict, single-pass scanner the caller walks field
// by field. It accepts exactly RFC 8259 JSON and decodes strings exactly as
// encoding/json does (invalid UTF-8 and lone surrogates become U+FFFD);
// the decoders built on it are fuzzed against encoding/json
// (ingest.FuzzDecodePacketAgreesWithEncodingJSON,
// envelope.FuzzUnmarshalSummaryAgreesWithEncodingJSON). It is the reading
// side of internal/jsonw.
package jsonr

import (
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// Scanner reads one JSON value from a byte slice. The /ingest packet
// decode was one of the largest items of the distributor's CPU profile at
// saturation with encoding/json's reflection, the envelope summary the
// largest of an analyzer's.
type Scanner struct {
	b     []byte
	i     int
	depth int
}

// New returns a scanner at the start of b.
func New(b []byte) *Scanner { return &Scanner{b: b} }

// MaxDepth is encoding/json's nesting limit.
const MaxDepth = 10000

// ErrSyntax is wrapped by every syntax error.
var ErrSyntax = errors.New("invalid JSON")

// Errorf returns an ErrSyntax at the current offset.
func (s *Scanner) Errorf(format string, a ...any) error {
	return fmt.Errorf("%w at offset %d: %s", ErrSyntax, s.i, fmt.Sprintf(format, a...))
}

func (s *Scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// Peek skips white space and returns the next byte (0 at the end).
func (s *Scanner) Peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

func (s *Scanner) Expect(c byte) error {
	if s.Peek() != c {
		if s.i >= len(s.b) {
			return s.Errorf("unexpected end of input, want %q", c)
		}
		return s.Errorf("unexpected %q, want %q", s.b[s.i], c)
	}
	s.i++
	return nil
}

// AtEnd skips white space and reports whether nothing else follows.
func (s *Scanner) AtEnd() bool {
	s.ws()
	return s.i >= len(s.b)
}

// Literal consumes null, true or false.
func (s *Scanner) Literal(lit string) error {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return s.Errorf("invalid literal")
	}
	s.i += len(lit)
	return nil
}

// Null consumes a null if one is next.
func (s *Scanner) Null() bool {
	if s.Peek() == 'n' && s.Literal("null") == nil {
		return true
	}
	return false
}

// Object calls field for each key of an object; field must consume the
// value. The next value must be an object.
func (s *Scanner) Object(field func(key string) error) error {
	return s.ObjectBytes(func(key []byte) error { return field(string(key)) })
}

// ObjectBytes is Object without a string per key: each key as StrBytes
// returns it (a slice of the input unless it had escapes).
func (s *Scanner) ObjectBytes(field func(key []byte) error) error {
	if err := s.Expect('{'); err != nil {
		return err
	}
	if s.depth++; s.depth > MaxDepth {
		return s.Errorf("nested too deeply")
	}
	defer func() { s.depth-- }()
	if s.Peek() == '}' {
		s.i++
		return nil
	}
	for {
		if s.Peek() != '"' {
			return s.Errorf("want a string key")
		}
		key, err := s.StrBytes()
		if err != nil {
			return err
		}
		if err := s.Expect(':'); err != nil {
			return err
		}
		if err := field(key); err != nil {
			return err
		}
		switch s.Peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.Errorf("want ',' or '}' after an object value")
		}
	}
}

// Array calls elem for each element; elem must consume it.
func (s *Scanner) Array(elem func(i int) error) error {
	if err := s.Expect('['); err != nil {
		return err
	}
	if s.depth++; s.depth > MaxDepth {
		return s.Errorf("nested too deeply")
	}
	defer func() { s.depth-- }()
	if s.Peek() == ']' {
		s.i++
		return nil
	}
	for n := 0; ; n++ {
		if err := elem(n); err != nil {
			return err
		}
		switch s.Peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.Errorf("want ',' or ']' after an array element")
		}
	}
}

// Skip consumes any value and returns its bytes.
func (s *Scanner) Skip() ([]byte, error) {
	c := s.Peek()
	start := s.i
	var err error
	switch {
	case c == '{':
		err = s.ObjectBytes(func([]byte) error { _, err := s.Skip(); return err })
	case c == '[':
		err = s.Array(func(int) error { _, err := s.Skip(); return err })
	case c == '"':
		err = s.SkipString()
	case c == 'n':
		err = s.Literal("null")
	case c == 't':
		err = s.Literal("true")
	case c == 'f':
		err = s.Literal("false")
	case c == '-' || c >= '0' && c <= '9':
		err = s.Number()
	case c == 0 && s.i >= len(s.b):
		err = s.Errorf("unexpected end of input")
	default:
		err = s.Errorf("unexpected %q", c)
	}
	return s.b[start:s.i], err
}

// Number consumes a number of RFC 8259's grammar.
func (s *Scanner) Number() error {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		s.i = i
		return s.Errorf("invalid number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			s.i = i
			return s.Errorf("invalid number: no digit after '.'")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			s.i = i
			return s.Errorf("invalid number: no digit in the exponent")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	s.i = i
	return nil
}

// SkipString consumes a string, checking its escapes.
func (s *Scanner) SkipString() error {
	s.i++ // '"'
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return nil
		case c == '\\':
			if err := s.escape(); err != nil {
				return err
			}
		case c < 0x20:
			return s.Errorf("control character in a string")
		default:
			s.i++
		}
	}
	return s.Errorf("unterminated string")
}

// escape checks the escape at s.i and moves past it.
func (s *Scanner) escape() error {
	if s.i+1 >= len(s.b) {
		return s.Errorf("unterminated string")
	}
	switch s.b[s.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.i += 2
	case 'u':
		if hex4(s.b[s.i+2:]) < 0 {
			return s.Errorf(`invalid \u escape`)
		}
		s.i += 6
	default:
		return s.Errorf("invalid escape \\%c", s.b[s.i+1])
	}
	return nil
}

// StringMap reads an object whose values are all strings into a map, as
// encoding/json.Unmarshal into a nil map[string]any does (the last of a
// repeated key wins). For any other shape, or a syntax error, it returns
// false having consumed nothing: the caller hands the value to
// encoding/json, which decodes it or reports the error as before.
func (s *Scanner) StringMap() (map[string]any, bool) {
	start := s.i
	fail := func() (map[string]any, bool) {
		s.i = start
		return nil, false
	}
	if s.Peek() != '{' {
		return fail()
	}
	s.i++
	m := make(map[string]any, 4)
	if s.Peek() == '}' {
		s.i++
		return m, true
	}
	for {
		if s.Peek() != '"' {
			return fail()
		}
		k, err := s.Str()
		if err != nil || s.Peek() != ':' {
			return fail()
		}
		s.i++
		if s.Peek() != '"' {
			return fail()
		}
		v, err := s.Str()
		if err != nil {
			return fail()
		}
		m[k] = v
		switch s.Peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return m, true
		default:
			return fail()
		}
	}
}

// Str consumes a string and returns it decoded as encoding/json decodes it.
func (s *Scanner) Str() (string, error) {
	b, err := s.StrBytes()
	return string(b), err
}

// StrBytes is Str without the string: a string of printable ASCII without
// escapes is returned as a slice of the input (valid until the input
// changes), any other decoded into a new slice.
func (s *Scanner) StrBytes() ([]byte, error) {
	if s.Peek() != '"' {
		return nil, s.Errorf("want a string")
	}
	start := s.i + 1
	// Fast path: printable ASCII without escapes.
	for j := start; j < len(s.b); j++ {
		c := s.b[j]
		if c == '"' {
			s.i = j + 1
			return s.b[start:j], nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
	}
	if err := s.SkipString(); err != nil {
		return nil, err
	}
	return unquote(s.b[start : s.i-1]), nil
}

// unquote decodes the body of a string already checked by SkipString.
func unquote(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == '\\':
			switch b[i+1] {
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r := rune(hex4(b[i+2:]))
				i += 6
				if utf16.IsSurrogate(r) {
					if len(b)-i >= 6 && b[i] == '\\' && b[i+1] == 'u' {
						if r2 := rune(hex4(b[i+2:])); r2 >= 0 {
							if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
								out = utf8.AppendRune(out, d)
								i += 6
								continue
							}
						}
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
				continue
			default: // '"', '\\', '/'
				out = append(out, b[i+1])
			}
			i += 2
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, utf8.RuneError)
			} else {
				out = append(out, b[i:i+size]...)
			}
			i += size
		}
	}
	return out
}

// hex4 reads four hex digits (-1 if b does not start with them).
func hex4(b []byte) int {
	if len(b) < 4 {
		return -1
	}
	n := 0
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		n = n<<4 | int(c)
	}
	return n
}
