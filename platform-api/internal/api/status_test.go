package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/dsplab/dsplab/platform-api/internal/docker"
)

// A fake of the runtime's image states; the states themselves come from
// real pulls in the docker and app packages' tests.
type fakeImages struct{ ping error }

func (f fakeImages) ImageStates() map[string]string {
	return map[string]string{"grafana/k6:1.8.1": "pulling 34% (2/5 layers, 12.3 of 36.1 MB)", "ghcr.io/alexei-led/pumba:1.1.7": "present"}
}
func (f fakeImages) Ping(context.Context) error { return f.ping }

func TestStatusReportsTheEngineAndEachJobImage(t *testing.T) {
	for _, tc := range []struct {
		ping   error
		docker string
	}{{nil, "ok"}, {errors.New("Cannot connect to the Docker daemon"), "Cannot connect to the Docker daemon"}} {
		h := NewRouter(Deps{Targets: fakeTargets{}, Images: fakeImages{ping: tc.ping}, MetricsHandler: http.NotFoundHandler(),
			TracerProvider: noop.NewTracerProvider(), Logger: slog.New(slog.DiscardHandler)})
		w := do(h, "GET", "/api/status", "")
		require.Equal(t, http.StatusOK, w.Code)
		require.JSONEq(t, `{"project":"dsplab","docker":"`+tc.docker+`","images":{"grafana/k6:1.8.1":"pulling 34% (2/5 layers, 12.3 of 36.1 MB)","ghcr.io/alexei-led/pumba:1.1.7":"present"}}`, w.Body.String())
	}
}

func TestAnUnavailableImageIs503NamingTheImageAndTheCause(t *testing.T) {
	failed := &docker.ImageError{Image: "grafana/k6:1.8.1", Err: errors.New("pull: connection refused")}
	w := do(router(&fakeFaults{err: fmt.Errorf("apply delay to x: %w", failed)}, ""), "POST", "/api/faults", `{"type":"pause","target":"a","durationSeconds":5}`)
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.JSONEq(t, `{"error":"image grafana/k6:1.8.1 is not available: pull: connection refused"}`, w.Body.String(), "the image error alone, without the wrapping")
	require.Empty(t, w.Header().Get("Retry-After"))

	pulling := &docker.ImageError{Image: "grafana/k6:1.8.1", Pulling: true, Err: errors.New("still pulling after 5m0s (pulling 80%)")}
	w = do(router(&fakeFaults{err: pulling}, ""), "POST", "/api/faults", `{"type":"pause","target":"a","durationSeconds":5}`)
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "30", w.Header().Get("Retry-After"), "a pull still going on: try again later")
}
