package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/packettest"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/dsplab/dsplab/distributor/internal/config"
	"github.com/dsplab/dsplab/distributor/internal/metrics"
	"github.com/dsplab/dsplab/distributor/internal/pipeline"
	"github.com/dsplab/dsplab/distributor/internal/pool"
	"github.com/dsplab/dsplab/distributor/internal/produce"
	"github.com/dsplab/dsplab/distributor/internal/ratelimit"
	"github.com/dsplab/dsplab/internal/envelope"
)

// Hand-written fakes for the handler's narrow interfaces. The real
// pipeline, pool and Kafka are exercised by the integration tests.

type fakePipeline struct {
	mu       sync.Mutex
	err      error
	accepted []*envelope.Envelope
	block    chan struct{}
	entered  chan struct{}
	// blockEmitter, when set, blocks only that emitter's packets.
	blockEmitter string
}

func (f *fakePipeline) Accept(ctx context.Context, env *envelope.Envelope) (string, error) {
	if f.block != nil && (f.blockEmitter == "" || env.EmitterID == f.blockEmitter) {
		f.entered <- struct{}{}
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	f.accepted = append(f.accepted, env)
	return "analyzer-1", nil
}

func (f *fakePipeline) Totals() (int64, int64, map[string][2]int64) {
	return 3, 7, map[string][2]int64{"analyzer-1": {3, 7}}
}

type fakeAnalyzers struct{ statuses []pool.Status }

func (f *fakeAnalyzers) Statuses() []pool.Status { return f.statuses }
func (f *fakeAnalyzers) SetWeight(id string, w float64) bool {
	for i := range f.statuses {
		if f.statuses[i].ID == id {
			f.statuses[i].Weight = w
			return true
		}
	}
	return false
}
func (f *fakeAnalyzers) SetDrained(id string, d bool) bool {
	for i := range f.statuses {
		if f.statuses[i].ID == id {
			f.statuses[i].Drained = d
			return true
		}
	}
	return false
}

type fakeSLA struct {
	mu     sync.Mutex
	faults []bool
}

func (f *fakeSLA) Record(fault bool) { f.mu.Lock(); f.faults = append(f.faults, fault); f.mu.Unlock() }

type env struct {
	h       http.Handler
	p       *fakePipeline
	a       *fakeAnalyzers
	sla     *fakeSLA
	cfg     config.Config
	reloads int
	overlay []byte
}

func newEnv(t *testing.T, mutate func(*config.Config)) *env {
	return newSecuredEnv(t, mutate, Security{})
}

func newSecuredEnv(t *testing.T, mutate func(*config.Config), sec Security) *env {
	cfg := config.Default()
	if mutate != nil {
		mutate(&cfg)
	}
	inst, err := metrics.New(sdkmetric.NewMeterProvider().Meter("test"))
	require.NoError(t, err)
	e := &env{p: &fakePipeline{}, sla: &fakeSLA{}, cfg: cfg,
		a: &fakeAnalyzers{statuses: []pool.Status{{ID: "analyzer-1", Up: true}, {ID: "analyzer-2", Up: false}}}}
	e.h = NewRouter(Deps{
		Config: func() config.Config { return e.cfg }, Limiter: ratelimit.New(cfg.RateLimits()), Pipeline: e.p, Analyzers: e.a,
		Ready: func() error { return nil }, SLA: e.sla,
		Reload: func(context.Context) error { e.reloads++; return nil }, Metrics: inst, MetricsHandler: http.NotFoundHandler(),
		SetOverlay: func(_ context.Context, b []byte) error { e.overlay = b; return nil }, Overlay: func() []byte { return e.overlay },
		TracerProvider: noop.NewTracerProvider(), Logger: slog.New(slog.DiscardHandler), Security: sec,
	})
	return e
}

// do sends a request as a well-behaved local client does: to
// localhost:8080 with Content-Type: application/json, unless header says
// otherwise ("Host" sets the request's Host; security_test.go sends the
// other kinds).
func (e *env) do(method, path string, body []byte, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, bytes.NewReader(body))
	r.Host = "localhost:8080"
	r.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			r.Host = header[i+1]
			continue
		}
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

const packet = `{"emitter_id":"e","packet_id":1,"messages":[{"message":"m"}]}`

