package annotate

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/platform-api/internal/faults"
)

// The server is a stand-in for Grafana's annotations API (POST
// /api/annotations, PATCH /api/annotations/{id}); Grafana itself cannot
// run here.
func TestAFaultWindowBecomesARegionAnnotation(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	var bodies []map[string]any
	grafana := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		require.Equal(t, "admin:secret", user+":"+pass)
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		json.Unmarshal(b, &m)
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.Path)
		bodies = append(bodies, m)
		mu.Unlock()
		io.WriteString(w, `{"id":42,"message":"Annotation added"}`)
	}))
	defer grafana.Close()
	g := New(Options{URL: grafana.URL, User: "admin", Password: "secret"}, slog.New(slog.DiscardHandler))
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	planned, ended := start.Add(15*time.Second), start.Add(9*time.Second)
	f := faults.Fault{ID: "f-1", Type: "kill", Target: "analyzer-2", StartedAt: start, EndsAt: &planned, Command: "docker kill analyzer-2"}
	g.FaultStarted(f)
	f.State, f.EndedAt, f.EndReason = faults.StateReverted, &ended, "stopped"
	g.FaultEnded(f)
	g.Wait()
	require.Equal(t, []string{"POST /api/annotations", "PATCH /api/annotations/42"}, calls)
	require.EqualValues(t, start.UnixMilli(), bodies[0]["time"])
	require.Equal(t, []any{"dsplab", "fault", "kill", "analyzer-2"}, bodies[0]["tags"])
	require.EqualValues(t, ended.UnixMilli(), bodies[1]["timeEnd"], "the region ends when the fault really ended")
}

func TestAGrafanaOutageIsOnlyLogged(t *testing.T) {
	g := New(Options{URL: "http://127.0.0.1:1", User: "admin", Password: "admin"}, slog.New(slog.DiscardHandler))
	now := time.Now()
	done := make(chan struct{})
	go func() {
		g.FaultStarted(faults.Fault{ID: "f-2", StartedAt: now, EndsAt: &now})
		close(done)
	}()
	select {
	case <-done: // returns at once: the call is asynchronous
	case <-time.After(time.Second):
		t.Fatal("FaultStarted blocked on Grafana")
	}
	g.Wait()
}

// A region's end waits for its start's answer, however long Grafana takes
// within its timeout: it used to poll for the annotation's id for 2 s and
// drop the end after that. Wait returns once both calls are done.
func TestARegionsEndWaitsForItsSlowStart(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	grafana := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			time.Sleep(2500 * time.Millisecond) // a slow Grafana, under the 3 s call timeout
		}
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.Path)
		mu.Unlock()
		io.WriteString(w, `{"id":7}`)
	}))
	defer grafana.Close()
	g := New(Options{URL: grafana.URL, User: "admin", Password: "admin"}, slog.New(slog.DiscardHandler))
	start := time.Now()
	ends := start.Add(time.Minute)
	f := faults.Fault{ID: "f-1", Type: "pause", Target: "analyzer-1", StartedAt: start, EndsAt: &ends}
	g.FaultStarted(f)
	f.EndedAt = &start
	g.FaultEnded(f) // at once: the POST is in flight
	g.Wait()
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"POST /api/annotations", "PATCH /api/annotations/7"}, calls)
}
