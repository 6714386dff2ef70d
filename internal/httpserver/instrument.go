package httpserver

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/semconv/v1.43.0/httpconv"
	"go.opentelemetry.io/otel/trace"
)

// Instrumentation is otelhttp's server middleware made cheaper for a hot
// path: the same server span (name, kind, parent from the propagated
// context, attributes, status) and the same metrics —
// http.server.request.duration, http.server.request.body.size and
// http.server.response.body.size, in otelhttp's instrumentation scope,
// with its buckets and attributes (method, scheme, server address and
// port, protocol, status code, route) — so traces, dashboards, alerts and
// experiments reading http_server_request_duration_seconds see what they
// saw. What differs is the cost: otelhttp builds and sorts a new metric
// attribute set for every request, and wraps the writer and the body in
// four allocations (together ~10% of the distributor's CPU at
// saturation); here a metric attribute set is built once per distinct
// combination and cached (at most maxCachedSets; the rest, from odd Host
// headers, are built per request as before), and one allocation wraps
// both. TestInstrumentationMatchesOtelhttp holds it to otelhttp's output.
type Instrumentation struct {
	tracer            trace.Tracer // nil: the global provider's, at each request (as otelhttp)
	prop              propagation.TextMapPropagator
	duration          metric.Float64Histogram
	reqSize, respSize metric.Int64Histogram
	filter            func(*http.Request) bool
	serverKind        trace.SpanStartOption
	mu                sync.RWMutex
	sets              map[setKey][]metric.RecordOption // one option: the set, in a slice built once
	names             map[[2]string]string             // method, route → span name (routes are the router's: few)
}

// maxCachedSets bounds the cache: the Host header is the client's.
const maxCachedSets = 256

// setKey is what varies between the attribute sets of one server.
type setKey struct {
	method, host, proto, version, route string
	port, status                        int
}

// NewInstrumentation creates the instruments on mp; spans go to tp (nil:
// the global provider). filter, when not nil, says which requests are
// traced and measured (otelhttp.WithFilter's meaning).
func NewInstrumentation(tp trace.TracerProvider, mp metric.MeterProvider, filter func(*http.Request) bool) (*Instrumentation, error) {
	m := mp.Meter(otelhttp.ScopeName, metric.WithInstrumentationVersion(otelhttp.Version))
	dur, err := httpconv.NewServerRequestDuration(m, metric.WithExplicitBucketBoundaries(
		0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)) // otelhttp's
	if err != nil {
		return nil, err
	}
	req, err := httpconv.NewServerRequestBodySize(m)
	if err != nil {
		return nil, err
	}
	resp, err := httpconv.NewServerResponseBodySize(m)
	if err != nil {
		return nil, err
	}
	in := &Instrumentation{prop: otel.GetTextMapPropagator(), duration: dur.Inst(), reqSize: req.Inst(), respSize: resp.Inst(),
		filter: filter, serverKind: trace.WithSpanKind(trace.SpanKindServer), sets: map[setKey][]metric.RecordOption{}, names: map[[2]string]string{}}
	if tp != nil {
		in.tracer = tp.Tracer(otelhttp.ScopeName, trace.WithInstrumentationVersion(otelhttp.Version))
	}
	return in, nil
}

// Middleware traces and measures every request next serves (but those
// filtered out).
func (in *Instrumentation) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if in.filter != nil && !in.filter(r) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		tracer := in.tracer
		if tracer == nil {
			tracer = otel.GetTracerProvider().Tracer(otelhttp.ScopeName, trace.WithInstrumentationVersion(otelhttp.Version))
		}
		ctx := in.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, in.spanName(r), in.serverKind, trace.WithAttributes(requestTraceAttrs(r)...))
		defer span.End()
		m := &measured{ResponseWriter: w, status: http.StatusOK}
		if r.Body != nil && r.Body != http.NoBody {
			m.counter.rc = r.Body
			r.Body = &m.counter
			// The server looks at r.Body's type after the handler.
			defer func() { r.Body = m.counter.rc }()
		}
		r = r.WithContext(ctx)
		next.ServeHTTP(m, r)
		in.finish(ctx, span, r, m, start)
	})
}

