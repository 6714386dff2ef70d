package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/httpguard"
	"github.com/dsplab/dsplab/platform-api/internal/experiments"
)

// The CLI is tested against a scripted platform: the real guards of the
// platform's API (package httpguard: Host, same origin, bearer token,
// JSON-only writes) in front of handlers that answer as the platform's do
// (the shapes of platform-api/internal/api). The routes themselves are
// tested in that package; the e2e suite runs `dsplab run baseline --watch`
// against the whole stack.
type platform struct {
	t        *testing.T
	mu       sync.Mutex
	requests []recorded
	// polls counts GET /api/experiments/x-1; states are answered in turn.
	polls  int
	states []experiments.State
}

type recorded struct {
	Method, Path, ContentType string
	Body                      map[string]any
}

func (p *platform) handler(token string) http.Handler {
	mux := http.NewServeMux()
	j := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /api/targets", func(w http.ResponseWriter, r *http.Request) {
		j(w, 200, map[string]any{"project": "dsplab", "targets": []map[string]any{{"service": "analyzer-2", "name": "dsplab-analyzer-2-1", "state": "running", "role": "analyzer"}}})
	})
	mux.HandleFunc("POST /api/faults", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		if body["target"] == "kafka" {
			j(w, 409, map[string]any{"error": "conflict: a fault on kafka is active"})
			return
		}
		j(w, 201, map[string]any{"id": "f-1", "type": body["type"], "target": body["target"], "state": "active", "command": "docker kill --signal KILL dsplab-analyzer-2-1"})
	})
	mux.HandleFunc("POST /api/traffic/start", func(w http.ResponseWriter, r *http.Request) {
		j(w, 202, map[string]any{"id": "t-1", "script": "ingest-packets", "profile": "constant", "rps": 300, "targetUrl": "http://distributor:8080", "state": "running"})
	})
	mux.HandleFunc("POST /api/experiments", func(w http.ResponseWriter, r *http.Request) {
		j(w, 202, experiments.Experiment{ID: "x-1", Name: "analyzer-crash", State: experiments.StateRunning, StartedAt: time.Now()})
	})
	mux.HandleFunc("GET /api/experiments/x-1", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		state := p.states[min(p.polls, len(p.states)-1)]
		p.polls++
		p.mu.Unlock()
		one := 1.0
		e := experiments.Experiment{ID: "x-1", Name: "analyzer-crash", State: state, StartedAt: time.Now().Add(-25 * time.Second),
			Definition: experiments.Definition{Name: "analyzer-crash", RecoverySeconds: 30, Faults: []experiments.ScheduledFault{{AtSeconds: 20, Type: "kill", Target: "analyzer-2", DurationSeconds: 15}}},
			Timeline:   []experiments.Event{{Kind: "traffic-started"}, {Kind: "fault-started"}},
			Checks: []experiments.CheckResult{{Check: experiments.Check{Name: "the crash is noticed", Phase: "during", Comparator: "<=", Threshold: 2, Mode: "eventually"},
				Passed: state == experiments.Passed, Samples: []experiments.Sample{{Value: &one, Holds: true}}}},
			Ledger: experiments.Ledger{Accepted: &one}}
		if state != experiments.StateRunning {
			e.Reason = "the reason"
		}
		j(w, 200, e)
	})
	mux.HandleFunc("GET /api/experiments/x-1/report.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!DOCTYPE html><title>x-1</title>")
	})
	mux.HandleFunc("GET /api/experiments/compare", func(w http.ResponseWriter, r *http.Request) {
		j(w, 200, experiments.Comparison{A: experiments.RunSummary{ID: r.FormValue("a"), State: "passed"}, B: experiments.RunSummary{ID: r.FormValue("b"), State: "failed"},
			SamePreset: true, DefinitionDiffs: []string{"faults[0].durationSeconds: 15 → 30"}, Deltas: []string{"verdict: passed → failed"}})
	})
	record := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec := recorded{Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type")}
		json.Unmarshal(b, &rec.Body)
		p.mu.Lock()
		p.requests = append(p.requests, rec)
		p.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		mux.ServeHTTP(w, r)
	})
	// As the platform: the same guards, in the same order.
	var h http.Handler = record
	h = httpguard.JSONOnly()(h)
	if token != "" {
		h = httpguard.Bearer(token, "dsplab", "PLATFORM_API_TOKEN")(h)
	}
	return httpguard.NewHosts("ALLOWED_HOSTS", "", "platform-api").Check(httpguard.SameOrigin(h))
}

