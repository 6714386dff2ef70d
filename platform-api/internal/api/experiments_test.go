package api

import (
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
