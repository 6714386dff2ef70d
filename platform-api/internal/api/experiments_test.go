package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/dsplab/dsplab/platform-api/internal/experiments"
	"github.com/dsplab/dsplab/platform-api/internal/faults"
)

type fakeExperiments struct{ started []experiments.Definition }

func (f *fakeExperiments) Presets() []experiments.Definition {
	return []experiments.Definition{{Name: "baseline"}}
}
func (f *fakeExperiments) Preset(name string) (experiments.Definition, error) {
	if name != "baseline" {
		return experiments.Definition{}, fmt.Errorf("%w: no preset %q", faults.ErrNotFound, name)
	}
	return experiments.Definition{Name: "baseline", RecoverySeconds: 5}, nil
}
func (f *fakeExperiments) Start(d experiments.Definition) (experiments.Experiment, error) {
	if err := d.Validate(600); err != nil {
		return experiments.Experiment{}, err
	}
	f.started = append(f.started, d)
	return experiments.Experiment{ID: "x-1", Name: d.Name, State: experiments.StateRunning, StartedAt: time.Now()}, nil
}
func (f *fakeExperiments) Stop(id string) (experiments.Experiment, error) { return f.Get(id) }
func (f *fakeExperiments) Get(id string) (experiments.Experiment, error) {
	if id != "x-1" {
		return experiments.Experiment{}, fmt.Errorf("%w: experiment %s", faults.ErrNotFound, id)
	}
	return experiments.Experiment{ID: "x-1", Name: "baseline", State: experiments.Passed}, nil
}
func (f *fakeExperiments) List() []experiments.Experiment { return nil }

func TestExperimentRoutes(t *testing.T) {
	fe := &fakeExperiments{}
	h := NewRouter(Deps{Targets: fakeTargets{}, Faults: &fakeFaults{}, Experiments: fe, MetricsHandler: http.NotFoundHandler(),
		TracerProvider: noop.NewTracerProvider(), Logger: slog.New(slog.DiscardHandler)})
	require.Contains(t, do(h, "GET", "/api/experiments/presets", "").Body.String(), `"name":"baseline"`)

	w := do(h, "POST", "/api/experiments", `{"preset":"baseline"}`)
	require.Equal(t, http.StatusAccepted, w.Code, w.Body.String())
	require.Equal(t, "/api/experiments/x-1", w.Header().Get("Location"))
	require.Equal(t, http.StatusAccepted, do(h, "POST", "/api/experiments/presets/baseline/run", "").Code)
	require.Equal(t, http.StatusNotFound, do(h, "POST", "/api/experiments/presets/nope/run", "").Code)
	require.Equal(t, http.StatusNotFound, do(h, "POST", "/api/experiments", `{"preset":"nope"}`).Code)
	require.Equal(t, http.StatusBadRequest, do(h, "POST", "/api/experiments", `{}`).Code)
	require.Equal(t, http.StatusBadRequest, do(h, "POST", "/api/experiments", `{"preset":"baseline","definition":{"name":"x"}}`).Code)

	w = do(h, "POST", "/api/experiments", `{"definition":{"name":"mine","checks":[{"query":"up","comparator":"~","phase":"after"}]}}`)
	require.Equal(t, http.StatusBadRequest, w.Code)
	require.Contains(t, problems(t, w), "checks[0].comparator")

	w = do(h, "GET", "/api/experiments/x-1/report.md", "")
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, "text/markdown; charset=utf-8", w.Header().Get("Content-Type"))
	require.Contains(t, w.Body.String(), "# Experiment baseline — PASSED")
	require.Equal(t, http.StatusOK, do(h, "GET", "/api/experiments/x-1/report", "").Code)
	require.Equal(t, http.StatusNotFound, do(h, "GET", "/api/experiments/nope", "").Code)
}

// historyExperiments is a history of runs for the list, rerun, report and
// compare routes.
type historyExperiments struct {
	fakeExperiments
	runs []experiments.Experiment // newest first
}

func (f *historyExperiments) List() []experiments.Experiment { return f.runs }
func (f *historyExperiments) Get(id string) (experiments.Experiment, error) {
	for _, e := range f.runs {
		if e.ID == id {
			return e, nil
		}
	}
	return experiments.Experiment{}, fmt.Errorf("%w: experiment %s", faults.ErrNotFound, id)
}