func start(t *testing.T, token string, states ...experiments.State) (*platform, *httptest.Server) {
	p := &platform{t: t, states: states}
	srv := httptest.NewServer(p.handler(token))
	t.Cleanup(srv.Close)
	return p, srv
}

type result struct {
	code           int
	stdout, stderr string
	opened         []string
}

func dsplab(t *testing.T, url, token string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	var opened []string
	env := map[string]string{"DSPLAB_URL": url, "PLATFORM_API_TOKEN": token}
	code := Main(context.Background(), Env{Args: args, Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] },
		Poll: time.Millisecond, Open: func(p string) error { opened = append(opened, p); return nil }})
	return result{code, out.String(), errb.String(), opened}
}

func TestFaultAndTrafficCommandsSendWhatTheAPIExpects(t *testing.T) {
	p, srv := start(t, "")
	r := dsplab(t, srv.URL, "", "fault", "kill", "analyzer-2", "--for", "15s")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "fault f-1: kill on analyzer-2 for 15s")
	r = dsplab(t, srv.URL, "", "traffic", "start", "--rps", "300", "--for", "2m")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, []recorded{
		{Method: "POST", Path: "/api/faults", ContentType: "application/json", Body: map[string]any{"type": "kill", "target": "analyzer-2", "durationSeconds": 15.0}},
		{Method: "POST", Path: "/api/traffic/start", ContentType: "application/json", Body: map[string]any{"targetUrl": "http://distributor:8080", "rps": 300.0, "durationSeconds": 120.0}},
	}, p.requests)

	r = dsplab(t, srv.URL, "", "targets")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Regexp(t, `analyzer-2\s+dsplab-analyzer-2-1\s+running`, r.stdout)

	// Refused by the platform: its error, exit 2.
	r = dsplab(t, srv.URL, "", "fault", "pause", "kafka")
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "POST /api/faults: 409 Conflict: conflict: a fault on kafka is active")
	// Refused here: not whole seconds, a missing target.
	r = dsplab(t, srv.URL, "", "fault", "kill", "analyzer-2", "--for", "1500ms")
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "whole seconds")
	require.Equal(t, ExitError, dsplab(t, srv.URL, "", "fault", "kill").code)
	require.Equal(t, ExitError, dsplab(t, srv.URL, "", "nonsense").code)
	require.Len(t, p.requests, 4, "nothing sent for what dsplab refused itself")
}

func TestRunWatchFollowsTheExperimentAndExitsWithItsVerdict(t *testing.T) {
	for _, c := range []struct {
		state experiments.State
		code  int
	}{{experiments.Passed, ExitOK}, {experiments.Failed, ExitFailed}, {experiments.Aborted, ExitError}, {experiments.Interrupted, ExitError}} {
		t.Run(string(c.state), func(t *testing.T) {
			p, srv := start(t, "", experiments.StateRunning, experiments.StateRunning, c.state)
			r := dsplab(t, srv.URL, "", "run", "analyzer-crash", "--watch")
			require.Equal(t, c.code, r.code, r.stdout+r.stderr)
			require.Contains(t, r.stdout, "experiment x-1 (analyzer-crash) started")
			require.Regexp(t, `x-1 analyzer-crash\s+during\s+2\ds/65s\s+faults active 1\s+checks 1 passing 0 failing`, r.stdout)
			require.Contains(t, r.stdout, "x-1 analyzer-crash: "+strings.ToUpper(string(c.state))+" the reason")
			require.Regexp(t, `during\s+the crash is noticed\s+(passed|FAILED)\s+1\s+<= 2 \(eventually\)`, r.stdout)
			require.Contains(t, r.stdout, srv.URL+"/api/experiments/x-1/report.html")
			require.Equal(t, 3, p.polls)
			require.Equal(t, map[string]any{"preset": "analyzer-crash"}, p.requests[0].Body)
		})
	}
}

