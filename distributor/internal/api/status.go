package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"go.yaml.in/yaml/v3"

	"github.com/dsplab/dsplab/distributor/internal/ingest"
)

// healthBody is the log-streamer's /health shape.
type healthBody struct {
	Status           string `json:"status"`
	HealthyAnalyzers int    `json:"healthy_analyzers"`
	TotalAnalyzers   int    `json:"total_analyzers"`
	Timestamp        string `json:"timestamp"`
}

func (h *handler) health(w http.ResponseWriter, r *http.Request) {
	st := h.Analyzers.Statuses()
	b := healthBody{Status: "healthy", TotalAnalyzers: len(st), Timestamp: time.Now().UTC().Format(time.RFC3339)}
	for _, s := range st {
		if s.Up {
			b.HealthyAnalyzers++
		}
	}
	code := http.StatusOK
	if b.HealthyAnalyzers == 0 {
		b.Status, code = "unhealthy", http.StatusServiceUnavailable
	}
	writeJSON(w, code, b)
}

func (h *handler) ready(w http.ResponseWriter, r *http.Request) {
	if err := h.Ready(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// metricsJSONBody is the log-streamer's /metrics-json shape, counted at
// routing time (when the packet is acknowledged by Kafka).
type metricsJSONBody struct {
	TotalPackets         int64            `json:"total_packets"`
	TotalMessages        int64            `json:"total_messages"`
	PacketsByAnalyzer    map[string]int64 `json:"packets_by_analyzer"`
	MessagesByAnalyzer   map[string]int64 `json:"messages_by_analyzer"`
	QueueDepthByAnalyzer map[string]int64 `json:"queue_depth_by_analyzer"`
	HealthyAnalyzers     int              `json:"healthy_analyzers"`
	TotalAnalyzers       int              `json:"total_analyzers"`
	Timestamp            string           `json:"timestamp"`
}

func (h *handler) metricsJSON(w http.ResponseWriter, r *http.Request) {
	packets, messages, by := h.Pipeline.Totals()
	b := metricsJSONBody{
		TotalPackets: packets, TotalMessages: messages,
		PacketsByAnalyzer: map[string]int64{}, MessagesByAnalyzer: map[string]int64{}, QueueDepthByAnalyzer: map[string]int64{},
		Timestamp: time.Now().UTC().Format(time.RFC3339),
	}
	for _, s := range h.Analyzers.Statuses() {
		b.TotalAnalyzers++
		if s.Up {
			b.HealthyAnalyzers++
		}
		b.QueueDepthByAnalyzer[s.ID] = s.Lag
		b.PacketsByAnalyzer[s.ID], b.MessagesByAnalyzer[s.ID] = by[s.ID][0], by[s.ID][1]
	}
	writeJSON(w, http.StatusOK, b)
}

// configz shows the effective configuration (secrets redacted) as YAML,
// the format of the file, so it can be copied into one. ?format=json gives
// JSON (durations in nanoseconds).
func (h *handler) configz(w http.ResponseWriter, r *http.Request) {
	cfg := h.Config().Redacted()
	if r.URL.Query().Get("format") == "json" {
		writeJSON(w, http.StatusOK, cfg)
		return
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		writeError(w, &httpError{status: http.StatusInternalServerError, result: resultError, body: errorBody{Error: err.Error()}})
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(b)
}

func (h *handler) reload(w http.ResponseWriter, r *http.Request) {
	if err := h.Reload(r.Context()); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "reload failed, previous configuration kept: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "reloaded"})
}

// overlayBody is the shape of GET /admin/config.
type overlayBody struct {
	// Overlay is the YAML in force on top of file and environment.
	Overlay string `json:"overlay"`
}

func (h *handler) getOverlay(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, overlayBody{Overlay: string(h.Overlay())})
}

// putOverlay sets the run-time overlay: a YAML or JSON document of the
// config file's shape (e.g. {"limits":{"global":{"rate":500,"burst":500}}}),
// applied on top of file and environment and validated like a reload. An
// invalid one is rejected with 400 and changes nothing.
func (h *handler) putOverlay(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: "overlay body: " + err.Error()})
		return
	}
	if len(bytes.TrimSpace(b)) == 0 {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "empty overlay: send a YAML or JSON document of the config file's shape, or DELETE to clear it"})
		return
	}
	if err := h.SetOverlay(r.Context(), b); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "overlay rejected, previous configuration kept: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "reloaded"})
}

func (h *handler) deleteOverlay(w http.ResponseWriter, r *http.Request) {
	if err := h.SetOverlay(r.Context(), nil); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "reload without the overlay failed, previous configuration kept: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "reloaded"})
}

func (h *handler) listAnalyzers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"analyzers": h.Analyzers.Statuses()})
}

type weightRequest struct {
	Weight *float64 `json:"weight"`
}

func (h *handler) setWeight(w http.ResponseWriter, r *http.Request) {
	var req weightRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, badRequest("body must be {\"weight\": <number>}: "+err.Error()))
		return
	}
	if req.Weight == nil || *req.Weight < 0 || *req.Weight > 1e6 || *req.Weight != *req.Weight {
		writeError(w, badRequest("invalid weight", ingest.Problem{Field: "weight", Problem: "is required and must be a number from 0 to 1e6"}))
		return
	}
	id := chi.URLParam(r, "id")
	if !h.Analyzers.SetWeight(id, *req.Weight) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "no analyzer " + id})
		return
	}
	h.Logger.InfoContext(r.Context(), "analyzer weight set", "analyzer", id, "weight", *req.Weight)
	h.listAnalyzers(w, r)
}

func (h *handler) drain(drained bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "id")
		if !h.Analyzers.SetDrained(id, drained) {
			writeJSON(w, http.StatusNotFound, errorBody{Error: "no analyzer " + id})
			return
		}
		h.Logger.InfoContext(r.Context(), "analyzer drain changed", "analyzer", id, "drained", drained)
		h.listAnalyzers(w, r)
	}
}