// finish names the span by its route, sets its answer's attributes and
// status, and records the metrics.
func (in *Instrumentation) finish(ctx context.Context, span trace.Span, r *http.Request, m *measured, start time.Time) {
	if r.Pattern != "" {
		span.SetName(in.spanName(r))
	}
	if m.status < 100 || m.status >= 600 {
		span.SetStatus(codes.Error, fmt.Sprintf("Invalid HTTP status code %d", m.status))
	} else if m.status >= 500 {
		span.SetStatus(codes.Error, "")
	}
	attrs := make([]attribute.KeyValue, 0, 3)
	if m.counter.n > 0 {
		attrs = append(attrs, attribute.Int("http.request.body.size", int(m.counter.n)))
	}
	if m.written > 0 {
		attrs = append(attrs, attribute.Int("http.response.body.size", int(m.written)))
	}
	if m.status > 0 {
		attrs = append(attrs, attribute.Int("http.response.status_code", m.status))
	}
	span.SetAttributes(attrs...)
	o := in.set(r, m.status)
	in.reqSize.Record(ctx, m.counter.n, o...)
	in.respSize.Record(ctx, m.written, o...)
	in.duration.Record(ctx, float64(time.Since(start))/float64(time.Second), o...)
}

// spanName is "METHOD /route", or the method alone before routing.
func (in *Instrumentation) spanName(r *http.Request) string {
	method := standardMethod(r.Method)
	if method == "_OTHER" {
		method = "HTTP"
	}
	route := routeOf(r.Pattern)
	if route == "" {
		return method
	}
	k := [2]string{method, route}
	in.mu.RLock()
	name, ok := in.names[k]
	in.mu.RUnlock()
	if !ok {
		name = method + " " + route
		in.mu.Lock()
		in.names[k] = name
		in.mu.Unlock()
	}
	return name
}

// requestTraceAttrs are the span's attributes known at its start.
func requestTraceAttrs(r *http.Request) []attribute.KeyValue {
	host, port := splitHostPort(r.Host)
	attrs := make([]attribute.KeyValue, 0, 12)
	method := standardMethod(r.Method)
	attrs = append(attrs, attribute.String("server.address", host), attribute.String("http.request.method", method), attribute.String("url.scheme", "http"))
	if port > 0 && port != 80 {
		attrs = append(attrs, attribute.Int("server.port", port))
	}
	if method == "_OTHER" || method != r.Method {
		if r.Method != "" {
			attrs = append(attrs, attribute.String("http.request.method_original", r.Method))
		}
	}
	peer, peerPort := splitHostPort(r.RemoteAddr)
	if peer != "" {
		attrs = append(attrs, attribute.String("network.peer.address", peer))
		if peerPort > 0 {
			attrs = append(attrs, attribute.Int("network.peer.port", peerPort))
		}
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, attribute.String("user_agent.original", ua))
	}
	client := r.Header.Get("X-Forwarded-For")
	if i := strings.IndexByte(client, ','); i >= 0 {
		client = client[:i]
	}
	if client == "" {
		client = peer
	}
	if client != "" {
		attrs = append(attrs, attribute.String("client.address", client))
	}
	if r.URL != nil && r.URL.Path != "" {
		attrs = append(attrs, attribute.String("url.path", r.URL.Path))
	}
	proto, version := protocol(r.Proto)
	if proto != "" && proto != "http" {
		attrs = append(attrs, attribute.String("network.protocol.name", proto))
	}
	if version != "" {
		attrs = append(attrs, attribute.String("network.protocol.version", version))
	}
	if route := routeOf(r.Pattern); route != "" {
		attrs = append(attrs, attribute.String("http.route", route))
	}
	return attrs
}

// protocol splits "HTTP/1.1" into "http" and "1.1".
func protocol(p string) (name, version string) {
	name, version, _ = strings.Cut(p, "/")
	if name == "HTTP" {
		return "http", version
	}
	return strings.ToLower(name), version
}

