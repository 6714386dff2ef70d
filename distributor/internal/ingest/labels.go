package ingest

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseLabels parses a Loki/Prometheus label set in its text form,
// {name="value", other="v\"2"}, as sent in protobuf pushes. Names follow
// the Prometheus rule [a-zA-Z_][a-zA-Z0-9_]*; values are Go-quoted strings.
func ParseLabels(s string) (map[string]string, error) {
	s = strings.TrimSpace(s)
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil, fmt.Errorf("label set must be enclosed in braces")
	}
	body := s[1 : len(s)-1]
	out := make(map[string]string)
	for i := 0; ; {
		i = skipSpace(body, i)
		if i >= len(body) {
			return out, nil
		}
		start := i
		for i < len(body) && isNameChar(body[i], i == start) {
			i++
		}
		name := body[start:i]
		if name == "" {
			return nil, fmt.Errorf("expected a label name at offset %d", start+1)
		}
		i = skipSpace(body, i)
		if i >= len(body) || body[i] != '=' {
			return nil, fmt.Errorf("expected '=' after label %q", name)
		}
		i = skipSpace(body, i+1)
		end, err := quotedEnd(body, i)
		if err != nil {
			return nil, fmt.Errorf("label %q: %w", name, err)
		}
		v, err := strconv.Unquote(body[i:end])
		if err != nil {
			return nil, fmt.Errorf("label %q: bad quoted value: %w", name, err)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("label %q appears twice", name)
		}
		out[name] = v
		i = skipSpace(body, end)
		if i < len(body) {
			if body[i] != ',' {
				return nil, fmt.Errorf("expected ',' after label %q", name)
			}
			i++
		}
	}
}

// quotedEnd returns the index just past the double-quoted string at s[i].
func quotedEnd(s string, i int) (int, error) {
	if i >= len(s) || s[i] != '"' {
		return 0, fmt.Errorf("value must be a double-quoted string")
	}
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated quoted value")
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
		i++
	}
	return i
}

func isNameChar(c byte, first bool) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9')
}
