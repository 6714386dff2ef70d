// Package demosvc is the platform seed's demo pair: service-a answers
// POST /api/message-a by calling service-b's POST /api/message-b (one trace
// across both), either answers POST /api/error?statusCode=N with N, and
// both ship their own request logs to the distributor's Loki endpoint, so
// they are real log emitters of the pipeline.
package demosvc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/dsplab/dsplab/internal/httpserver"
	"github.com/dsplab/dsplab/internal/telemetry"
	"github.com/dsplab/dsplab/services/demosvc/lokiship"
)

// Config of one demo service.
type Config struct {
	Name       string // service-a, service-b
	Route      string // /api/message-a
	Listen     string
	Downstream string // service-b's base URL, for service-a; empty for service-b
	LokiURL    string // the distributor's push endpoint; empty: no shipping
	Tenant     string
}

// ConfigFromEnv reads PORT, DOWNSTREAM_URL (service-a: SERVICE_B_URL),
// LOKI_PUSH_URL and LOG_TENANT.
func ConfigFromEnv(name, route, port, downstream string, getenv func(string) string) (Config, error) {
	get := func(k, def string) string {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
		return def
	}
	if downstream != "" { // only service-a has one
		downstream = get("SERVICE_B_URL", downstream)
	}
	c := Config{Name: name, Route: route, Listen: ":" + get("PORT", port), Downstream: downstream,
		LokiURL: get("LOKI_PUSH_URL", "http://distributor:8080/loki/api/v1/push"), Tenant: get("LOG_TENANT", "demo")}
	if _, err := strconv.ParseUint(strings.TrimPrefix(c.Listen, ":"), 10, 16); err != nil {
		return c, fmt.Errorf("PORT=%q: not a port number", c.Listen[1:])
	}
	return c, nil
}

// App is a running demo service.
type App struct {
	cfg    Config
	log    *slog.Logger
	ship   *lokiship.Shipper
	client *http.Client
	tracer trace.TracerProvider
	server *httpserver.Server
}

// New builds the service and binds its port (listen overrides cfg.Listen).
func New(cfg Config, listen string, tel *telemetry.Providers, log *slog.Logger) (*App, error) {
	a := &App{cfg: cfg, log: log, tracer: tel.TracerProvider,
		client: &http.Client{Timeout: 5 * time.Second, Transport: otelhttp.NewTransport(http.DefaultTransport, otelhttp.WithTracerProvider(tel.TracerProvider))}}
	if cfg.LokiURL != "" {
		s, err := lokiship.New(lokiship.Config{URL: cfg.LokiURL, Tenant: cfg.Tenant, Labels: map[string]string{"service": cfg.Name, "app": "dsplab-demo"}},
			tel.MeterProvider.Meter("github.com/dsplab/dsplab/demosvc"), log)
		if err != nil {
			return nil, err
		}
		a.ship = s
	}
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Use(otelhttp.NewMiddleware(cfg.Name, otelhttp.WithTracerProvider(tel.TracerProvider), otelhttp.WithMeterProvider(tel.MeterProvider),
		otelhttp.WithFilter(func(r *http.Request) bool { return r.URL.Path != "/metrics" && r.URL.Path != "/health" })))
	r.Use(httpserver.NameSpansByRoute)
	r.Use(a.requestLog)
	r.Post(cfg.Route, a.message)
	r.Post("/api/error", a.errorRoute)
	r.Get("/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]string{"status": "healthy", "service": cfg.Name})
	})
	r.Method(http.MethodGet, "/metrics", tel.MetricsHandler)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 404, map[string]string{"error": "no route " + r.URL.Path})
	})
	if listen == "" {
		listen = cfg.Listen
	}
	var err error
	a.server, err = httpserver.Listen(listen, r, httpserver.Options{Logger: log})
	return a, err
}

// Addr is the listen address.
func (a *App) Addr() string { return a.server.Addr() }

// Run serves and ships logs until ctx ends.
func (a *App) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.server.Run(ctx) })
	if a.ship != nil {
		g.Go(func() error { return a.ship.Run(ctx) })
	}
	return g.Wait()
}

type messageIn struct {
	Message string `json:"message"`
}

// message answers service-a's and service-b's message route; service-a
// first calls service-b, in the same trace.
func (a *App) message(w http.ResponseWriter, r *http.Request) {
	var in messageIn
	if b, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10)); len(b) > 0 {
		if err := json.Unmarshal(b, &in); err != nil {
			writeJSON(w, 400, map[string]string{"error": "body must be {\"message\": \"...\"}: " + err.Error()})
			return
		}
	}
	if in.Message == "" {
		in.Message = "hello"
	}
	out := map[string]any{"service": a.cfg.Name, "message": in.Message, "trace_id": trace.SpanContextFromContext(r.Context()).TraceID().String()}
	if a.cfg.Downstream != "" {
		down, err := a.callDownstream(r.Context(), in)
		if err != nil {
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": "downstream: " + err.Error()})
			return
		}
		out["downstream"] = down
	}
	writeJSON(w, 200, out)
}

func (a *App) callDownstream(ctx context.Context, in messageIn) (any, error) {
	b, _ := json.Marshal(in)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(a.cfg.Downstream, "/")+"/api/message-b", strings.NewReader(string(b)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("%s: %w", resp.Status, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("answered %s", resp.Status)
	}
	return out, nil
}

// errorRoute answers the status asked for in statusCode.
func (a *App) errorRoute(w http.ResponseWriter, r *http.Request) {
	code, err := strconv.Atoi(r.URL.Query().Get("statusCode"))
	if err != nil || code < 200 || code > 599 {
		writeJSON(w, 400, map[string]string{"error": "statusCode must be a number from 200 to 599"})
		return
	}
	writeJSON(w, code, map[string]any{"error": http.StatusText(code), "statusCode": code, "service": a.cfg.Name})
}

// requestLog logs every request (with its trace id) and ships the line.
func (a *App) requestLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		if r.URL.Path == "/metrics" || r.URL.Path == "/health" {
			return
		}
		status, took := ww.Status(), time.Since(start)
		level, lvl := "info", slog.LevelInfo
		switch {
		case status >= 500:
			level, lvl = "error", slog.LevelError
		case status >= 400:
			level, lvl = "warn", slog.LevelWarn
		}
		tid := trace.SpanContextFromContext(r.Context()).TraceID()
		a.log.Log(r.Context(), lvl, "request", "method", r.Method, "path", r.URL.Path, "status", status, "duration_ms", took.Milliseconds())
		if a.ship != nil {
			a.ship.Log(start, level, fmt.Sprintf("method=%s path=%s status=%d duration_ms=%.1f trace_id=%s", r.Method, r.URL.Path, status, float64(took.Microseconds())/1000, tid))
		}
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