// The hand-written answer is byte for byte what encoding/json writes for it.
func TestIngestAnswer(t *testing.T) {
	e := newEnv(t, nil)
	id, _ := json.Marshal("p<1>\"&\u2028-ü")
	w := e.do("POST", "/ingest", []byte(`{"emitter_id":"e","packet_id":`+string(id)+`,"messages":[{"message":"m"}]}`))
	require.Equal(t, http.StatusAccepted, w.Code)
	var want bytes.Buffer
	require.NoError(t, json.NewEncoder(&want).Encode(map[string]string{"status": "accepted", "packet_id": e.p.accepted[0].PacketID}))
	require.Equal(t, want.String(), w.Body.String())
	require.Equal(t, "application/json", w.Header().Get("Content-Type"))
}

func TestIngestAcceptsAndUsesTheTenantHeaderOrTheDefault(t *testing.T) {
	e := newEnv(t, nil)
	w := e.do("POST", "/ingest", []byte(packet))
	require.Equal(t, http.StatusAccepted, w.Code)
	require.JSONEq(t, `{"status":"accepted","packet_id":"1"}`, w.Body.String())
	e.do("POST", "/ingest", []byte(packet), "X-Scope-OrgID", "team-a")
	require.Equal(t, "default", e.p.accepted[0].Tenant)
	require.Equal(t, "team-a", e.p.accepted[1].Tenant)
	require.Equal(t, []bool{false, false}, e.sla.faults)
}

func TestErrorsMapToStatusRetryAfterAndSLA(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		status     int
		retryAfter string
		fault      bool
		body       string
	}{
		{"no analyzer", pipeline.ErrNoAnalyzer, 503, "1", true, "no healthy analyzer"},
		{"kafka breaker open", produce.ErrBreakerOpen, 503, "3", true, "breaker_open"},
		{"kafka refused", &produce.Error{Type: "conn_refused", Err: io.EOF}, 503, "1", true, "conn_refused"},
		{"record too large", &produce.Error{Type: "too_large", Err: io.EOF}, 413, "", false, "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Retry-After of the Kafka breaker is the configured base backoff.
			e := newEnv(t, func(c *config.Config) { c.Kafka.Breaker.BaseBackoff = 3 * time.Second })
			e.p.err = tt.err
			w := e.do("POST", "/ingest", []byte(packet))
			require.Equal(t, tt.status, w.Code)
			require.Equal(t, tt.retryAfter, w.Header().Get("Retry-After"))
			require.Contains(t, w.Body.String(), tt.body)
			require.Equal(t, []bool{tt.fault}, e.sla.faults)
		})
	}
}

func TestRateLimitedRequestsGet429AndAreNotServerFaults(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Limits.PerTenant = ratelimit.Rate{Rate: 0.5, Burst: 1} })
	require.Equal(t, http.StatusAccepted, e.do("POST", "/ingest", []byte(packet)).Code)
	w := e.do("POST", "/ingest", []byte(packet))
	require.Equal(t, http.StatusTooManyRequests, w.Code)
	require.Equal(t, "2", w.Header().Get("Retry-After"))
	require.JSONEq(t, `{"error":"rate limited","scope":"tenant","retry_after_seconds":2}`, w.Body.String())
	require.Equal(t, []bool{false, false}, e.sla.faults)
}

func TestTooManyRequestsInFlightGetAFast503(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Limits.MaxInflight = 1 })
	e.p.block, e.p.entered = make(chan struct{}), make(chan struct{}, 1)
	done := make(chan int)
	go func() { done <- e.do("POST", "/ingest", []byte(packet)).Code }()
	<-e.p.entered // the first request holds the only slot
	w := e.do("POST", "/ingest", []byte(packet))
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Contains(t, w.Body.String(), "overloaded")
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	close(e.p.block)
	require.Equal(t, http.StatusAccepted, <-done)
}

func TestGzipBombsAreStoppedAtTheDecompressedLimit(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Limits.MaxDecompressedBytes = 1 << 20 })
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(bytes.Repeat([]byte(" "), 10<<20)) // 10 MiB of spaces, ~10 KiB compressed
	zw.Close()
	w := e.do("POST", "/loki/api/v1/push", b.Bytes(), "X-Scope-OrgID", "t", "Content-Type", "application/json", "Content-Encoding", "gzip")
	require.Equal(t, http.StatusRequestEntityTooLarge, w.Code, w.Body.String())
	require.Empty(t, e.p.accepted)
}

func TestHealthIs503WhenNoAnalyzerIsHealthy(t *testing.T) {
	e := newEnv(t, nil)
	w := e.do("GET", "/health", nil)
	require.Equal(t, http.StatusOK, w.Code)
	var h healthBody
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &h))
	require.Equal(t, healthBody{Status: "healthy", HealthyAnalyzers: 1, TotalAnalyzers: 2, Timestamp: h.Timestamp}, h)
	e.a.statuses[0].Up = false
	require.Equal(t, http.StatusServiceUnavailable, e.do("GET", "/health", nil).Code)
}

