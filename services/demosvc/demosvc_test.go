package demosvc

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/dsplab/dsplab/internal/telemetry"
)

// lokiStandIn records pushes, decoded with Loki's own types. The real
// distributor receiving these logs is covered in test/integration/.
type lokiStandIn struct {
	mu      sync.Mutex
	lines   []string
	tenants []string
	answer  func(n int) (int, string) // status and Retry-After for push n
	pushes  int
}

func (l *lokiStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pushes++
	if l.answer != nil {
		if code, ra := l.answer(l.pushes); code != 204 {
			w.Header().Set("Retry-After", ra)
			w.WriteHeader(code)
			return
		}
	}
	body, _ := io.ReadAll(r.Body)
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		w.WriteHeader(400)
		return
	}
	var req push.PushRequest
	if err := req.Unmarshal(raw); err != nil {
		w.WriteHeader(400)
		return
	}
	for _, s := range req.Streams {
		for _, e := range s.Entries {
			l.lines = append(l.lines, s.Labels+" "+e.Line)
		}
	}
	l.tenants = append(l.tenants, r.Header.Get("X-Scope-OrgID"))
	w.WriteHeader(204)
}

func (l *lokiStandIn) got() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func providers(spans *tracetest.SpanRecorder) *telemetry.Providers {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return &telemetry.Providers{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)),
		MeterProvider: sdkmetric.NewMeterProvider(), MetricsHandler: http.NotFoundHandler()}
}

func start(t *testing.T, cfg Config, tel *telemetry.Providers) *App {
	a, err := New(cfg, "127.0.0.1:0", tel, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

func TestOneTraceSpansServiceAAndServiceB(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tel := providers(spans)
	b := start(t, Config{Name: "service-b", Route: "/api/message-b"}, tel)
	a := start(t, Config{Name: "service-a", Route: "/api/message-a", Downstream: "http://" + b.Addr()}, tel)

	resp, err := http.Post("http://"+a.Addr()+"/api/message-a", "application/json", strings.NewReader(`{"message":"hi"}`))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, string(body))
	require.Contains(t, string(body), `"service":"service-b"`)

	require.Eventually(t, func() bool { return len(spans.Ended()) >= 3 }, 5*time.Second, 20*time.Millisecond)
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans.Ended() {
		byName[s.Name()] = s
	}
	serverA, serverB := byName["POST /api/message-a"], byName["POST /api/message-b"]
	require.NotNil(t, serverA, "spans: %v", byName)
	require.NotNil(t, serverB, "spans: %v", byName)
	require.Equal(t, serverA.SpanContext().TraceID(), serverB.SpanContext().TraceID(), "one trace across both services")
	require.Equal(t, trace.SpanKindServer, serverB.SpanKind())
	require.NotEqual(t, serverA.SpanContext().SpanID(), serverB.Parent().SpanID(), "b's parent is a's client span, not a's server span")
	// The client span itself is ended through the same provider (so
	// exported): without it Tempo would show b's server span under a
	// "<root span not yet received>" gap and structural TraceQL
	// ({ .service.name = "service-a" } >> { ... }) would find nothing.
	var client sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.SpanContext().SpanID() == serverB.Parent().SpanID() {
			client = s
		}
	}
	require.NotNil(t, client, "service-a's client span (b's parent) is recorded: %v", byName)
	require.Equal(t, trace.SpanKindClient, client.SpanKind())
	require.Equal(t, serverA.SpanContext().SpanID(), client.Parent().SpanID(), "a's client span is a child of a's server span")
}

func TestTheErrorRouteAnswersTheStatusAskedFor(t *testing.T) {
	a := start(t, Config{Name: "service-a", Route: "/api/message-a"}, providers(tracetest.NewSpanRecorder()))
	for q, want := range map[string]int{"503": 503, "418": 418, "200": 200, "600": 400, "x": 400, "": 400} {
		resp, err := http.Post("http://"+a.Addr()+"/api/error?statusCode="+q, "", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, q)
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	}
}

func TestRequestLogsAreShippedAndA429IsRetriedAfterRetryAfter(t *testing.T) {
	loki := &lokiStandIn{answer: func(n int) (int, string) {
		if n == 1 {
			return 429, "1"
		}
		return 204, ""
	}}
	srv := httptest.NewServer(loki)
	defer srv.Close()
	a := start(t, Config{Name: "service-a", Route: "/api/message-a", LokiURL: srv.URL, Tenant: "demo"}, providers(tracetest.NewSpanRecorder()))
	sent := time.Now()
	for i := 0; i < 5; i++ {
		resp, err := http.Post("http://"+a.Addr()+"/api/message-a", "", nil)
		require.NoError(t, err)
		resp.Body.Close()
	}
	resp, _ := http.Post("http://"+a.Addr()+"/api/error?statusCode=500", "", nil)
	resp.Body.Close()
	require.Eventually(t, func() bool { return len(loki.got()) == 6 }, 10*time.Second, 50*time.Millisecond, "no line lost: %v", loki.got())
	require.GreaterOrEqual(t, time.Since(sent), time.Second, "the 429's Retry-After was honoured")
	lines := strings.Join(loki.got(), "\n")
	require.Contains(t, lines, `{app="dsplab-demo",service="service-a",level="info"} method=POST path=/api/message-a status=200`)
	require.Contains(t, lines, `level="error"} method=POST path=/api/error status=500`)
	require.Regexp(t, `trace_id=[0-9a-f]{32}`, lines)
	require.Equal(t, "demo", loki.tenants[0])
}
