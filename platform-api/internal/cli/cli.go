// Package cli is the dsplab command: a client of the platform API only
// (never Docker, Prometheus or the distributor directly), so what it can do
// is what the API allows, with the same guards: every write sends
// Content-Type: application/json, and the token of PLATFORM_API_TOKEN
// when set.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// Env is what a run of the command sees of the world.
type Env struct {
	Args           []string
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// TTY says stdout is a terminal: the progress line redraws itself
	// instead of printing a line per change.
	TTY     bool
	Version string
	// Open opens a file in a browser (default: xdg-open if present).
	Open func(path string) error
	// Poll is the interval of --watch (default 2 s; tests shorten it).
	Poll time.Duration
}

// Exit codes: usable in a CI job, like Chaos Toolkit's `chaos run`.
const (
	ExitOK     = 0 // done; an experiment passed
	ExitFailed = 1 // an experiment failed
	ExitError  = 2 // aborted, interrupted, refused, or the platform not reachable
)

// DefaultURL is where the platform API listens in the compose stack.
const DefaultURL = "http://localhost:5050"

const usage = `dsplab drives the DSP Lab platform API (DSPLAB_URL, default http://localhost:5050;
PLATFORM_API_TOKEN when the platform has one).

  dsplab targets                                  the stack's containers
  dsplab fault TYPE TARGET [--for 15s] [flags]    inject a fault (pause, stop, kill, restart, cpu,
                                                  memory, delay, loss, duplicate, corrupt, rate, partition)
  dsplab fault list | stop ID | reset             list, revert one, revert all
  dsplab traffic start [--rps 300] [--for 2m] [--target URL] [--script S] [--profile P]
  dsplab traffic list | stop ID
  dsplab presets                                  the shipped experiments
  dsplab run PRESET [--watch]                     run an experiment; with --watch follow it to
                                                  its verdict (exit 0 passed, 1 failed, 2 aborted/error)
  dsplab experiments [--preset P] [--state S] [--limit N]   past runs, newest first
  dsplab rerun ID [--watch]                       run an experiment's definition again
  dsplab report ID [-o FILE] [--open]             the HTML report (default dsplab-report-ID.html)
  dsplab compare A B [--html] [-o FILE] [--open]  compare two runs (a table; --html writes the page)
  dsplab version
`

// Main runs one command and returns its exit code.
func Main(ctx context.Context, env Env) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.Poll == 0 {
		env.Poll = 2 * time.Second
	}
	if env.Open == nil {
		env.Open = openInBrowser
	}
	base := strings.TrimSuffix(strings.TrimSpace(env.Getenv("DSPLAB_URL")), "/")
	if base == "" {
		base = DefaultURL
	}
	c := &client{base: base, token: strings.TrimSpace(env.Getenv("PLATFORM_API_TOKEN")), http: &http.Client{Timeout: 30 * time.Second}}
	r := &runner{env: env, c: c, out: env.Stdout}
	if len(env.Args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return ExitError
	}
	cmd, args := env.Args[0], env.Args[1:]
	commands := map[string]func(context.Context, []string) int{
		"targets": r.targets, "fault": r.fault, "faults": r.fault, "traffic": r.traffic, "presets": r.presets, "run": r.run,
		"experiments": r.experiments, "rerun": r.rerun, "report": r.report, "compare": r.compare,
	}
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage)
		return ExitOK
	case "version", "--version":
		fmt.Fprintln(env.Stdout, "dsplab", env.Version)
		return ExitOK
	}
	fn, ok := commands[cmd]
	if !ok {
		fmt.Fprintf(env.Stderr, "dsplab: unknown command %q\n\n%s", cmd, usage)
		return ExitError
	}
	return fn(ctx, args)
}

type runner struct {
	env Env
	c   *client
	out io.Writer
}

// fail prints the error and returns ExitError.
func (r *runner) fail(err error) int {
	fmt.Fprintln(r.env.Stderr, "dsplab:", err)
	return ExitError
}

func (r *runner) failf(format string, a ...any) int { return r.fail(fmt.Errorf(format, a...)) }

// flags parses args with flags before, between or after the positional
// arguments (`fault kill analyzer-2 --for 15s`), and checks their count.
func (r *runner) flags(fs *flag.FlagSet, args []string, minPos, maxPos int, what string) ([]string, bool) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			r.failf("%s: %v", fs.Name(), err)
			return nil, false
		}
		if fs.NArg() == 0 {
			break
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if len(pos) < minPos || len(pos) > maxPos {
		r.failf("usage: dsplab %s %s", fs.Name(), what)
		return nil, false
	}
	return pos, true
}

// client calls the platform API.
type client struct {
	base  string
	token string
	http  *http.Client
}

// apiError is an answer outside 2xx, with the platform's error shape.
type apiError struct {
	Method, Path string
	Status       int
	Message      string
	Problems     []struct{ Field, Problem string }
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), e.Message)
	for _, p := range e.Problems {
		msg += fmt.Sprintf("\n  %s: %s", p.Field, p.Problem)
	}
	if e.Status == http.StatusUnauthorized {
		msg += "\n  (set PLATFORM_API_TOKEN to the platform's token)"
	}
	return msg
}

// do sends a request; body nil is a bodiless write, still sent as JSON
// (the platform refuses a POST without Content-Type: application/json).
func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	raw, err := c.raw(ctx, method, path, body)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not what dsplab expects (%v); is %s the DSP Lab platform API?", method, path, err, c.base)
	}
	return nil
}

func (c *client) raw(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("DSPLAB_URL=%q: %w", c.base, err)
	}
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("the platform API at %s is not answering: %w\n  start the stack (make up, or make e2e-up), or point DSPLAB_URL at the platform", c.base, unwrapURL(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer from %s: %w", method, path, c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &apiError{Method: method, Path: path, Status: resp.StatusCode}
		var body struct {
			Error    string `json:"error"`
			Problems []struct{ Field, Problem string }
		}
		if json.Unmarshal(raw, &body) == nil && body.Error != "" {
			e.Message, e.Problems = body.Error, body.Problems
		} else {
			e.Message = strings.TrimSpace(string(raw[:min(len(raw), 300)]))
		}
		return nil, e
	}
	return raw, nil
}

// unwrapURL drops net/url's "Get \"...\":" prefix (the URL is said once).
func unwrapURL(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		return ue.Unwrap()
	}
	return err
}

// IsTerminal says whether f is a terminal (a character device).
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