func TestAdminRoutesChangeWeightAndDrainAndValidate(t *testing.T) {
	e := newEnv(t, nil)
	require.Equal(t, http.StatusOK, e.do("PUT", "/admin/analyzers/analyzer-2/weight", []byte(`{"weight":0.7}`)).Code)
	require.Equal(t, 0.7, e.a.statuses[1].Weight)
	require.Equal(t, http.StatusOK, e.do("POST", "/admin/analyzers/analyzer-1/drain", nil).Code)
	require.True(t, e.a.statuses[0].Drained)
	require.Equal(t, http.StatusOK, e.do("POST", "/admin/analyzers/analyzer-1/undrain", nil).Code)
	require.False(t, e.a.statuses[0].Drained)
	require.Equal(t, http.StatusNotFound, e.do("POST", "/admin/analyzers/nope/drain", nil).Code)
	for _, body := range []string{`{"weight":-1}`, `{}`, `{"weight":1,"extra":2}`, `nope`} {
		w := e.do("PUT", "/admin/analyzers/analyzer-1/weight", []byte(body))
		require.Equal(t, http.StatusBadRequest, w.Code, body)
		require.Contains(t, w.Body.String(), `"error"`)
	}
}

func TestMetricsJSONHasTheLogStreamerShape(t *testing.T) {
	e := newEnv(t, nil)
	var m map[string]any
	require.NoError(t, json.Unmarshal(e.do("GET", "/metrics-json", nil).Body.Bytes(), &m))
	for _, k := range []string{"total_packets", "total_messages", "packets_by_analyzer", "messages_by_analyzer", "queue_depth_by_analyzer", "healthy_analyzers", "total_analyzers", "timestamp"} {
		require.Contains(t, m, k)
	}
	require.EqualValues(t, 7, m["total_messages"])
}

func TestUnknownRoutesAndMethodsAnswerJSON(t *testing.T) {
	e := newEnv(t, nil)
	w := e.do("GET", "/nope", nil)
	require.Equal(t, http.StatusNotFound, w.Code)
	require.Contains(t, w.Body.String(), `"error"`)
	w = e.do("GET", "/ingest", nil)
	require.Equal(t, http.StatusMethodNotAllowed, w.Code)
	require.Contains(t, w.Body.String(), `"error"`)
}

// The memory budget: a large packet in work holds its estimate; another
// large one that does not fit gets a fast 503 with Retry-After (load
// shedding: counted against the SLA, as the in-flight bound is), small
// packets are still served from their own pool, one that could never fit
// is 413, and once the first is answered its bytes are free again.
func TestTheMemoryBudgetRefusesWith503AndReleasesAfter(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Limits.MaxBytesInFlight = 4 << 20; c.Limits.MaxMessagesPerPacket = 100_000 })
	e.p.block, e.p.entered, e.p.blockEmitter = make(chan struct{}), make(chan struct{}, 1), "big-1"
	done := make(chan int)
	go func() { done <- e.do("POST", "/ingest", packettest.Plain("big-1", 300<<10)).Code }()
	<-e.p.entered // decoded, its estimate held, waiting for "Kafka"

	w := e.do("POST", "/ingest", packettest.Plain("big-2", 300<<10))
	require.Equal(t, http.StatusServiceUnavailable, w.Code, w.Body.String())
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.Contains(t, w.Body.String(), "memory budget")
	require.Contains(t, w.Body.String(), "limits.max_bytes_in_flight")

	require.Equal(t, http.StatusAccepted, e.do("POST", "/ingest", []byte(packet)).Code, "a small packet has a pool of its own")

	close(e.p.block)
	require.Equal(t, http.StatusAccepted, <-done)
	require.Equal(t, http.StatusAccepted, e.do("POST", "/ingest", packettest.Plain("big-2", 300<<10)).Code, "released after the answer")
	w = e.do("POST", "/ingest", packettest.Plain("huge", 1<<20))
	require.Equal(t, http.StatusRequestEntityTooLarge, w.Code, "never room: 413, not a Retry-After: %s", w.Body.String())
	require.Empty(t, w.Header().Get("Retry-After"))
	require.Equal(t, []bool{true, false, false, false, false}, e.sla.faults, "the 503 is a server-side refusal, the rest are not")
}
