package api

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/dsplab/dsplab/internal/httpguard"
)

// Security is how the admin routes are protected. It is read once from the
// environment at start-up and is not part of the configuration file or its
// run-time overlay: the admin API can never switch off its own protection.
type Security struct {
	// AdminToken (ADMIN_TOKEN), when set, is the bearer token every admin
	// route needs.
	AdminToken string
	// AllowedHosts (ALLOWED_HOSTS) are names the admin routes may be
	// reached by, besides loopback, IP literals and "distributor".
	AllowedHosts string
	// Pprof (PPROF) mounts /debug/pprof/; off, it answers 404.
	Pprof bool
}

// Yaml types accepted besides JSON by PUT /admin/config: the overlay is a
// YAML document, and neither is a type a page may send cross-site without
// a preflight.
var yamlTypes = []string{"application/yaml", "application/x-yaml"}

// adminRoutes are the routes that change the distributor or disclose its
// configuration: /configz, /reload, /admin/... and /debug/pprof/. A web page
// in the user's browser must not be able to use them (package httpguard):
// their Host must name the distributor, browsers' cross-origin writes are
// refused, every write says Content-Type: application/json, and with
// ADMIN_TOKEN set each needs the token.
//
// Ingest (/ingest, the Loki pushes) and the probes (/health, /ready,
// /metrics, /metrics-json) stay open: emitters reach the distributor under
// any name, and their Content-Type rules are the log-streamer's and Loki's.
func (h *handler) adminRoutes(r chi.Router) {
	r.Use(httpguard.NewHosts("ALLOWED_HOSTS", h.Security.AllowedHosts, "distributor").Check, httpguard.SameOrigin,
		httpguard.Bearer(h.Security.AdminToken, "distributor", "ADMIN_TOKEN"))
	jsonOnly := httpguard.JSONOnly()
	r.Get("/configz", h.configz)
	r.With(jsonOnly).Post("/reload", h.reload)
	r.Route("/admin/config", func(r chi.Router) {
		r.Use(httpguard.JSONOnly(yamlTypes...))
		r.Get("/", h.getOverlay)
		r.Put("/", h.putOverlay)
		r.Delete("/", h.deleteOverlay)
	})
	r.Route("/admin/analyzers", func(r chi.Router) {
		r.Use(jsonOnly)
		r.Get("/", h.listAnalyzers)
		r.Put("/{id}/weight", h.setWeight)
		r.Post("/{id}/drain", h.drain(true))
		r.Post("/{id}/undrain", h.drain(false))
	})
	if h.Security.Pprof {
		r.Mount("/debug", middleware.Profiler()) // /debug/pprof/: profile the distributor under load
		return
	}
	r.HandleFunc("/debug/*", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "profiling is off: start the distributor with PPROF=true to serve /debug/pprof/"})
	})
}
