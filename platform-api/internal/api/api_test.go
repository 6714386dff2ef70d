package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/dsplab/dsplab/platform-api/internal/docker"
	"github.com/dsplab/dsplab/platform-api/internal/faults"
)

// Hand-written fakes: the handlers' mapping of requests and errors is under
// test here; the fault manager itself is tested on the real Docker engine.

type fakeTargets struct{}

func (fakeTargets) Project() string { return "dsplab" }
func (fakeTargets) Targets(context.Context) ([]docker.Container, error) {
	return []docker.Container{{ID: "c1", Name: "dsplab-analyzer-1-1", Service: "analyzer-1", Role: "target", State: "running", IPs: map[string]string{"dsplab": "172.18.0.5"}}}, nil
}

type fakeFaults struct {
	got   []faults.Spec
	err   error
	fault faults.Fault
}

func (f *fakeFaults) Start(_ context.Context, s faults.Spec) (faults.Fault, error) {
	f.got = append(f.got, s)
	if err := s.Validate(faults.Limits{MaxDuration: time.Hour, MaxConcurrent: 5}, 2); err != nil {
		return faults.Fault{}, err
	}
	if f.err != nil {
		return faults.Fault{}, f.err
	}
	return faults.Fault{ID: "f-1", Type: s.Type, Target: s.Target, State: faults.StateActive}, nil
}
func (f *fakeFaults) StopFault(_ context.Context, id string) (faults.Fault, error) {
	if id != "f-1" {
		return faults.Fault{}, fmt.Errorf("%w: fault %s", faults.ErrNotFound, id)
	}
	return faults.Fault{ID: "f-1", State: faults.StateReverted}, nil
}
func (f *fakeFaults) Reset(context.Context) ([]faults.Fault, error) {
	return []faults.Fault{{ID: "f-1", State: faults.StateReverted}}, nil
}
func (f *fakeFaults) Get(id string) (faults.Fault, error) {
	if id != "f-1" {
		return faults.Fault{}, fmt.Errorf("%w: fault %s", faults.ErrNotFound, id)
	}
	return faults.Fault{ID: "f-1", State: faults.StateActive}, nil
}
func (f *fakeFaults) List() []faults.Fault {
	return []faults.Fault{{ID: "f-2", State: faults.StateReverted}, {ID: "f-1", State: faults.StateActive}}
}

func router(f *fakeFaults, token string) http.Handler {
	return NewRouter(Deps{Targets: fakeTargets{}, Faults: f, Token: token, MetricsHandler: http.NotFoundHandler(),
		TracerProvider: noop.NewTracerProvider(), Logger: slog.New(slog.DiscardHandler)})
}

// do sends a request as a well-behaved local client does: to
// localhost:5050 with Content-Type: application/json, unless header says
// otherwise ("Host" sets the request's Host; security_test.go sends the
// other kinds).
func do(h http.Handler, method, path, body string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Host = "localhost:5050"
	r.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			r.Host = header[i+1]
			continue
		}
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func problems(t *testing.T, w *httptest.ResponseRecorder) map[string]string {
	t.Helper()
	var e ErrorResponse
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e), w.Body.String())
	out := map[string]string{}
	for _, p := range e.Problems {
		out[p.Field] = p.Problem
	}
	return out
}

func TestStartFaultAnswers201WithLocationAndMapsTheBody(t *testing.T) {
	f := &fakeFaults{}
	w := do(router(f, ""), "POST", "/api/faults", `{"type":"kill","target":"analyzer-2","durationSeconds":15,"signal":"term"}`)
	require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
	require.Equal(t, "/api/faults/f-1", w.Header().Get("Location"))
	require.Equal(t, faults.Spec{Type: "kill", Target: "analyzer-2", Duration: 15 * time.Second, Signal: "term"}, f.got[0], "passed as sent; the manager normalises it to SIGTERM")
	var got FaultResponse
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got))
	require.Equal(t, "active", got.State)
}