func TestTheExperimentHistoryPagesFiltersRerunsAndCompares(t *testing.T) {
	fe := &historyExperiments{}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i := range 7 {
		name, state := "analyzer-crash", experiments.Passed
		if i%3 == 0 {
			name, state = "baseline", experiments.Failed
		}
		end := t0.Add(-time.Duration(i)*time.Hour + time.Minute)
		fe.runs = append(fe.runs, experiments.Experiment{ID: fmt.Sprintf("x-%d", i), Name: name, State: state, StartedAt: t0.Add(-time.Duration(i) * time.Hour), EndedAt: &end,
			Definition: experiments.Definition{Name: name, RecoverySeconds: float64(i)}, Charts: &experiments.Charts{}})
	}
	h := NewRouter(Deps{Targets: fakeTargets{}, Faults: &fakeFaults{}, Experiments: fe, MetricsHandler: http.NotFoundHandler(),
		TracerProvider: noop.NewTracerProvider(), Logger: slog.New(slog.DiscardHandler), ReportLinks: experiments.ReportLinks{GrafanaURL: "http://localhost:3000"}})
	page := func(query string) ExperimentsResponse {
		w := do(h, "GET", "/api/experiments"+query, "")
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		var out ExperimentsResponse
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &out))
		return out
	}
	// Pages of 2 walk the whole history, newest first, without charts.
	var ids []string
	next := ""
	for range 10 {
		p := page("?limit=2&after=" + next)
		for _, e := range p.Experiments {
			ids = append(ids, e.ID)
			require.Nil(t, e.Charts)
		}
		if next = p.Next; next == "" {
			break
		}
	}
	require.Equal(t, []string{"x-0", "x-1", "x-2", "x-3", "x-4", "x-5", "x-6"}, ids)
	p := page("?preset=baseline")
	require.Len(t, p.Experiments, 3)
	require.Empty(t, p.Next)
	p = page("?state=passed&preset=analyzer-crash&limit=3")
	require.Len(t, p.Experiments, 3)
	require.NotEmpty(t, p.Next)
	require.Len(t, page("?state=passed&preset=analyzer-crash&limit=3&after="+p.Next).Experiments, 1)
	w := do(h, "GET", "/api/experiments?limit=0&state=green&after=zz", "")
	require.Equal(t, http.StatusBadRequest, w.Code)
	require.Len(t, problems(t, w), 3)
	require.Contains(t, problems(t, w), "after")

	// A rerun starts the same definition.
	w = do(h, "POST", "/api/experiments/x-4/rerun", "")
	require.Equal(t, http.StatusAccepted, w.Code, w.Body.String())
	require.Equal(t, fe.runs[4].Definition.Name, fe.started[0].Name)
	require.Equal(t, float64(4), fe.started[0].RecoverySeconds)
	require.Equal(t, http.StatusNotFound, do(h, "POST", "/api/experiments/x-99/rerun", "").Code)
	require.Equal(t, http.StatusUnsupportedMediaType, do(h, "POST", "/api/experiments/x-4/rerun", "", "Content-Type", "text/plain").Code)

	// The HTML report and the comparison.
	w = do(h, "GET", "/api/experiments/x-1/report.html", "")
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, "text/html; charset=utf-8", w.Header().Get("Content-Type"))
	require.Contains(t, w.Header().Get("Content-Security-Policy"), "default-src 'none'")
	require.Contains(t, w.Body.String(), "<!DOCTYPE html>")
	require.Contains(t, w.Body.String(), "http://localhost:3000/d/dsp-resilience?from=")
	require.Equal(t, http.StatusNotFound, do(h, "GET", "/api/experiments/x-99/report.html", "").Code)
	// A guide links to its preset's newest run.
	w = do(h, "GET", "/api/experiments/presets/baseline/report.html", "")
	require.Equal(t, http.StatusFound, w.Code)
	require.Equal(t, "/api/experiments/x-0/report.html", w.Header().Get("Location"))
	require.Equal(t, http.StatusNotFound, do(h, "GET", "/api/experiments/presets/nope/report.html", "").Code)
	w = do(h, "GET", "/api/experiments/compare?a=x-0&b=x-1", "")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	var c experiments.Comparison
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &c))
	require.False(t, c.SamePreset)
	require.Contains(t, c.DefinitionDiffs, `name: "baseline" → "analyzer-crash"`)
	require.Contains(t, c.Deltas, "verdict: failed → passed")
	w = do(h, "GET", "/api/experiments/compare.html?a=x-0&b=x-1", "")
	require.Equal(t, http.StatusOK, w.Code)
	require.Contains(t, w.Body.String(), "Compare two runs")
	w = do(h, "GET", "/api/experiments/compare", "")
	require.Equal(t, http.StatusBadRequest, w.Code)
	require.Len(t, problems(t, w), 2)
	require.Equal(t, http.StatusNotFound, do(h, "GET", "/api/experiments/compare.html?a=x-0&b=x-99", "").Code)
}

func TestALedgerExpectationOrDeliveryModeThatIsNotOneIsA400NamingTheField(t *testing.T) {
	fe := &fakeExperiments{}
	h := NewRouter(Deps{Targets: fakeTargets{}, Faults: &fakeFaults{}, Experiments: fe, MetricsHandler: http.NotFoundHandler(),
		TracerProvider: noop.NewTracerProvider(), Logger: slog.New(slog.DiscardHandler)})
	w := do(h, "POST", "/api/experiments", `{"definition":{"name":"x","traffic":{"targetUrl":"http://distributor:8080","rps":10,"durationSeconds":10},
		"ledger":{"lost":"none","dupes":0,"duplicates":">0"},"delivery":{"analyzer-2":"exactly-once"}}}`)
	require.Equal(t, http.StatusBadRequest, w.Code, w.Body.String())
	ps := problems(t, w)
	require.Contains(t, ps["ledger.lost"], `like ">0"`)
	require.Contains(t, ps["ledger.dupes"], "not a count of the exact ledger")
	require.Contains(t, ps["delivery.analyzer-2"], "at-most-once, at-least-once, effectively-once")
	require.NotContains(t, ps, "ledger.duplicates")

	w = do(h, "POST", "/api/experiments", `{"definition":{"name":"x","traffic":{"targetUrl":"http://distributor:8080","rps":10,"durationSeconds":10},
		"ledger":{"lost":0,"duplicates":">0"},"delivery":{"analyzer-2":"at-most-once"}}}`)
	require.Equal(t, http.StatusAccepted, w.Code, w.Body.String())
	require.Equal(t, map[string]string{"analyzer-2": "at-most-once"}, fe.started[0].Delivery)
}
