package api

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
	"github.com/dsplab/dsplab/platform-api/internal/experiments"
)

// Experiments runs declarative experiments.
type Experiments interface {
	Presets() []experiments.Definition
	Preset(name string) (experiments.Definition, error)
	Start(d experiments.Definition) (experiments.Experiment, error)
	Stop(id string) (experiments.Experiment, error)
	Get(id string) (experiments.Experiment, error)
	List() []experiments.Experiment
}

// ExperimentRequest is POST /api/experiments: a preset's name, or a whole
// definition.
type ExperimentRequest struct {
	Preset     string                  `json:"preset,omitempty" example:"analyzer-crash"`
	Definition *experiments.Definition `json:"definition,omitempty"`
}

// PresetsResponse lists the shipped experiments.
type PresetsResponse struct {
	Presets []experiments.Definition `json:"presets"`
}

// ExperimentsResponse lists experiments.
type ExperimentsResponse struct {
	Experiments []experiments.Experiment `json:"experiments"`
}

// listPresets godoc
//
//	@Summary	List the shipped experiment presets (experiments/*.yaml)
//	@Tags		experiments
//	@Produce	json
//	@Success	200	{object}	PresetsResponse
//	@Router		/api/experiments/presets [get]
func (h *handler) listPresets(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, PresetsResponse{Presets: h.Experiments.Presets()})
}

// startExperiment godoc
//
//	@Summary		Run an experiment
//	@Description	Runs a preset by name or a whole definition: before checks, traffic, faults at their offsets with during checks, revert, recovery window with after checks, verdict passed, failed or aborted. Answers at once; poll the Location, then read /report or /report.md.
//	@Tags			experiments
//	@Accept			json
//	@Produce		json
//	@Param			experiment	body		ExperimentRequest	true	"a preset name or a definition"
//	@Success		202			{object}	experiments.Experiment
//	@Header			202			{string}	Location	"/api/experiments/{id}"
//	@Failure		400			{object}	ErrorResponse	"every invalid field, listed"
//	@Failure		404			{object}	ErrorResponse	"no such preset"
//	@Security		BearerToken
//	@Router			/api/experiments [post]
func (h *handler) startExperiment(w http.ResponseWriter, r *http.Request) {
	var req ExperimentRequest
	if err := decodeStrict(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	var d experiments.Definition
	switch {
	case req.Preset != "" && req.Definition != nil:
		h.writeError(w, r, apierr.Invalid("experiment", "preset", "give a preset or a definition, not both"))
		return
	case req.Preset != "":
		p, err := h.Experiments.Preset(req.Preset)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		d = p
	case req.Definition != nil:
		d = *req.Definition
	default:
		h.writeError(w, r, apierr.Invalid("experiment", "preset", "give a preset name or a definition"))
		return
	}
	h.runExperiment(w, r, d)
}

func (h *handler) runExperiment(w http.ResponseWriter, r *http.Request, d experiments.Definition) {
	e, err := h.Experiments.Start(d)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/experiments/"+e.ID)
	writeJSON(w, http.StatusAccepted, e)
}

// runPreset godoc
//
//	@Summary	Run a preset by name
//	@Tags		experiments
//	@Produce	json
//	@Param		name	path		string	true	"preset name"
//	@Success	202		{object}	experiments.Experiment
//	@Failure	404		{object}	ErrorResponse
//	@Security	BearerToken
//	@Router		/api/experiments/presets/{name}/run [post]
func (h *handler) runPreset(w http.ResponseWriter, r *http.Request) {
	d, err := h.Experiments.Preset(chi.URLParam(r, "name"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.runExperiment(w, r, d)
}

// listExperiments godoc
//
//	@Summary	List experiments, newest first
//	@Tags		experiments
//	@Produce	json
//	@Success	200	{object}	ExperimentsResponse
//	@Router		/api/experiments [get]
func (h *handler) listExperiments(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, ExperimentsResponse{Experiments: h.Experiments.List()})
}

// getExperiment godoc
//
//	@Summary	Get an experiment and its report (JSON)
//	@Tags		experiments
//	@Produce	json
//	@Param		id	path		string	true	"experiment id"
//	@Success	200	{object}	experiments.Experiment
//	@Failure	404	{object}	ErrorResponse
//	@Router		/api/experiments/{id} [get]
//	@Router		/api/experiments/{id}/report [get]
func (h *handler) getExperiment(w http.ResponseWriter, r *http.Request) {
	e, err := h.Experiments.Get(chi.URLParam(r, "id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

// experimentMarkdown godoc
//
//	@Summary	An experiment's report as Markdown
//	@Tags		experiments
//	@Produce	text/markdown
//	@Param		id	path		string	true	"experiment id"
//	@Success	200	{string}	string	"the report"
//	@Failure	404	{object}	ErrorResponse
//	@Router		/api/experiments/{id}/report.md [get]
func (h *handler) experimentMarkdown(w http.ResponseWriter, r *http.Request) {
	e, err := h.Experiments.Get(chi.URLParam(r, "id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
	w.Write([]byte(experiments.Markdown(e)))
}

// stopExperiment godoc
//
//	@Summary		Abort a running experiment
//	@Description	Reverts its active faults, stops its traffic; the verdict is aborted.
//	@Tags			experiments
//	@Produce		json
//	@Param			id	path		string	true	"experiment id"
//	@Success		200	{object}	experiments.Experiment
//	@Failure		404	{object}	ErrorResponse
//	@Security		BearerToken
//	@Router			/api/experiments/{id}/stop [post]
func (h *handler) stopExperiment(w http.ResponseWriter, r *http.Request) {
	e, err := h.Experiments.Stop(chi.URLParam(r, "id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}
