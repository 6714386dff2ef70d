// Package api is the distributor's HTTP interface: ingest and Loki push,
// health, readiness, metrics, configuration and admin routes.
package api

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/dsplab/dsplab/distributor/internal/budget"
	"github.com/dsplab/dsplab/distributor/internal/config"
	"github.com/dsplab/dsplab/distributor/internal/ingest"
	"github.com/dsplab/dsplab/distributor/internal/metrics"
	"github.com/dsplab/dsplab/distributor/internal/pool"
	"github.com/dsplab/dsplab/distributor/internal/ratelimit"
	"github.com/dsplab/dsplab/internal/envelope"
	"github.com/dsplab/dsplab/internal/httpserver"
	"github.com/dsplab/dsplab/internal/jsonw"
	"github.com/dsplab/dsplab/internal/telemetry"
)

// Deps are what the handlers use, as narrow interfaces.
type Deps struct {
	Config  func() config.Config // the current snapshot
	Limiter interface {
		Allow(tenant string) ratelimit.Decision
	}
	Pipeline interface {
		Accept(ctx context.Context, env *envelope.Envelope) (string, error)
		Totals() (packets, messages int64, byAnalyzer map[string][2]int64)
	}
	Analyzers interface {
		Statuses() []pool.Status
		SetWeight(id string, w float64) bool
		SetDrained(id string, drained bool) bool
	}
	Ready  func() error // nil when ready
	SLA    interface{ Record(serverFault bool) }
	Reload func(ctx context.Context) error
	// SetOverlay replaces the run-time config overlay and reloads; Overlay
	// returns it.
	SetOverlay func(ctx context.Context, overlay []byte) error
	Overlay    func() []byte
	Metrics    *metrics.Instruments
	// MetricsHandler serves /metrics.
	MetricsHandler http.Handler
	TracerProvider trace.TracerProvider
	Logger         *slog.Logger
	// Security protects the admin routes (admin.go).
	Security Security
}

type handler struct {
	Deps
	inflight atomic.Int64
	budget   *budget.Budget // limits.max_bytes_in_flight, set from each request's snapshot
	idPrefix string
	seq      atomic.Uint64
	attrs    attrCache
}

// attrCache holds the metric attribute sets of the ingest path, built once:
// building a set per request (allocation and sorting) was a visible share
// of the distributor's CPU at saturation.
type attrCache struct {
	byEndpoint map[string]telemetry.Opts    // endpoint
	byResult   map[[2]string]telemetry.Opts // endpoint, result
	byScope    map[string]telemetry.Opts    // rate-limit scope
}

func newAttrCache() attrCache {
	c := attrCache{byEndpoint: map[string]telemetry.Opts{}, byResult: map[[2]string]telemetry.Opts{}, byScope: map[string]telemetry.Opts{}}
	for _, e := range []string{"ingest", "loki_push"} {
		c.byEndpoint[e] = telemetry.NewOpts(attribute.String("endpoint", e))
		for _, r := range []string{resultAccepted, resultBadRequest, resultTooLarge, resultRateLimited, resultUnavailable, resultError} {
			c.byResult[[2]string{e, r}] = telemetry.NewOpts(attribute.String("endpoint", e), attribute.String("result", r))
		}
	}
	for _, sc := range []string{"global", "tenant"} {
		c.byScope[sc] = telemetry.NewOpts(attribute.String("scope", sc))
	}
	return c
}

// endpoint, result and scope return the cached set; a label value not
// known in advance (none is today) gets a fresh one.
func (c attrCache) endpoint(e string) telemetry.Opts {
	if o, ok := c.byEndpoint[e]; ok {
		return o
	}
	return telemetry.NewOpts(attribute.String("endpoint", e))
}

func (c attrCache) result(e, r string) telemetry.Opts {
	if o, ok := c.byResult[[2]string{e, r}]; ok {
		return o
	}
	return telemetry.NewOpts(attribute.String("endpoint", e), attribute.String("result", r))
}

