package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMetricsFromTheMeterProviderAppearOnTheHandler(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	p, err := Setup(context.Background(), "svc", "v1")
	require.NoError(t, err)
	defer p.Shutdown(context.Background())
	c, err := p.MeterProvider.Meter("m").Int64Counter("demo_things")
	require.NoError(t, err)
	c.Add(context.Background(), 3)
	h, err := p.MeterProvider.Meter("m").Float64Histogram("demo_wait")
	require.NoError(t, err)
	h.Record(context.Background(), 0.2)

	w := httptest.NewRecorder()
	p.MetricsHandler.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(w.Body)
	require.Contains(t, string(body), "demo_things_total 3")
	require.Contains(t, string(body), "go_goroutines")
	require.Contains(t, string(body), "process_resident_memory_bytes")
	require.Contains(t, string(body), `service_name="svc"`, "target_info carries the resource")
}

func TestExportIsOffUnlessConfigured(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	require.False(t, exportConfigured("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
	require.True(t, exportConfigured("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

// The receiver is a stand-in for the OpenTelemetry Collector's OTLP/HTTP
// endpoint: it records which signal paths were posted.
func TestOTLPExportSendsTracesAndMetricsWhenAnEndpointIsSet(t *testing.T) {
	var mu sync.Mutex
	paths := map[string]int{}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		paths[r.URL.Path]++
		mu.Unlock()
	}))
	defer recv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	p, err := Setup(context.Background(), "svc", "v1")
	require.NoError(t, err)
	_, span := p.TracerProvider.Tracer("t").Start(context.Background(), "op")
	span.End()
	c, _ := p.MeterProvider.Meter("m").Int64Counter("demo_things")
	c.Add(context.Background(), 1)
	require.NoError(t, p.Shutdown(context.Background())) // flushes both
	mu.Lock()
	defer mu.Unlock()
	require.Positive(t, paths["/v1/traces"])
	require.Positive(t, paths["/v1/metrics"])
}

// The compose file passes OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
// (README, "Tracing under load"): Setup leaves the sampler to the SDK's
// reading of them. The default records every root span; a ratio of 0.1
// keeps about a tenth of the roots, and a child follows its parent's
// decision (parentbased_*: the analyzers follow the distributor through
// the Kafka headers), and always_off still gives a span context (logs keep
// their trace_id).
func TestTraceSamplerFromTheEnvironment(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	sampled := func(sampler, arg string) (roots int, childrenFollow bool, ids bool) {
		t.Setenv("OTEL_TRACES_SAMPLER", sampler)
		t.Setenv("OTEL_TRACES_SAMPLER_ARG", arg)
		p, err := Setup(context.Background(), "svc", "v1")
		require.NoError(t, err)
		defer p.Shutdown(context.Background())
		tr := p.TracerProvider.Tracer("t")
		childrenFollow, ids = true, true
		for range 2000 {
			ctx, root := tr.Start(context.Background(), "root")
			_, child := tr.Start(ctx, "child")
			if root.SpanContext().IsSampled() {
				roots++
			}
			childrenFollow = childrenFollow && child.SpanContext().IsSampled() == root.SpanContext().IsSampled()
			ids = ids && root.SpanContext().TraceID().IsValid()
			child.End()
			root.End()
		}
		return roots, childrenFollow, ids
	}
	n, follow, ids := sampled("parentbased_always_on", "1.0") // the compose default
	require.Equal(t, 2000, n)
	require.True(t, follow && ids)
	n, follow, ids = sampled("parentbased_traceidratio", "0.1")
	require.InDelta(t, 200, n, 80, "about a tenth of 2,000 roots")
	require.True(t, follow, "a child follows its parent's decision")
	require.True(t, ids)
	n, _, ids = sampled("always_off", "")
	require.Equal(t, 0, n)
	require.True(t, ids, "unsampled spans still carry a trace id for the logs")
}
