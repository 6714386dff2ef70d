package api

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

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

// ExperimentsResponse is a page of experiments, newest first.
type ExperimentsResponse struct {
	Experiments []experiments.Experiment `json:"experiments"`
	// Next is the cursor of the next page: pass it as after=. Absent on
	// the last page.
	Next string `json:"next,omitempty" example:"1796521426000000000-x-1a2b3c4d5e6f"`
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
//	@Summary		List experiments, newest first, a page at a time
//	@Description	Pages of at most limit experiments (default 20, at most 100), newest first, without their charts (read those in /report). preset keeps the runs of one definition name, state those in one state. The answer's next, when present, is the cursor of the next page: GET /api/experiments?after={next} (with the same filters).
//	@Tags			experiments
//	@Produce		json
//	@Param			preset	query		string	false	"only runs of this definition name, e.g. analyzer-crash"
//	@Param			state	query		string	false	"only runs in this state"	Enums(running,passed,failed,aborted,interrupted)
//	@Param			after	query		string	false	"cursor: the previous page's next"
//	@Param			limit	query		int		false	"page size, 1 to 100 (default 20)"
//	@Success		200		{object}	ExperimentsResponse
//	@Failure		400		{object}	ErrorResponse
//	@Router			/api/experiments [get]
func (h *handler) listExperiments(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var problems apierr.Problems
	states := []string{string(experiments.StateRunning)}
	for _, v := range experiments.Verdicts {
		states = append(states, string(v))
	}
	state := q.Get("state")
	if state != "" && !slices.Contains(states, state) {
		problems.Add("state", "must be one of %s", strings.Join(states, ", "))
	}
	limit := defaultExperimentsPage
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxExperimentsPage {
			problems.Add("limit", "must be an integer from 1 to %d", maxExperimentsPage)
		}
		limit = n
	}
	var after *cursor
	if s := q.Get("after"); s != "" {
		c, err := parseCursor(s)
		if err != nil {
			problems.Add("after", "must be a previous page's next (%v)", err)
		}
		after = &c
	}
	if err := problems.Err("request"); err != nil {
		h.writeError(w, r, err)
		return
	}
	out := ExperimentsResponse{Experiments: []experiments.Experiment{}}
	for _, e := range h.Experiments.List() { // newest first
		if (q.Get("preset") != "" && e.Name != q.Get("preset")) || (state != "" && string(e.State) != state) || (after != nil && !after.precedes(e)) {
			continue
		}
		if len(out.Experiments) == limit {
			last := out.Experiments[limit-1]
			out.Next = cursor{last.StartedAt, last.ID}.String()
			break
		}
		e.Charts = nil // the list is a summary; /report has them
		out.Experiments = append(out.Experiments, e)
	}
	writeJSON(w, http.StatusOK, out)
}

// Paging of GET /api/experiments.
const (
	defaultExperimentsPage = 20
	maxExperimentsPage     = 100
)

// cursor is where a page of experiments (newest first) ended: the start
// and id of its last experiment. It stays valid when that experiment is
// forgotten.
type cursor struct {
	at time.Time
	id string
}

func (c cursor) String() string { return strconv.FormatInt(c.at.UnixNano(), 10) + "-" + c.id }

func parseCursor(s string) (cursor, error) {
	ns, id, ok := strings.Cut(s, "-")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || id == "" {
		return cursor{}, fmt.Errorf("%q is not <nanoseconds>-<id>", s)
	}
	return cursor{time.Unix(0, n), id}, nil
}