func (c attrCache) scope(sc string) telemetry.Opts {
	if o, ok := c.byScope[sc]; ok {
		return o
	}
	return telemetry.NewOpts(attribute.String("scope", sc))
}

// NewRouter returns the distributor's HTTP handler.
func NewRouter(d Deps) http.Handler {
	h := &handler{Deps: d, idPrefix: strconv.FormatInt(time.Now().UnixNano(), 36), attrs: newAttrCache(), budget: budget.New(0)}
	if d.Metrics != nil {
		// Every endpoint × result series exists at zero from the first
		// scrape: increase() and rate() cannot see the first request of a
		// series that appears with it (the first sample is already 1).
		for _, o := range h.attrs.byResult {
			d.Metrics.Requests.Add(context.Background(), 0, o.Add...)
		}
	}
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	measured := func(r *http.Request) bool { return r.URL.Path != "/metrics" && r.URL.Path != "/health" }
	// The spans and metrics of otelhttp's middleware, same names and
	// attributes, at a third of its allocations (httpserver.Instrumentation);
	// otelhttp's own should the instruments fail to be created.
	if in, err := httpserver.NewInstrumentation(d.TracerProvider, otel.GetMeterProvider(), measured); err == nil {
		r.Use(in.Middleware)
	} else {
		if d.Logger != nil {
			d.Logger.Warn("http instrumentation: otelhttp's instead", "err", err)
		}
		r.Use(otelhttp.NewMiddleware("distributor", otelhttp.WithTracerProvider(d.TracerProvider), otelhttp.WithFilter(measured)))
	}
	r.Use(httpserver.NameSpansByRoute)
	r.Post("/ingest", h.ingest)
	r.Post("/loki/api/v1/push", h.lokiPush)
	r.Post("/api/prom/push", h.lokiPush)
	r.Get("/health", h.health)
	r.Get("/ready", h.ready)
	r.Method(http.MethodGet, "/metrics", d.MetricsHandler)
	r.Get("/metrics-json", h.metricsJSON)
	r.Group(h.adminRoutes)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "no route " + r.Method + " " + r.URL.Path})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method " + r.Method + " not allowed on " + r.URL.Path})
	})
	return r
}

// jsonContentType is the answer's Content-Type header value, shared by all
// answers (the server only reads it).
var jsonContentType = []string{"application/json"}

// decodeFunc turns a request body into a packet within lim.
type decodeFunc func(r *http.Request, body []byte, tenant string, lim ingest.Limits) (*envelope.Envelope, error)

func (h *handler) ingest(w http.ResponseWriter, r *http.Request) {
	h.accept(w, r, "ingest", http.StatusAccepted, func(r *http.Request, body []byte, tenant string, lim ingest.Limits) (*envelope.Envelope, error) {
		return ingest.DecodePacket(body, tenant, time.Now().UTC(), lim)
	})
}

func (h *handler) lokiPush(w http.ResponseWriter, r *http.Request) {
	h.accept(w, r, "loki_push", http.StatusNoContent, func(r *http.Request, body []byte, tenant string, lim ingest.Limits) (*envelope.Envelope, error) {
		meta := ingest.LokiMeta{Tenant: tenant, EmitterID: r.Header.Get("X-Emitter-ID"), PacketID: h.nextPacketID(), Now: time.Now().UTC()}
		if meta.EmitterID == "" {
			meta.EmitterID = "loki/" + tenant
		}
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		switch ct {
		case "application/json":
			return ingest.DecodeLokiJSON(body, meta, lim)
		case "", "application/x-protobuf", "application/x-snappy-protobuf":
			return ingest.DecodeLokiProto(body, meta, lim)
		}
		return nil, &httpError{status: http.StatusUnsupportedMediaType, result: resultBadRequest,
			body: errorBody{Error: "Content-Type " + ct + " not supported: send application/json or application/x-protobuf"}}
	})
}

