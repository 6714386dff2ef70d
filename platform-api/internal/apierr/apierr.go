// Package apierr holds the errors the platform's components share, each
// carrying its HTTP meaning once, as Toxiproxy's api_errors.go does
// (ErrToxicNotFound = newError("toxic not found", 404)): the fault,
// traffic and experiment managers and the alert receiver return them,
// wrapped with their own context, and the API answers Status(err) with
// one JSON shape.
package apierr

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Error is an error with the HTTP status it means.
type Error struct {
	msg    string
	status int
}

// New returns an error that means status.
func New(msg string, status int) *Error { return &Error{msg: msg, status: status} }

// Error is the message.
func (e *Error) Error() string { return e.msg }

// HTTPStatus is the status the error means.
func (e *Error) HTTPStatus() int { return e.status }

// The errors of the platform. Wrap them with context:
// fmt.Errorf("%w: fault %s", apierr.ErrNotFound, id).
var (
	ErrNotFound = New("not found", http.StatusNotFound)
	// ErrConflict: what is asked collides with what is going on (two
	// faults on one container, a fault still being reverted).
	ErrConflict = New("conflict", http.StatusConflict)
	// ErrInfra: a service labelled dsplab.role=infra, targeted without
	// allowInfra.
	ErrInfra = New("infrastructure service", http.StatusForbidden)
	// ErrTooMany: a cap on things running at once is reached.
	ErrTooMany        = New("too many", http.StatusTooManyRequests)
	ErrNotImplemented = New("not implemented", http.StatusNotImplemented)
	// ErrRevertFailed: the engine did not undo a fault; the platform keeps
	// trying in the background.
	ErrRevertFailed = New("revert failed", http.StatusBadGateway)
)

// Status is the HTTP status err means: that of the first error in its
// chain with an HTTPStatus method, else 500.
func Status(err error) int {
	var s interface{ HTTPStatus() int }
	if errors.As(err, &s) {
		return s.HTTPStatus()
	}
	return http.StatusInternalServerError
}

// Problem names one invalid field.
type Problem struct {
	Field   string `json:"field"`
	Problem string `json:"problem"`
}

// ValidationError lists every problem of a request (400).
type ValidationError struct {
	// What was asked: "fault", "traffic job", "experiment", ...
	What     string
	Problems []Problem
}

// Error lists every problem: "invalid fault: target: is required; ...".
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Field + ": " + p.Problem
	}
	return "invalid " + e.What + ": " + strings.Join(parts, "; ")
}

// HTTPStatus is 400.
func (e *ValidationError) HTTPStatus() int { return http.StatusBadRequest }

// Invalid is a ValidationError of one problem.
func Invalid(what, field, format string, a ...any) *ValidationError {
	return &ValidationError{What: what, Problems: []Problem{{Field: field, Problem: fmt.Sprintf(format, a...)}}}
}

// Problems collects the problems of a request, to report them all at once
// as k6's Validate() does: a validator records every problem it finds and
// returns Err at the end. The zero value is ready to use; In gives the
// problems of a part of the request (a list item, a nested object), whose
// fields are named under the part's.
type Problems struct {
	list []Problem
	// A part's problems are its whole request's, under prefix.
	whole  *Problems
	prefix string
}

// Add records a problem of field ("" for the part itself).
func (p *Problems) Add(field, format string, a ...any) {
	if p.whole != nil {
		p.whole.Add(join(p.prefix, field), format, a...)
		return
	}
	p.list = append(p.list, Problem{Field: field, Problem: fmt.Sprintf(format, a...)})
}

// Check records a problem of field unless ok.
func (p *Problems) Check(ok bool, field, format string, a ...any) {
	if !ok {
		p.Add(field, format, a...)
	}
}

// In returns the problems of the part of the request named by format and
// a ("faults[%d]", i): a problem of its field "atSeconds" is the
// request's "faults[2].atSeconds".
func (p *Problems) In(format string, a ...any) *Problems {
	return &Problems{whole: p, prefix: fmt.Sprintf(format, a...)}
}

// Include records the problems of err, the validation of a part checked
// on its own (a ValidationError: each of its problems; another error: one
// problem of the part itself). A nil err adds nothing.
func (p *Problems) Include(err error) {
	var ve *ValidationError
	switch {
	case err == nil:
	case errors.As(err, &ve):
		for _, q := range ve.Problems {
			p.Add(q.Field, "%s", q.Problem)
		}
	default:
		p.Add("", "%v", err)
	}
}

// Err is nil without problems, else a ValidationError of what.
func (p *Problems) Err(what string) error {
	if p.whole != nil {
		return p.whole.Err(what)
	}
	if len(p.list) == 0 {
		return nil
	}
	return &ValidationError{What: what, Problems: p.list}
}

// join names field under prefix: "faults[0]" and "atSeconds" are
// "faults[0].atSeconds"; an empty side is left out.
func join(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	}
	return prefix + "." + field
}

// Duration checks a duration field (faults, traffic, experiments alike):
// a whole number of seconds, at least 1, and at most max when max > 0.
// k6 and the job labels count whole seconds; below one there is nothing
// to run (a k6 DURATION of 0s), and a fraction would be cut off silently.
func (p *Problems) Duration(field string, d, max time.Duration) {
	switch {
	case d < time.Second || d%time.Second != 0:
		if max > 0 {
			p.Add(field, "must be a whole number of seconds from 1 to %d", int(max.Seconds()))
		} else {
			p.Add(field, "must be a whole number of seconds, at least 1")
		}
	case max > 0 && d > max:
		p.Add(field, "must be at most %d (the platform's cap)", int(max.Seconds()))
	}
}