// precedes says whether the cursor comes before e in the newest-first
// order (e belongs to a later page).
func (c cursor) precedes(e experiments.Experiment) bool {
	if !e.StartedAt.Equal(c.at) {
		return e.StartedAt.Before(c.at)
	}
	return e.ID < c.id
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
//	@Description	Reverts its active faults, stops its traffic; the verdict is aborted. The run still ends with its report: it waits (up to 30 s) for the traffic job's summary and the last counts, then reads the exact ledger, which waits for the analyzers' backlog (up to LEDGER_TIMEOUT_SECONDS, while processings arrive). Stop it again to end those waits: the report then has the counts and the ledger as they stood (the ledger marked partial, a stopped-again event in the timeline).
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

// experimentHTML godoc
//
//	@Summary		An experiment's report as one self-contained HTML page
//	@Description	A timeline (traffic, each fault as a band with the command run, config changes, detection, recovery, alerts), then charts on the same time axis with the fault bands (message shares, requests by result, p50/p99 latency, consumer lag, healthy analyzers, Kafka write errors, k6 requests and failures), every check with its samples as points, time to detect and recover, the ledger, and links to the same window in Grafana. Inline CSS and SVG, no script and no external asset: it works offline, saved to a file, and prints. The charts are read from Prometheus when the experiment ends and kept with it.
//	@Tags			experiments
//	@Produce		html
//	@Param			id	path		string	true	"experiment id"
//	@Success		200	{string}	string	"the page"
//	@Failure		404	{object}	ErrorResponse
//	@Router			/api/experiments/{id}/report.html [get]
func (h *handler) experimentHTML(w http.ResponseWriter, r *http.Request) {
	e, err := h.Experiments.Get(chi.URLParam(r, "id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeHTML(w, experiments.HTML(e, h.ReportLinks))
}

func writeHTML(w http.ResponseWriter, page []byte) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// The page has no script: a policy that allows none, and nothing from
	// elsewhere, costs nothing and keeps it so.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	w.Write(page)
}

// rerunExperiment godoc
//
//	@Summary		Run an experiment's definition again
//	@Description	Starts a new run with the same definition (a preset's as it was then); compare the two with /api/experiments/compare?a={id}&b={new id}.
//	@Tags			experiments
//	@Produce		json
//	@Param			id	path		string	true	"experiment id"
//	@Success		202	{object}	experiments.Experiment
//	@Header			202	{string}	Location	"/api/experiments/{id}"
//	@Failure		404	{object}	ErrorResponse
//	@Failure		429	{object}	ErrorResponse	"another experiment is running"
//	@Security		BearerToken
//	@Router			/api/experiments/{id}/rerun [post]
func (h *handler) rerunExperiment(w http.ResponseWriter, r *http.Request) {
	e, err := h.Experiments.Get(chi.URLParam(r, "id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.runExperiment(w, r, e.Definition)
}

// comparedPair reads the a and b query parameters' experiments.
func (h *handler) comparedPair(r *http.Request) (experiments.Experiment, experiments.Experiment, error) {
	var problems apierr.Problems
	q := r.URL.Query()
	for _, k := range []string{"a", "b"} {
		if q.Get(k) == "" {
			problems.Add(k, "is required: an experiment id")
		}
	}
	if err := problems.Err("request"); err != nil {
		return experiments.Experiment{}, experiments.Experiment{}, err
	}
	a, err := h.Experiments.Get(q.Get("a"))
	if err != nil {
		return a, a, err
	}
	b, err := h.Experiments.Get(q.Get("b"))
	return a, b, err
}

// compareExperiments godoc
//
//	@Summary		Compare two runs
//	@Description	Whether they ran the same preset, the differences of their definitions (faults, config changes, traffic), verdicts, time to detect and recover, ledgers, every chart of both with times relative to each run's first fault, and the deltas worth noticing (e.g. the p99 latency during the fault).
//	@Tags			experiments
//	@Produce		json
//	@Param			a	query		string	true	"experiment id"
//	@Param			b	query		string	true	"experiment id"
//	@Success		200	{object}	experiments.Comparison
//	@Failure		400	{object}	ErrorResponse
//	@Failure		404	{object}	ErrorResponse
//	@Router			/api/experiments/compare [get]
func (h *handler) compareExperiments(w http.ResponseWriter, r *http.Request) {
	a, b, err := h.comparedPair(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, experiments.Compare(a, b))
}

// compareExperimentsHTML godoc
//
//	@Summary		Compare two runs, as one self-contained HTML page
//	@Description	The comparison of /api/experiments/compare with every chart of both runs overlaid (a solid, b dashed), aligned on each run's first fault.
//	@Tags			experiments
//	@Produce		html
//	@Param			a	query		string	true	"experiment id"
//	@Param			b	query		string	true	"experiment id"
//	@Success		200	{string}	string	"the page"
//	@Failure		400	{object}	ErrorResponse
//	@Failure		404	{object}	ErrorResponse
//	@Router			/api/experiments/compare.html [get]
func (h *handler) compareExperimentsHTML(w http.ResponseWriter, r *http.Request) {
	a, b, err := h.comparedPair(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeHTML(w, experiments.CompareHTML(a, b))
}

// latestPresetReport godoc
//
//	@Summary		The newest run of a preset, as its HTML report
//	@Description	Redirects (302) to /api/experiments/{id}/report.html of the newest run of the preset, so a guide can link to "the report of your last run".
//	@Tags			experiments
//	@Param			name	path	string	true	"preset name"
//	@Success		302
//	@Header			302	{string}	Location	"/api/experiments/{id}/report.html"
//	@Failure		404	{object}	ErrorResponse	"no such preset, or no run of it yet"
//	@Router			/api/experiments/presets/{name}/report.html [get]
func (h *handler) latestPresetReport(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if _, err := h.Experiments.Preset(name); err != nil {
		h.writeError(w, r, err)
		return
	}
	for _, e := range h.Experiments.List() { // newest first
		if e.Name == name {
			http.Redirect(w, r, "/api/experiments/"+e.ID+"/report.html", http.StatusFound)
			return
		}
	}
	h.writeError(w, r, fmt.Errorf("%w: no run of preset %s yet: POST /api/experiments/presets/%s/run (or dsplab run %s --watch)", apierr.ErrNotFound, name, name, name))
}