func (h *handler) nextPacketID() string {
	return h.idPrefix + "-" + strconv.FormatUint(h.seq.Add(1), 10)
}

func limits(cfg config.Config, hold *budget.Hold) ingest.Limits {
	return ingest.Limits{MaxMessages: cfg.Limits.MaxMessagesPerPacket, MaxMessageBytes: cfg.Limits.MaxMessageBytes, MaxDecompressed: cfg.Limits.MaxDecompressedBytes,
		Reserve: hold.Reserve}
}

// accept is the common path of every ingest endpoint: tenant, rate limit,
// body (within its size, time and memory budgets), in-flight bound,
// decode, route and produce, answer.
//
// The in-flight slot is taken once the body is in: a client sending its
// body slowly holds a connection (bounded by limits.max_connections and
// cut at limits.body_read_timeout) and a few bytes of the memory budget,
// never one of the max_inflight slots that decoding and Kafka writes need.
func (h *handler) accept(w http.ResponseWriter, r *http.Request, endpoint string, okStatus int, decode decodeFunc) {
	start := time.Now()
	cfg := h.Config()
	result := resultAccepted
	endpointAttr := h.attrs.endpoint(endpoint)
	defer func() {
		h.Metrics.Requests.Add(r.Context(), 1, h.attrs.result(endpoint, result).Add...)
		h.Metrics.RequestDuration.Record(r.Context(), time.Since(start).Seconds(), endpointAttr.Record...)
		h.SLA.Record(result == resultUnavailable || result == resultError)
	}()
	fail := func(err error) {
		e := classify(err, cfg.Kafka.Breaker.BaseBackoff)
		result = e.result
		if e.status >= 500 {
			h.Logger.WarnContext(r.Context(), "ingest failed", "endpoint", endpoint, "status", e.status, "err", err)
		}
		writeError(w, e)
	}
	tenant := r.Header.Get("X-Scope-OrgID")
	if tenant == "" {
		if endpoint != "ingest" {
			fail(badRequest("X-Scope-OrgID header is required", ingest.Problem{Field: "X-Scope-OrgID", Problem: "is required (the tenant)"}))
			return
		}
		tenant = cfg.DefaultTenant
	}
	if err := ingest.ValidateTenant(tenant); err != nil {
		fail(badRequest("invalid tenant id", ingest.Problem{Field: "X-Scope-OrgID", Problem: err.Error()}))
		return
	}
	if d := h.Limiter.Allow(tenant); !d.OK {
		h.Metrics.RateLimited.Add(r.Context(), 1, h.attrs.scope(d.Scope).Add...)
		result = resultRateLimited
		writeError(w, &httpError{status: http.StatusTooManyRequests, body: errorBody{Error: "rate limited", Scope: d.Scope, RetryAfter: retrySeconds(d.RetryAfter)}})
		return
	}
	h.budget.SetLimit(cfg.Limits.MaxBytesInFlight)
	hold := h.budget.Open()
	defer hold.Release() // after the answer: the envelope and its record are garbage by then
	body, err := readBody(w, r, cfg, hold)
	h.Metrics.RequestBytes.Add(r.Context(), int64(len(body)), endpointAttr.Add...)
	if err != nil {
		fail(err)
		return
	}
	if n := h.inflight.Add(1); n > int64(cfg.Limits.MaxInflight) {
		h.inflight.Add(-1)
		fail(unavailable("overloaded: too many requests in flight", "", time.Second))
		return
	}
	defer h.inflight.Add(-1)
	env, err := decode(r, body, tenant, limits(cfg, hold))
	if err != nil {
		fail(err)
		return
	}
	if _, err := h.Pipeline.Accept(r.Context(), env); err != nil {
		fail(err)
		return
	}
	if okStatus == http.StatusNoContent {
		w.WriteHeader(okStatus)
		return
	}
	// The answer is written by hand: it is the same JSON as encoding a
	// map of status and packet_id (TestIngestAnswer), without reflection.
	b := make([]byte, 0, 48+len(env.PacketID))
	b = append(b, `{"packet_id":`...)
	b = jsonw.AppendString(b, env.PacketID)
	b = append(b, `,"status":"accepted"}`+"\n"...)
	w.Header()["Content-Type"] = jsonContentType // Set would allocate the slice
	w.WriteHeader(okStatus)
	w.Write(b)
}

