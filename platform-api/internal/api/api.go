// Package api is the platform's HTTP interface: chi routes with swag
// annotations (the OpenAPI spec in package apidocs is generated from them
// by `make swagger`), Swagger UI, metrics and the one JSON error shape.
//
//	@title			DSP Lab platform API
//	@version		0.1
//	@description	Drive the DSP Lab stack: list targets, start traffic (k6 jobs), run experiments to a verdict and a report, and inject faults into the compose project's containers: pause, stop, kill, restart, CPU and memory limits through the Docker API; delay, loss, duplicate, corrupt, rate and partitions as Pumba jobs. Every fault is reverted when its duration ends, when stopped, on reset, and after the platform restarts.
//	@BasePath		/
//	@securityDefinitions.apikey	BearerToken
//	@in							header
//	@name						Authorization
//	@description				"Bearer <PLATFORM_API_TOKEN>", needed when the platform has a token for every POST, PUT and DELETE and for the reads that disclose configuration (targets, alerts, the distributor's overlay).
package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	httpSwagger "github.com/swaggo/http-swagger/v2"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/dsplab/dsplab/internal/httpguard"
	"github.com/dsplab/dsplab/internal/httpserver"
	"github.com/dsplab/dsplab/platform-api/internal/apierr"
	"github.com/dsplab/dsplab/platform-api/internal/docker"
	"github.com/dsplab/dsplab/platform-api/internal/experiments"
	"github.com/dsplab/dsplab/platform-api/internal/faults"

	_ "github.com/dsplab/dsplab/platform-api/internal/apidocs" // registers the generated spec
)

// Targets lists the project's containers.
type Targets interface {
	Project() string
	Targets(ctx context.Context) ([]docker.Container, error)
}

// Faults starts, lists and reverts faults.
type Faults interface {
	Start(ctx context.Context, s faults.Spec) (faults.Fault, error)
	StopFault(ctx context.Context, id string) (faults.Fault, error)
	Reset(ctx context.Context) ([]faults.Fault, error)
	Get(id string) (faults.Fault, error)
	List() []faults.Fault
}

// Deps are the handlers' collaborators.
type Deps struct {
	Targets        Targets
	Faults         Faults
	Traffic        Traffic
	Alerts         Alerts
	Experiments    Experiments
	Distributor    Distributor
	Images         Images
	ReportLinks    experiments.ReportLinks // where the HTML reports link to (Grafana)
	Token          string                  // PLATFORM_API_TOKEN; empty: no authentication
	AllowedHosts   string                  // ALLOWED_HOSTS: names besides loopback, IPs and platform-api
	MetricsHandler http.Handler
	TracerProvider trace.TracerProvider
	Logger         *slog.Logger
}

type handler struct {
	Deps
	// webhookSlots bounds the Alertmanager notifications decoded at once
	// (each body up to 4 MiB, a few times that once decoded): 300 at once
	// would otherwise take gigabytes.
	webhookSlots chan struct{}
}

// Webhook decoding: at most webhookDecodes at once; a notification waits
// for a slot at most webhookWait, then gets 503 with Retry-After
// (Alertmanager retries a failed webhook with backoff).
const (
	webhookDecodes = 4
	webhookWait    = 10 * time.Second
)

// NewRouter returns the platform's HTTP handler.
//
// It holds the Docker socket, so a web page in the user's browser must not
// be able to make it act (package httpguard): every route but /health needs
// a Host that names the platform (421 otherwise: DNS rebinding), a browser's
// POST, PUT or DELETE from another origin is refused (403), every one of
// them must say Content-Type: application/json (415), and with
// PLATFORM_API_TOKEN set they need the token (401), as do the reads that
// disclose configuration. Swagger UI, served from the same origin, passes.
func NewRouter(d Deps) http.Handler {
	h := &handler{Deps: d, webhookSlots: make(chan struct{}, webhookDecodes)}
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Use(otelhttp.NewMiddleware("platform-api", otelhttp.WithTracerProvider(d.TracerProvider),
		otelhttp.WithFilter(func(r *http.Request) bool { return r.URL.Path != "/metrics" && r.URL.Path != "/health" })))
	r.Use(httpserver.NameSpansByRoute)
	// Probes (Docker's health check, an orchestrator's) may use any name.
	r.Get("/health", h.health)
	r.Group(func(r chi.Router) {
		r.Use(httpguard.NewHosts("ALLOWED_HOSTS", d.AllowedHosts, "platform-api").Check, httpguard.SameOrigin)
		r.Method(http.MethodGet, "/metrics", d.MetricsHandler)
		r.Get("/swagger", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/swagger/index.html", http.StatusFound)
		})
		r.Get("/swagger/*", httpSwagger.Handler(httpSwagger.URL("/swagger/doc.json"),
			httpSwagger.UIConfig(map[string]string{"requestInterceptor": swaggerJSONInterceptor})))
		r.Route("/api", h.apiRoutes)
	})
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, ErrorResponse{Error: "no route " + r.Method + " " + r.URL.Path})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, ErrorResponse{Error: "method " + r.Method + " not allowed on " + r.URL.Path})
	})
	return r
}

