package distributor

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/httpguard"
)

// A stand-in of an analyzer's /admin/delivery behind the same guard chain
// as the admin routes of both services (Host, same origin, bearer token,
// JSON only), and of the distributor's /admin/analyzers pointing at it.
// The real analyzer's endpoint is tested in its own package.
func TestDeliveryModesAreReadAndSetAtTheURLTheDistributorRoutesTo(t *testing.T) {
	mode := "at-least-once"
	ar := chi.NewRouter()
	ar.Use(httpguard.NewHosts("ALLOWED_HOSTS", "", "analyzer-2").Check, httpguard.SameOrigin, httpguard.Bearer("an4lyzer", "analyzer", "ADMIN_TOKEN"), httpguard.JSONOnly())
	ar.Get("/admin/delivery", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"mode": mode})
	})
	ar.Put("/admin/delivery", func(w http.ResponseWriter, r *http.Request) {
		var b struct{ Mode string }
		json.NewDecoder(r.Body).Decode(&b)
		if b.Mode == "exactly-once" {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"mode must be one of at-most-once, at-least-once, effectively-once"}`))
			return
		}
		mode = b.Mode
		json.NewEncoder(w).Encode(map[string]string{"mode": mode})
	})
	analyzer := httptest.NewServer(ar)
	t.Cleanup(analyzer.Close)
	dr := chi.NewRouter()
	dr.Get("/admin/analyzers", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"analyzers": []map[string]any{{"id": "analyzer-1", "url": "http://127.0.0.1:1"}, {"id": "analyzer-2", "url": analyzer.URL}}})
	})
	dist := httptest.NewServer(dr)
	t.Cleanup(dist.Close)

	c := New(dist.URL, "").WithAnalyzerToken("an4lyzer")
	got, err := c.DeliveryMode(t.Context(), "analyzer-2")
	require.NoError(t, err)
	require.Equal(t, "at-least-once", got)
	require.NoError(t, c.SetDeliveryMode(t.Context(), "analyzer-2", "effectively-once"))
	require.Equal(t, "effectively-once", mode)

	var e *Error
	require.ErrorAs(t, c.SetDeliveryMode(t.Context(), "analyzer-2", "exactly-once"), &e)
	require.Equal(t, http.StatusBadRequest, e.Status)
	require.Contains(t, e.Error(), "analyzer analyzer-2 answered 400: mode must be one of")
	require.ErrorAs(t, New(dist.URL, "").SetDeliveryMode(t.Context(), "analyzer-2", "at-most-once"), &e)
	require.Equal(t, http.StatusUnauthorized, e.Status, "without the analyzers' token")
	_, err = c.DeliveryMode(t.Context(), "analyzer-9")
	require.ErrorContains(t, err, `routes to no analyzer "analyzer-9"`)
	_, err = c.DeliveryMode(t.Context(), "analyzer-1")
	require.ErrorContains(t, err, "analyzer analyzer-1 at http://127.0.0.1:1")
}

// The same for /admin/processing (the stand-in answers as the analyzer's
// handler does: {"delay_ms": N}, a 400 naming delay_ms out of range). The
// platform against the real analyzer: the e2e suite's delivery-semantics
// presets.
func TestProcessingDelaysAreReadAndSetAtTheURLTheDistributorRoutesTo(t *testing.T) {
	delay := 0.0
	ar := chi.NewRouter()
	ar.Use(httpguard.NewHosts("ALLOWED_HOSTS", "", "analyzer-2").Check, httpguard.SameOrigin, httpguard.Bearer("an4lyzer", "analyzer", "ADMIN_TOKEN"), httpguard.JSONOnly())
	ar.Get("/admin/processing", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]float64{"delay_ms": delay})
	})
	ar.Put("/admin/processing", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			DelayMs float64 `json:"delay_ms"`
		}
		json.NewDecoder(r.Body).Decode(&b)
		if b.DelayMs > 10000 {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"delay_ms: must be a number of milliseconds from 0 to 10000"}`))
			return
		}
		delay = b.DelayMs
		json.NewEncoder(w).Encode(map[string]float64{"delay_ms": delay})
	})
	analyzer := httptest.NewServer(ar)
	t.Cleanup(analyzer.Close)
	dr := chi.NewRouter()
	dr.Get("/admin/analyzers", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"analyzers": []map[string]any{{"id": "analyzer-2", "url": analyzer.URL}}})
	})
	dist := httptest.NewServer(dr)
	t.Cleanup(dist.Close)

	c := New(dist.URL, "").WithAnalyzerToken("an4lyzer")
	got, err := c.ProcessingDelay(t.Context(), "analyzer-2")
	require.NoError(t, err)
	require.Zero(t, got)
	require.NoError(t, c.SetProcessingDelay(t.Context(), "analyzer-2", 12.5))
	require.Equal(t, 12.5, delay)
	got, err = c.ProcessingDelay(t.Context(), "analyzer-2")
	require.NoError(t, err)
	require.Equal(t, 12.5, got)
	var e *Error
	require.ErrorAs(t, c.SetProcessingDelay(t.Context(), "analyzer-2", 20000), &e)
	require.Equal(t, http.StatusBadRequest, e.Status)
	require.Contains(t, e.Error(), "delay_ms")
	require.ErrorAs(t, New(dist.URL, "").SetProcessingDelay(t.Context(), "analyzer-2", 1), &e)
	require.Equal(t, http.StatusUnauthorized, e.Status, "without the analyzers' token")
}