// readBody reads the body within the size limit, undoing a gzip
// Content-Encoding within the decompressed limit, and within the time
// budget: the body must be in limits.body_read_timeout after the headers.
// Every byte it keeps reserves two of the memory budget (the buffer grows
// by doubling).
func readBody(w http.ResponseWriter, r *http.Request, cfg config.Config, hold *budget.Hold) ([]byte, error) {
	rc := http.NewResponseController(w)
	// ErrNotSupported (a test's recorder) leaves no deadline to handle.
	deadline := rc.SetReadDeadline(time.Now().Add(cfg.Limits.BodyReadTimeout)) == nil
	b, err := readBodyWithin(w, r, cfg, hold)
	if deadline {
		if err == nil {
			// The server reads on in the background to see the client
			// hang up; a deadline firing there would cancel the request
			// while Kafka is written.
			rc.SetReadDeadline(time.Time{})
		} else {
			// The rest of a failed body is not worth waiting for: the
			// server, which would read it to reuse the connection,
			// closes it after the answer instead.
			rc.SetReadDeadline(time.Now())
		}
	}
	return b, err
}

func readBodyWithin(w http.ResponseWriter, r *http.Request, cfg config.Config, hold *budget.Hold) ([]byte, error) {
	var rd io.Reader = http.MaxBytesReader(w, r.Body, int64(cfg.Limits.MaxBodyBytes))
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
		b, err := io.ReadAll(reserving{rd, hold})
		return b, bodyError(w, cfg, err, "request body")
	case "gzip":
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, bodyError(w, cfg, err, "gzip")
		}
		lim := int64(cfg.Limits.MaxDecompressedBytes)
		b, err := io.ReadAll(io.LimitReader(reserving{zr, hold}, lim+1))
		if err != nil {
			return nil, bodyError(w, cfg, err, "gzip")
		}
		if int64(len(b)) > lim {
			return nil, fmt.Errorf("%w: more than %d bytes after gzip", ingest.ErrTooLarge, lim)
		}
		return b, nil
	default:
		return nil, &httpError{status: http.StatusUnsupportedMediaType, result: resultBadRequest,
			body: errorBody{Error: "Content-Encoding " + enc + " not supported: use gzip or none"}}
	}
}

// reserving reserves two bytes of the memory budget for every byte read.
type reserving struct {
	r    io.Reader
	hold *budget.Hold
}

func (r reserving) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if rerr := r.hold.Reserve(2 * int64(n)); rerr != nil {
		return 0, rerr
	}
	return n, err
}

// bodyError classifies an error of reading the body. The limits' errors
// pass as they are; a body that does not arrive in time is 408; any other
// failure is the client's framing (a bad chunk size, a body shorter than
// its Content-Length, a connection closed mid-body): 400, never a server
// fault. what names the stage ("request body", "gzip"). The connection is
// closed after the answer: its stream is broken or its client too slow.
func bodyError(w http.ResponseWriter, cfg config.Config, err error, what string) error {
	if err == nil {
		return nil
	}
	w.Header().Set("Connection", "close")
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || errors.Is(err, budget.ErrExhausted) || errors.Is(err, budget.ErrTooLarge) {
		return err
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &httpError{status: http.StatusRequestTimeout, result: resultBadRequest,
			body: errorBody{Error: "request body not received within " + cfg.Limits.BodyReadTimeout.String() + " (limits.body_read_timeout)"}}
	}
	if what == "gzip" {
		return fmt.Errorf("%w: gzip: %v", ingest.ErrMalformed, err)
	}
	return badRequest(what + ": " + err.Error())
}