func TestInvalidFaultRequestsListEveryProblem(t *testing.T) {
	h := router(&fakeFaults{}, "")
	tests := []struct {
		name, body string
		want       []string
	}{
		{"empty object", `{}`, []string{"type", "target", "durationSeconds"}},
		{"unknown type and too long", `{"type":"explode","target":"a","durationSeconds":99999}`, []string{"type", "durationSeconds"}},
		{"bad signal", `{"type":"kill","target":"a","durationSeconds":5,"signal":"SIGNOPE"}`, []string{"signal"}},
		{"cpu without cpus", `{"type":"cpu","target":"a","durationSeconds":5}`, []string{"cpus"}},
		{"memory below Docker's minimum", `{"type":"memory","target":"a","durationSeconds":5,"memoryMB":1}`, []string{"memoryMB"}},
		{"unknown field", `{"type":"pause","target":"a","durationSeconds":5,"duration":5}`, []string{"duration"}},
		{"wrong JSON type", `{"type":"pause","target":"a","durationSeconds":"5"}`, []string{"durationSeconds"}},
		{"not JSON", `{"type":`, []string{"body"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := do(h, "POST", "/api/faults", tt.body)
			require.Equal(t, http.StatusBadRequest, w.Code)
			ps := problems(t, w)
			for _, field := range tt.want {
				require.Contains(t, ps, field)
			}
			require.Len(t, ps, len(tt.want), "%v", ps)
		})
	}
}

func TestDomainErrorsMapToStatusCodes(t *testing.T) {
	for err, status := range map[error]int{
		fmt.Errorf("%w: x", faults.ErrNotFound):       404,
		fmt.Errorf("%w: x", faults.ErrConflict):       409,
		fmt.Errorf("%w: x", faults.ErrInfra):          403,
		fmt.Errorf("%w: x", faults.ErrTooMany):        429,
		fmt.Errorf("%w: x", faults.ErrNotImplemented): 501,
		fmt.Errorf("docker went away"):                500,
	} {
		w := do(router(&fakeFaults{err: err}, ""), "POST", "/api/faults", `{"type":"pause","target":"a","durationSeconds":5}`)
		require.Equal(t, status, w.Code, err.Error())
		require.Contains(t, w.Body.String(), `"error":`)
	}
}

func TestATokenProtectsMutatingRoutes(t *testing.T) {
	h := router(&fakeFaults{}, "s3cret")
	require.Equal(t, http.StatusOK, do(h, "GET", "/api/faults", "").Code)
	w := do(h, "POST", "/api/faults/reset", "")
	require.Equal(t, http.StatusUnauthorized, w.Code)
	require.Contains(t, w.Header().Get("WWW-Authenticate"), "Bearer")
	require.Equal(t, http.StatusUnauthorized, do(h, "POST", "/api/faults/reset", "", "Authorization", "Bearer wrong").Code)
	require.Equal(t, http.StatusOK, do(h, "POST", "/api/faults/reset", "", "Authorization", "Bearer s3cret").Code)
}

func TestListGetStopAndTargets(t *testing.T) {
	h := router(&fakeFaults{}, "")
	var list FaultsResponse
	require.NoError(t, json.Unmarshal(do(h, "GET", "/api/faults?state=active", "").Body.Bytes(), &list))
	require.Len(t, list.Faults, 1)
	require.Equal(t, http.StatusOK, do(h, "GET", "/api/faults/f-1", "").Code)
	require.Equal(t, http.StatusNotFound, do(h, "GET", "/api/faults/nope", "").Code)
	require.Equal(t, http.StatusOK, do(h, "POST", "/api/faults/f-1/stop", "").Code)
	require.Equal(t, http.StatusOK, do(h, "DELETE", "/api/faults/f-1", "").Code)
	require.Equal(t, http.StatusNotFound, do(h, "DELETE", "/api/faults/nope", "").Code)
	var ts TargetsResponse
	require.NoError(t, json.Unmarshal(do(h, "GET", "/api/targets", "").Body.Bytes(), &ts))
	require.Equal(t, "dsplab", ts.Project)
	require.Equal(t, "analyzer-1", ts.Targets[0].Service)
}

func TestSwaggerUIAndSpecAreServed(t *testing.T) {
	h := router(&fakeFaults{}, "")
	w := do(h, "GET", "/swagger/index.html", "")
	require.Equal(t, http.StatusOK, w.Code)
	require.Contains(t, w.Body.String(), "swagger-ui")
	w = do(h, "GET", "/swagger/doc.json", "")
	require.Equal(t, http.StatusOK, w.Code)
	var spec struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &spec))
	for _, p := range []string{"/api/faults", "/api/faults/{id}", "/api/faults/{id}/stop", "/api/faults/reset", "/api/targets", "/health"} {
		require.Contains(t, spec.Paths, p)
	}
	require.Contains(t, spec.Paths["/api/faults"], "post")
	require.Equal(t, http.StatusFound, do(h, "GET", "/swagger", "").Code)
	body, _ := io.ReadAll(do(h, "GET", "/nope", "").Body)
	require.Contains(t, string(body), `"error"`)
}