// set returns the attribute set of r answered with status, cached.
func (in *Instrumentation) set(r *http.Request, status int) []metric.RecordOption {
	host, port := splitHostPort(r.Host)
	proto, version := protocol(r.Proto)
	k := setKey{method: standardMethod(r.Method), host: host, proto: proto, version: version,
		route: routeOf(r.Pattern), port: port, status: status}
	in.mu.RLock()
	o, ok := in.sets[k]
	in.mu.RUnlock()
	if ok {
		return o
	}
	attrs := make([]attribute.KeyValue, 0, 8)
	attrs = append(attrs, attribute.String("http.request.method", k.method), attribute.String("url.scheme", "http"),
		attribute.String("server.address", k.host))
	if k.port > 0 && k.port != 80 {
		attrs = append(attrs, attribute.Int("server.port", k.port))
	}
	if k.proto != "" {
		attrs = append(attrs, attribute.String("network.protocol.name", k.proto))
	}
	if k.version != "" {
		attrs = append(attrs, attribute.String("network.protocol.version", k.version))
	}
	if k.status > 0 {
		attrs = append(attrs, attribute.Int("http.response.status_code", k.status))
	}
	if k.route != "" {
		attrs = append(attrs, attribute.String("http.route", k.route))
	}
	o = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attrs...))}
	in.mu.Lock()
	if len(in.sets) < maxCachedSets {
		in.sets[k] = o
	}
	in.mu.Unlock()
	return o
}

// standardMethod is the method as the semantic conventions name it: one
// of the nine standard ones, or _OTHER.
func standardMethod(m string) string {
	switch m = strings.ToUpper(m); m {
	case http.MethodConnect, http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodOptions,
		http.MethodPatch, http.MethodPost, http.MethodPut, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// routeOf is the path part of a route pattern ("POST /ingest" → "/ingest").
func routeOf(pattern string) string {
	if i := strings.IndexByte(pattern, '/'); i >= 0 {
		return pattern[i:]
	}
	return ""
}

// splitHostPort splits a Host header as otelhttp does: a host without a
// port gives port -1, and so does a port that is not a 16-bit number; a
// malformed host:port gives neither.
func splitHostPort(hp string) (string, int) {
	if strings.HasPrefix(hp, "[") {
		end := strings.LastIndexByte(hp, ']')
		if end < 0 {
			return "", -1
		}
		if !strings.Contains(hp[end:], ":") {
			return hp[1:end], -1
		}
	} else if !strings.Contains(hp, ":") {
		return hp, -1
	}
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return host, -1
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return host, -1
	}
	return host, int(port)
}

// measured is the response writer and request body of one measured
// request, in one allocation.
type measured struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	written     int64
	counter     countingBody
}

// countingBody counts the bytes read of the request body it wraps.
type countingBody struct {
	rc io.ReadCloser
	n  int64
}

// Read reads the wrapped body.
func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.n += int64(n)
	return n, err
}

// Close closes the wrapped body.
func (c *countingBody) Close() error { return c.rc.Close() }

// WriteHeader records the first status.
func (m *measured) WriteHeader(code int) {
	if !m.wroteHeader && (code < 100 || code > 199 || code == http.StatusSwitchingProtocols) { // other 1xx are not the answer
		m.status, m.wroteHeader = code, true
	}
	m.ResponseWriter.WriteHeader(code)
}

// Write counts the body bytes.
func (m *measured) Write(b []byte) (int, error) {
	m.wroteHeader = true
	n, err := m.ResponseWriter.Write(b)
	m.written += int64(n)
	return n, err
}

// Flush flushes the underlying writer when it can.
func (m *measured) Flush() {
	if f, ok := m.ResponseWriter.(http.Flusher); ok {
		m.wroteHeader = true
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the server's writer (read
// deadlines, hijacking).
func (m *measured) Unwrap() http.ResponseWriter { return m.ResponseWriter }
