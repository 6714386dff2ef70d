package api

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/dsplab/dsplab/platform-api/internal/traffic"
)

// Traffic runs k6 jobs.
type Traffic interface {
	Start(ctx context.Context, s traffic.Spec) (traffic.Job, error)
	Stop(ctx context.Context, id string) (traffic.Job, error)
	Get(id string) (traffic.Job, error)
	List() []traffic.Job
}

// TrafficRequest is POST /api/traffic/start. The platform seed's body
// {"targetUrl","rps","durationSeconds"} is accepted as is.
type TrafficRequest struct {
	// TargetURL is the base URL of the service under load, as seen from the
	// stack's network (a path naming the script's endpoint is accepted).
	TargetURL string `json:"targetUrl" example:"http://distributor:8080"`
	// RPS is the request (packet) rate; for ramp and spike the profile's
	// parameters shape it from there.
	RPS float64 `json:"rps" example:"300"`
	// DurationSeconds of the run.
	DurationSeconds float64 `json:"durationSeconds" example:"60"`
	// Script to run (k6/<script>.js).
	Script string `json:"script,omitempty" example:"ingest-packets" enums:"ingest-packets,loki-push,service-chain"`
	// Profile of the arrival rate.
	Profile string `json:"profile,omitempty" example:"constant" enums:"constant,ramp,spike,burst,stochastic"`
	// Params are the script's and profile's other variables, e.g.
	// MAX_MESSAGES, TENANTS, RETRIES, RAMP_TO, SPIKE_PEAK, SEED,
	// THRESHOLD_P95_MS, ABORT_ON_FAIL (see README, k6 section).
	Params map[string]string `json:"params,omitempty" example:"MIN_MESSAGES:1,MAX_MESSAGES:20"`
}

// TrafficJobResponse is one k6 job.
type TrafficJobResponse struct {
	ID              string            `json:"id" example:"t-1a2b3c4d5e6f"`
	Script          string            `json:"script" example:"ingest-packets"`
	Profile         string            `json:"profile" example:"constant"`
	TargetURL       string            `json:"targetUrl" example:"http://distributor:8080"`
	RPS             float64           `json:"rps" example:"300"`
	DurationSeconds float64           `json:"durationSeconds" example:"60"`
	Params          map[string]string `json:"params,omitempty"`
	State           string            `json:"state" example:"running" enums:"running,finished,failed,stopped"`
	// Progress is the elapsed share of the planned duration, 0..1.
	Progress    float64    `json:"progress" example:"0.5"`
	ContainerID string     `json:"containerId"`
	StartedAt   time.Time  `json:"startedAt"`
	EndedAt     *time.Time `json:"endedAt,omitempty"`
	ExitCode    *int64     `json:"exitCode,omitempty"`
	Error       string     `json:"error,omitempty"`
	// Command is the k6 command line the job container runs.
	Command string `json:"command"`
	// Summary is the k6 JSON summary (plan, overview, thresholds) once the
	// job has ended.
	Summary json.RawMessage `json:"summary,omitempty" swaggertype:"object"`
}

// TrafficJobsResponse lists jobs.
type TrafficJobsResponse struct {
	Jobs []TrafficJobResponse `json:"jobs"`
}

func trafficResponse(j traffic.Job) TrafficJobResponse {
	return TrafficJobResponse{ID: j.ID, Script: j.Script, Profile: j.Profile, TargetURL: j.TargetURL, RPS: j.RPS,
		DurationSeconds: j.Duration.Seconds(), Params: j.Params, State: j.State, Progress: j.Progress(time.Now()),
		ContainerID: j.ContainerID, StartedAt: j.StartedAt, EndedAt: j.EndedAt, ExitCode: j.ExitCode, Error: j.Error,
		Command: j.Command, Summary: j.Summary}
}

// startTraffic godoc
//
//	@Summary		Start traffic (a k6 job)
//	@Description	Runs a k6 job container with a shipped script on the stack's network; its metrics go to Prometheus by remote write, tagged job_id. Answers at once with the job; poll its Location for progress and, at the end, the k6 summary.
//	@Tags			traffic
//	@Accept			json
//	@Produce		json
//	@Param			job	body		TrafficRequest	true	"the traffic to send"
//	@Success		202	{object}	TrafficJobResponse
//	@Header			202	{string}	Location	"/api/traffic/{id}"
//	@Failure		400	{object}	ErrorResponse	"every invalid field, listed"
//	@Failure		401	{object}	ErrorResponse
//	@Failure		429	{object}	ErrorResponse	"too many jobs running"
//	@Failure		503	{object}	ErrorResponse	"the k6 image is not on the engine and could not be pulled (names the image and the cause), or is still pulling (Retry-After)"
//	@Security		BearerToken
//	@Router			/api/traffic/start [post]
func (h *handler) startTraffic(w http.ResponseWriter, r *http.Request) {
	var req TrafficRequest
	if err := decodeStrict(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	j, err := h.Traffic.Start(r.Context(), traffic.Spec{TargetURL: req.TargetURL, RPS: req.RPS,
		Duration: time.Duration(req.DurationSeconds * float64(time.Second)), Script: req.Script, Profile: req.Profile, Params: req.Params})
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/traffic/"+j.ID)
	writeJSON(w, http.StatusAccepted, trafficResponse(j))
}

// listTraffic godoc
//
//	@Summary	List traffic jobs, newest first
//	@Tags		traffic
//	@Produce	json
//	@Success	200	{object}	TrafficJobsResponse
//	@Router		/api/traffic [get]
func (h *handler) listTraffic(w http.ResponseWriter, r *http.Request) {
	out := TrafficJobsResponse{Jobs: []TrafficJobResponse{}}
	for _, j := range h.Traffic.List() {
		out.Jobs = append(out.Jobs, trafficResponse(j))
	}
	writeJSON(w, http.StatusOK, out)
}

// getTraffic godoc
//
//	@Summary	Get one traffic job: status, progress, summary
//	@Tags		traffic
//	@Produce	json
//	@Param		id	path		string	true	"job id"
//	@Success	200	{object}	TrafficJobResponse
//	@Failure	404	{object}	ErrorResponse
//	@Router		/api/traffic/{id} [get]
func (h *handler) getTraffic(w http.ResponseWriter, r *http.Request) {
	j, err := h.Traffic.Get(chi.URLParam(r, "id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, trafficResponse(j))
}

// stopTraffic godoc
//
//	@Summary		Stop a traffic job early
//	@Description	Sends k6 SIGTERM: it stops its scenarios and still writes its summary.
//	@Tags			traffic
//	@Produce		json
//	@Param			id	path		string	true	"job id"
//	@Success		200	{object}	TrafficJobResponse
//	@Failure		404	{object}	ErrorResponse
//	@Security		BearerToken
//	@Router			/api/traffic/{id}/stop [post]
func (h *handler) stopTraffic(w http.ResponseWriter, r *http.Request) {
	j, err := h.Traffic.Stop(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, trafficResponse(j))
}
