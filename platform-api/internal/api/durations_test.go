package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
	"github.com/dsplab/dsplab/platform-api/internal/experiments"
	"github.com/dsplab/dsplab/platform-api/internal/faults"
	"github.com/dsplab/dsplab/platform-api/internal/traffic"
)

// Every duration the platform takes is a whole number of seconds, at least
// one, and is refused otherwise naming the field: k6 was given DURATION=0s
// for 0.5, and 1.5 became 1s. The real validators run behind the router:
// the traffic and experiment managers themselves, and the fault manager's
// Spec.Validate (through fakeFaults).
func TestDurationsUnderASecondOrWithAFractionAreRefusedEverywhere(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	h := NewRouter(Deps{Targets: fakeTargets{}, Faults: &fakeFaults{},
		Traffic:        traffic.New(context.Background(), nil, traffic.Config{MaxRPS: 100, MaxDuration: time.Hour, MaxJobs: 3}, quiet),
		Experiments:    experiments.NewManager(experiments.Options{MaxFaultSeconds: 600, Logger: quiet}),
		MetricsHandler: http.NotFoundHandler(), TracerProvider: noop.NewTracerProvider(), Logger: quiet})
	for _, d := range []string{"0.5", "0", "1.5", "0.999"} {
		for _, tc := range []struct{ path, body, field string }{
			{"/api/faults", `{"type":"pause","target":"analyzer-1","durationSeconds":%s}`, "durationSeconds"},
			{"/api/traffic/start", `{"targetUrl":"http://distributor:8080","rps":10,"durationSeconds":%s}`, "durationSeconds"},
			{"/api/experiments", `{"definition":{"name":"x","traffic":{"targetUrl":"http://distributor:8080","rps":10,"durationSeconds":%s}}}`, "traffic.durationSeconds"},
			{"/api/experiments", `{"definition":{"name":"x","faults":[{"type":"pause","target":"analyzer-1","durationSeconds":%s}]}}`, "faults[0].durationSeconds"},
		} {
			w := do(h, "POST", tc.path, fmt.Sprintf(tc.body, d))
			require.Equal(t, http.StatusBadRequest, w.Code, "%s %s: %s", tc.path, d, w.Body.String())
			require.Contains(t, problems(t, w)[tc.field], "whole number of seconds", "%s %s: %s", tc.path, d, w.Body.String())
		}
	}
	w := do(h, "POST", "/api/faults", `{"type":"pause","target":"analyzer-1","durationSeconds":1}`)
	require.Equal(t, http.StatusCreated, w.Code, "one second is fine: %s", w.Body.String())
}

// A stop whose revert failed is not a 200: it says what happened, and that
// the fault is retried.
type failingRevert struct{ fakeFaults }

func (failingRevert) StopFault(context.Context, string) (faults.Fault, error) {
	return faults.Fault{ID: "f-1", State: faults.StateReverting, RevertAttempts: 1},
		fmt.Errorf("%w: pause on dsplab-analyzer-1-1, attempt 1: unpause: Cannot connect to the Docker daemon; the fault stays reverting and is retried (GET /api/faults/f-1)", apierr.ErrRevertFailed)
}

func TestAStopWhoseRevertFailedAnswers502WithTheFailure(t *testing.T) {
	h := NewRouter(Deps{Targets: fakeTargets{}, Faults: &failingRevert{}, MetricsHandler: http.NotFoundHandler(),
		TracerProvider: noop.NewTracerProvider(), Logger: slog.New(slog.DiscardHandler)})
	for _, r := range [][2]string{{"DELETE", "/api/faults/f-1"}, {"POST", "/api/faults/f-1/stop"}} {
		w := do(h, r[0], r[1], "")
		require.Equal(t, http.StatusBadGateway, w.Code, w.Body.String())
		require.Contains(t, w.Body.String(), `"error":"revert failed: pause on dsplab-analyzer-1-1, attempt 1: unpause: Cannot connect`)
		require.Contains(t, w.Body.String(), "retried")
	}
}