func TestReportAndCompareWriteThePagesAndPrintTheDeltas(t *testing.T) {
	_, srv := start(t, "")
	dir := t.TempDir()
	out := filepath.Join(dir, "r.html")
	r := dsplab(t, srv.URL, "", "report", "x-1", "-o", out, "--open")
	require.Equal(t, ExitOK, r.code, r.stderr)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, "<!DOCTYPE html><title>x-1</title>", string(b))
	require.Equal(t, []string{out}, r.opened)
	r = dsplab(t, srv.URL, "", "report", "x-404")
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "GET /api/experiments/x-404/report.html: 404")

	r = dsplab(t, srv.URL, "", "compare", "x-1", "x-2")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "a x-1 () vs b x-2 (): same preset")
	require.Contains(t, r.stdout, "faults[0].durationSeconds: 15 → 30")
	require.Contains(t, r.stdout, "verdict: passed → failed")
}

func TestAStoppedPlatformIsExit2AndTheMessageNamesTheURL(t *testing.T) {
	_, srv := start(t, "")
	url := srv.URL
	srv.Close()
	for _, args := range [][]string{{"targets"}, {"run", "baseline", "--watch"}, {"fault", "kill", "analyzer-2"}, {"report", "x-1"}} {
		r := dsplab(t, url, "", args...)
		require.Equal(t, ExitError, r.code, args)
		require.Contains(t, r.stderr, "the platform API at "+url+" is not answering", args)
		require.Contains(t, r.stderr, "connection refused")
	}
	// Without DSPLAB_URL the default is named.
	var errb bytes.Buffer
	Main(context.Background(), Env{Args: []string{"targets"}, Stdout: io.Discard, Stderr: &errb, Getenv: func(k string) string {
		if k == "DSPLAB_URL" {
			return "http://127.0.0.1:1"
		}
		return ""
	}})
	require.Contains(t, errb.String(), "http://127.0.0.1:1")
}

func TestTheTokenIsSentWhenSetAndItsAbsenceIsExplained(t *testing.T) {
	_, srv := start(t, "s3cret")
	r := dsplab(t, srv.URL, "", "fault", "kill", "analyzer-2")
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "401 Unauthorized")
	require.Contains(t, r.stderr, "set PLATFORM_API_TOKEN")
	r = dsplab(t, srv.URL, "s3cret", "fault", "kill", "analyzer-2")
	require.Equal(t, ExitOK, r.code, r.stderr)
}

func TestTheProgressLineSaysThePhaseAndWhatIsExpected(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)
	one := 1.0
	base := experiments.Experiment{ID: "x-1", Name: "baseline", StartedAt: t0,
		Definition: experiments.Definition{Traffic: &experiments.Traffic{DurationSeconds: 60}, RecoverySeconds: 60},
		Timeline:   []experiments.Event{{Kind: "traffic-started"}},
		Checks:     []experiments.CheckResult{{Check: experiments.Check{Phase: "before"}, Samples: []experiments.Sample{{Value: &one, Holds: true}}}}}
	line, key := progress(base, t0.Add(30*time.Second))
	require.Equal(t, "x-1 baseline  traffic   30s/120s  faults active 0  checks 1 passing 0 failing", line)
	require.Equal(t, "traffic  faults active 0  checks 1 passing 0 failing", key)
	// Without faults, the after checks' first sample is the recovery.
	base.Checks = append(base.Checks, experiments.CheckResult{Check: experiments.Check{Phase: "after"}, Samples: []experiments.Sample{{Value: &one}}})
	line, _ = progress(base, t0.Add(65*time.Second))
	require.Equal(t, "x-1 baseline  recovery  65s/120s  faults active 0  checks 1 passing 1 failing", line)
}