// swaggerJSONInterceptor makes Swagger UI's "Try it out" send Content-Type:
// application/json on a POST or DELETE without a body (stop, reset, run a
// preset): swagger-ui sets the type only when there is a body, and the
// platform refuses writes without it (httpguard.JSONOnly).
const swaggerJSONInterceptor = `(req) => {
      const m = (req.method || "GET").toUpperCase();
      if (m !== "GET" && m !== "HEAD" && !req.headers["Content-Type"]) { req.headers["Content-Type"] = "application/json"; }
      return req;
    }`

func (h *handler) apiRoutes(r chi.Router) {
	token := httpguard.Bearer(h.Token, "dsplab", "PLATFORM_API_TOKEN")
	r.Use(writesNeed(token), httpguard.JSONOnly())
	// Reads that disclose the stack's configuration need the token too;
	// the others stay open, so anyone at the machine can watch a run.
	disclosing := r.With(token)
	r.Get("/status", h.status)
	disclosing.Get("/targets", h.listTargets)
	r.Get("/faults", h.listFaults)
	r.Post("/faults", h.startFault)
	r.Post("/faults/reset", h.resetFaults)
	r.Get("/faults/{id}", h.getFault)
	r.Post("/faults/{id}/stop", h.stopFault)
	r.Delete("/faults/{id}", h.stopFault)
	r.Get("/traffic", h.listTraffic)
	r.Post("/traffic/start", h.startTraffic)
	r.Get("/traffic/{id}", h.getTraffic)
	r.Post("/traffic/{id}/stop", h.stopTraffic)
	r.Post("/alerts/webhook", h.alertWebhook)
	disclosing.Get("/alerts", h.listAlerts)
	r.Get("/experiments/presets", h.listPresets)
	r.Post("/experiments/presets/{name}/run", h.runPreset)
	r.Get("/experiments/presets/{name}/report.html", h.latestPresetReport)
	r.Get("/experiments", h.listExperiments)
	r.Post("/experiments", h.startExperiment)
	r.Get("/experiments/compare", h.compareExperiments)
	r.Get("/experiments/compare.html", h.compareExperimentsHTML)
	r.Get("/experiments/{id}", h.getExperiment)
	r.Get("/experiments/{id}/report", h.getExperiment)
	r.Get("/experiments/{id}/report.md", h.experimentMarkdown)
	r.Get("/experiments/{id}/report.html", h.experimentHTML)
	r.Post("/experiments/{id}/stop", h.stopExperiment)
	r.Post("/experiments/{id}/rerun", h.rerunExperiment)
	disclosing.Get("/distributor/config", h.getDistributorConfig)
	r.Put("/distributor/config", h.setDistributorConfig)
	r.Delete("/distributor/config", h.clearDistributorConfig)
}

// writesNeed applies guard to every request but GET and HEAD.
func writesNeed(guard func(http.Handler) http.Handler) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		guarded := guard(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				next.ServeHTTP(w, r)
				return
			}
			guarded.ServeHTTP(w, r)
		})
	}
}

// ErrorResponse is every error answer.
type ErrorResponse struct {
	Error    string           `json:"error" example:"invalid fault"`
	Problems []apierr.Problem `json:"problems,omitempty"`
}

// writeJSON answers v as JSON; what cannot be encoded is a 500 that says
// why, not a 200 with an empty body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorResponse{Error: "encode the answer: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeError answers an error with the status it carries (apierr.Status:
// the domain packages' errors say their HTTP meaning once).
func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ve *apierr.ValidationError
	var ie *docker.ImageError
	status := apierr.Status(err)
	body := ErrorResponse{Error: err.Error()}
	switch {
	case errors.As(err, &ve):
		status, body.Error, body.Problems = http.StatusBadRequest, "invalid request", ve.Problems
	case errors.As(err, &ie):
		// A job image that could not be pulled: the message names it and
		// the cause, without the layers of context around it.
		status, body.Error = http.StatusServiceUnavailable, ie.Error()
		if ie.Pulling {
			w.Header().Set("Retry-After", "30")
		}
	}
	if status >= 500 {
		h.Logger.ErrorContext(r.Context(), "request failed", "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, body)
}

// HealthResponse is GET /health.
type HealthResponse struct {
	Status  string `json:"status" example:"ok"`
	Project string `json:"project" example:"dsplab"`
}

// health godoc
//
//	@Summary	Liveness of the platform API
//	@Tags		platform
//	@Produce	json
//	@Success	200	{object}	HealthResponse
//	@Router		/health [get]
func (h *handler) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, HealthResponse{Status: "ok", Project: h.Targets.Project()})
}
