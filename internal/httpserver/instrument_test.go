package httpserver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// metricsRouter is a chi router like the distributor's: a POST route that
// reads its body, one that reads part of it, a status-only route and a
// route with a parameter, behind mw.
func metricsRouter(mw func(http.Handler) http.Handler) http.Handler {
	r := chi.NewRouter()
	r.Use(mw)
	r.Post("/ingest", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"status":"accepted"}`)
	})
	r.Post("/partial", func(w http.ResponseWriter, r *http.Request) {
		io.CopyN(io.Discard, r.Body, 3)
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})
	r.Get("/empty", func(w http.ResponseWriter, r *http.Request) {})
	r.Put("/admin/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	return r
}

// metricsRequests are requests with the hosts, methods and bodies whose
// attributes must come out the same.
func metricsRequests() []*http.Request {
	var reqs []*http.Request
	add := func(method, url, host, body string) {
		r := httptest.NewRequest(method, url, strings.NewReader(body))
		if body == "" {
			r = httptest.NewRequest(method, url, nil)
		}
		r.Host = host
		reqs = append(reqs, r)
	}
	for _, host := range []string{"127.0.0.1:8080", "distributor:8080", "localhost", "example.com:80", "[::1]:9000", "[::1]", "a:b:c", "h:99999", ""} {
		add(http.MethodPost, "/ingest", host, `{"messages":[]}`)
	}
	add(http.MethodPost, "/partial", "d:1", "0123456789")
	add(http.MethodGet, "/empty", "d:1", "")
	add(http.MethodPut, "/admin/a1", "d:1", "x")
	add("PROPFIND", "/ingest", "d:1", "")
	add(http.MethodGet, "/nowhere", "d:1", "")
	add(http.MethodGet, "/metrics", "d:1", "") // filtered out
	return reqs
}

// collect serves reqs twice on a router behind mw and returns what the
// reader holds, as comparable text.
func collect(t *testing.T, reader *sdkmetric.ManualReader, h http.Handler) []string {
	for range 2 {
		for _, r := range metricsRequests() {
			h.ServeHTTP(httptest.NewRecorder(), r)
		}
	}
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	var out []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			head := sm.Scope.Name + " " + sm.Scope.Version + " " + m.Name + " " + m.Unit + " " + m.Description
			switch d := m.Data.(type) {
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out = append(out, head+" "+p.Attributes.Encoded(attribute.DefaultEncoder())+" n="+itoa(p.Count)+" bounds="+floats(p.Bounds))
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					out = append(out, head+" "+p.Attributes.Encoded(attribute.DefaultEncoder())+" n="+itoa(p.Count)+" sum="+itoa(uint64(p.Sum))+" bounds="+floats(p.Bounds))
				}
			default:
				t.Fatalf("unexpected metric %s of %T", m.Name, m.Data)
			}
		}
	}
	sort.Strings(out)
	return out
}

// spansOf returns the ended spans as comparable text: name, kind, parent,
// status and attributes (sorted).
func spansOf(rec *tracetest.SpanRecorder) []string {
	var out []string
	for _, s := range rec.Ended() {
		attrs := attribute.NewSet(s.Attributes()...)
		out = append(out, fmt.Sprintf("%s %s parent=%s remote=%v status=%v/%q scope=%s@%s %s", s.Name(), s.SpanKind(), s.Parent().TraceID(),
			s.Parent().IsRemote(), s.Status().Code, s.Status().Description, s.InstrumentationScope().Name, s.InstrumentationScope().Version,
			attrs.Encoded(attribute.DefaultEncoder())))
	}
	sort.Strings(out)
	return out
}

// withParent gives most requests a traceparent header, and some a user
// agent, a forwarded address and another remote address.
func withParent(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "localhost" {
			r.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		}
		if strings.HasPrefix(r.Host, "distributor") {
			r.Header.Set("User-Agent", "wrk")
			r.Header.Set("X-Forwarded-For", "10.0.0.1, 10.0.0.2")
		}
		if r.Host == "d:1" {
			r.RemoteAddr = "[::1]:4444"
		}
		h.ServeHTTP(w, r)
	})
}

// TestInstrumentationMatchesOtelhttp holds Instrumentation to what
// otelhttp's middleware records for the same requests: the same metric
// instruments (scope, name, unit, description, buckets), attribute sets,
// counts and body sizes — what dashboards and alerts read — and the same
// spans (name, kind, parent, status, attributes).
func TestInstrumentationMatchesOtelhttp(t *testing.T) {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	filter := func(r *http.Request) bool { return r.URL.Path != "/metrics" }

	wantReader, wantSpans := sdkmetric.NewManualReader(), tracetest.NewSpanRecorder()
	wantMP := sdkmetric.NewMeterProvider(sdkmetric.WithReader(wantReader))
	wantTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(wantSpans))
	want := collect(t, wantReader, withParent(metricsRouter(otelhttp.NewMiddleware("x",
		otelhttp.WithMeterProvider(wantMP), otelhttp.WithTracerProvider(wantTP), otelhttp.WithFilter(filter)))))

	gotReader, gotSpans := sdkmetric.NewManualReader(), tracetest.NewSpanRecorder()
	gotMP := sdkmetric.NewMeterProvider(sdkmetric.WithReader(gotReader))
	gotTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(gotSpans))
	in, err := NewInstrumentation(gotTP, gotMP, filter)
	require.NoError(t, err)
	got := collect(t, gotReader, withParent(metricsRouter(in.Middleware)))

	require.NotEmpty(t, want)
	require.Equal(t, want, got)
	require.NotEmpty(t, spansOf(wantSpans))
	require.Equal(t, spansOf(wantSpans), spansOf(gotSpans))
}

// TestInstrumentationCacheIsBounded: hosts beyond the cache's bound are
// still measured, and the cache stops growing.
func TestInstrumentationCacheIsBounded(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	in, err := NewInstrumentation(nil, sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), nil)
	require.NoError(t, err)
	h := in.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for i := range maxCachedSets + 50 {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = "h" + itoa(uint64(i))
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	require.Len(t, in.sets, maxCachedSets)
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name == "http.server.request.duration" {
			require.Len(t, m.Data.(metricdata.Histogram[float64]).DataPoints, maxCachedSets+50)
		}
	}
}

// TestInstrumentationKeepsResponseController: a handler behind the
// middleware can still set read deadlines (the distributor's body read).
func TestInstrumentationKeepsResponseController(t *testing.T) {
	in, err := NewInstrumentation(nil, sdkmetric.NewMeterProvider(), nil)
	require.NoError(t, err)
	srv := httptest.NewServer(in.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).SetReadDeadline(time.Time{}); err != nil {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// itoa and floats print numbers for the comparisons.
func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func floats(f []float64) string { return fmt.Sprint(f) }

// BenchmarkHTTPMiddleware is the cost per request of the HTTP server
// instrumentation on an /ingest-like route, with recording spans and
// metrics: none, otelhttp, and Instrumentation (the distributor's).
func BenchmarkHTTPMiddleware(b *testing.B) {
	body := strings.Repeat("x", 800)
	run := func(b *testing.B, mw func(http.Handler) http.Handler) {
		b.ReportAllocs()
		h := metricsRouter(mw)
		w := httptest.NewRecorder()
		for b.Loop() {
			r := httptest.NewRequest(http.MethodPost, "/ingest", strings.NewReader(body))
			r.Host = "127.0.0.1:8080"
			h.ServeHTTP(w, r)
		}
	}
	mp := func() *sdkmetric.MeterProvider {
		return sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	}
	tp := func() *sdktrace.TracerProvider { return sdktrace.NewTracerProvider() } // recording, not exported
	b.Run("none", func(b *testing.B) { run(b, func(h http.Handler) http.Handler { return h }) })
	b.Run("otelhttp", func(b *testing.B) {
		run(b, otelhttp.NewMiddleware("x", otelhttp.WithMeterProvider(mp()), otelhttp.WithTracerProvider(tp())))
	})
	b.Run("Instrumentation", func(b *testing.B) {
		in, err := NewInstrumentation(tp(), mp(), nil)
		require.NoError(b, err)
		run(b, in.Middleware)
	})
}
