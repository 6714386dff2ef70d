package ingest

import (
	"errors"
	"fmt"
	"strings"
)

// Problem names one invalid field of a request.
type Problem struct {
	Field   string `json:"field"`
	Problem string `json:"problem"`
}

// ValidationError lists every problem found in one request.
type ValidationError struct {
	What     string // "packet", "loki push"
	Problems []Problem
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Field + ": " + p.Problem
	}
	return "invalid " + e.What + ": " + strings.Join(parts, "; ")
}

// ErrMalformed marks a body that cannot be decoded at all (bad JSON, bad
// protobuf, bad compression).
var ErrMalformed = errors.New("malformed body")

// ErrTooLarge marks a body whose decompressed size passes the limit.
var ErrTooLarge = errors.New("decompressed body too large")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// problems collects validation problems, capped so that a hostile body with
// a million bad messages cannot make the error itself huge.
type problems struct {
	list    []Problem
	dropped int
}

const maxProblems = 20

func (p *problems) add(field, problem string) {
	if len(p.list) >= maxProblems {
		p.dropped++
		return
	}
	p.list = append(p.list, Problem{Field: field, Problem: problem})
}

func (p *problems) err(what string) error {
	if len(p.list) == 0 {
		return nil
	}
	if p.dropped > 0 {
		p.list = append(p.list, Problem{Field: "...", Problem: fmt.Sprintf("%d more problems not listed", p.dropped)})
	}
	return &ValidationError{What: what, Problems: p.list}
}
