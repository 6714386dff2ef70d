package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
	"github.com/dsplab/dsplab/platform-api/internal/faults"
)

// FaultRequest is POST /api/faults.
type FaultRequest struct {
	// Type of fault.
	Type string `json:"type" example:"pause" enums:"pause,stop,kill,restart,cpu,memory,delay,loss,duplicate,corrupt,rate,partition"`
	// Target is a compose service (or container) name from GET /api/targets.
	Target string `json:"target" example:"analyzer-2"`
	// DurationSeconds until the fault is reverted (not for restart).
	DurationSeconds float64 `json:"durationSeconds" example:"15"`
	// Signal for kill (default SIGKILL).
	Signal string `json:"signal,omitempty" example:"SIGKILL"`
	// CPUs for cpu: the CPU limit, e.g. 0.2.
	CPUs float64 `json:"cpus,omitempty" example:"0.2"`
	// MemoryMB for memory: the memory limit in MiB (at least 6).
	MemoryMB int `json:"memoryMB,omitempty" example:"64"`
	// AllowInfra must be true to target a service labelled dsplab.role=infra.
	AllowInfra bool `json:"allowInfra,omitempty" example:"false"`
	// DelayMs for delay: added latency of the target's egress traffic.
	DelayMs int `json:"delayMs,omitempty" example:"100"`
	// JitterMs for delay: random variation (at most delayMs).
	JitterMs int `json:"jitterMs,omitempty" example:"10"`
	// Correlation in percent for delay (needs jitterMs above 0), loss, duplicate and corrupt.
	Correlation float64 `json:"correlation,omitempty" example:"20"`
	// Distribution for delay (needs jitterMs above 0).
	Distribution string `json:"distribution,omitempty" example:"normal" enums:"uniform,normal,pareto,paretonormal"`
	// Percent of packets for loss, duplicate and corrupt.
	Percent float64 `json:"percent,omitempty" example:"10"`
	// Rate for rate: digits then bit, kbit, mbit or gbit (Pumba's grammar), e.g. 1mbit.
	Rate string `json:"rate,omitempty" example:"1mbit"`
	// Peer for partition: the service cut off from target, in both directions.
	Peer string `json:"peer,omitempty" example:"kafka"`
}

// FaultResponse is one fault's record.
type FaultResponse struct {
	ID          string            `json:"id" example:"f-1a2b3c4d5e6f"`
	Type        string            `json:"type" example:"pause"`
	Target      string            `json:"target" example:"analyzer-2"`
	Container   string            `json:"container" example:"dsplab-analyzer-2-1"`
	ContainerID string            `json:"containerId"`
	Peer        string            `json:"peer,omitempty" example:"kafka"`
	Params      map[string]string `json:"params,omitempty"`
	// State: reverting while the revert is under way, or failed and
	// retried with backoff (revertAttempts, error and nextRevertAt).
	State string `json:"state" example:"active" enums:"active,reverting,reverted,completed,failed"`
	// Command is the equivalent docker or Pumba command line.
	Command   string     `json:"command" example:"docker pause dsplab-analyzer-2-1"`
	StartedAt time.Time  `json:"startedAt"`
	EndsAt    *time.Time `json:"endsAt,omitempty"`
	EndedAt   *time.Time `json:"endedAt,omitempty"`
	EndReason string     `json:"endReason,omitempty" example:"duration elapsed"`
	// Error is why the fault failed, or while it is reverting, why the
	// last revert attempt failed.
	Error string `json:"error,omitempty"`
	// RevertAttempts counts the tries of the revert so far.
	RevertAttempts int `json:"revertAttempts,omitempty" example:"1"`
	// NextRevertAt is when a revert that failed is tried again.
	NextRevertAt *time.Time `json:"nextRevertAt,omitempty"`
	// Cleanup is the removal of rules a network fault may have left
	// behind (after a platform restart, or when Pumba failed): pending,
	// done, or failed with what could not be removed.
	Cleanup string `json:"cleanup,omitempty" example:"done"`
}

// FaultsResponse is a list of faults.
type FaultsResponse struct {
	Faults []FaultResponse `json:"faults"`
}

func toResponse(f faults.Fault) FaultResponse {
	return FaultResponse{ID: f.ID, Type: string(f.Type), Target: f.Target, Container: f.Container, ContainerID: f.ContainerID, Peer: f.Peer,
		Params: f.Params, State: f.State, Command: f.Command, StartedAt: f.StartedAt, EndsAt: f.EndsAt, EndedAt: f.EndedAt,
		EndReason: f.EndReason, Error: f.Error, RevertAttempts: f.RevertAttempts, NextRevertAt: f.NextRevertAt, Cleanup: f.Cleanup}
}

// decodeStrict decodes one JSON object, rejecting unknown fields, and names
// the field at fault.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		return apierr.Invalid("request", "body", "%s", err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			return apierr.Invalid("request", te.Field, "must be a %s, not a JSON %s", te.Type, te.Value)
		case errors.As(err, &se):
			return apierr.Invalid("request", "body", "not JSON at byte %d: %v", se.Offset, err)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return apierr.Invalid("request", strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "is not a known field")
		}
		return apierr.Invalid("request", "body", "%s", err.Error())
	}
	return nil
}

// startFault godoc
//
//	@Summary		Inject a fault
//	@Description	Applies a fault to a target container and schedules its revert after durationSeconds. Container faults through the Docker API: pause, stop, kill (signal), restart, cpu (limit), memory (limit). Network faults as Pumba netem job containers: delay (delayMs, jitterMs, correlation, distribution), loss, duplicate, corrupt (percent, correlation), rate (rate), partition (target and peer cut off from each other, both directions). The record shows the equivalent docker or Pumba command. Conflicting faults (two state faults on one container, two of the same resource, two network faults touching one container) answer 409.
//	@Tags			faults
//	@Accept			json
//	@Produce		json
//	@Param			fault	body		FaultRequest	true	"the fault"
//	@Success		201		{object}	FaultResponse
//	@Header			201		{string}	Location	"/api/faults/{id}"
//	@Failure		400		{object}	ErrorResponse	"every invalid field, listed"
//	@Failure		401		{object}	ErrorResponse
//	@Failure		403		{object}	ErrorResponse	"an infra service without allowInfra"
//	@Failure		404		{object}	ErrorResponse	"no such target"
//	@Failure		409		{object}	ErrorResponse	"a conflicting fault is active"
//	@Failure		429		{object}	ErrorResponse	"too many active faults"
//	@Failure		501		{object}	ErrorResponse	"network faults without a Pumba image configured; or delay, loss, duplicate, corrupt or rate on an engine whose kernel has no netem qdisc ("netem is missing in this kernel", with tc's words; run them in the netem VM: make e2e-netem)"
//	@Failure		503		{object}	ErrorResponse	"a network fault's Pumba or nettools image is not on the engine and could not be pulled (names the image and the cause), or is still pulling (Retry-After)"
//	@Security		BearerToken
//	@Router			/api/faults [post]
func (h *handler) startFault(w http.ResponseWriter, r *http.Request) {
	var req FaultRequest
	if err := decodeStrict(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	spec := faults.Spec{Type: faults.Type(req.Type), Target: req.Target, Duration: time.Duration(req.DurationSeconds * float64(time.Second)),
		Signal: req.Signal, CPUs: req.CPUs, MemoryMB: req.MemoryMB, AllowInfra: req.AllowInfra,
		DelayMs: req.DelayMs, JitterMs: req.JitterMs, Correlation: req.Correlation, Distribution: req.Distribution,
		Percent: req.Percent, Rate: req.Rate, Peer: req.Peer}
	// The fault outlives the request: it runs under the platform's own
	// context inside the manager, never the request's.
	f, err := h.Faults.Start(r.Context(), spec)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/faults/"+f.ID)
	writeJSON(w, http.StatusCreated, toResponse(f))
}

// listFaults godoc
//
//	@Summary	List faults, newest first
//	@Tags		faults
//	@Produce	json
//	@Param		state	query		string	false	"only faults in this state"	Enums(active, reverted, completed, failed)
//	@Success	200		{object}	FaultsResponse
//	@Router		/api/faults [get]
func (h *handler) listFaults(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	out := FaultsResponse{Faults: []FaultResponse{}}
	for _, f := range h.Faults.List() {
		if state == "" || f.State == state {
			out.Faults = append(out.Faults, toResponse(f))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// getFault godoc
//
//	@Summary	Get one fault
//	@Tags		faults
//	@Produce	json
//	@Param		id	path		string	true	"fault id"
//	@Success	200	{object}	FaultResponse
//	@Failure	404	{object}	ErrorResponse
//	@Router		/api/faults/{id} [get]
func (h *handler) getFault(w http.ResponseWriter, r *http.Request) {
	f, err := h.Faults.Get(chi.URLParam(r, "id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toResponse(f))
}

// stopFault godoc
//
//	@Summary		Stop a fault early (revert it now)
//	@Description	Reverts the fault now and answers its record. A fault already ended answers its record as it is. When the engine refuses the revert, the answer is 502 naming the failure: the fault stays reverting (it still holds its container) and is retried with backoff, as GET shows (revertAttempts, error, nextRevertAt); stopping it again tries again at once.
//	@Tags			faults
//	@Produce		json
//	@Param			id	path		string	true	"fault id"
//	@Success		200	{object}	FaultResponse
//	@Failure		404	{object}	ErrorResponse
//	@Failure		502	{object}	ErrorResponse	"the revert failed; it is retried in the background"
//	@Security		BearerToken
//	@Router			/api/faults/{id}/stop [post]
//	@Router			/api/faults/{id} [delete]
func (h *handler) stopFault(w http.ResponseWriter, r *http.Request) {
	f, err := h.Faults.StopFault(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toResponse(f))
}

// resetFaults godoc
//
//	@Summary	Revert every active fault
//	@Tags		faults
//	@Produce	json
//	@Success	200	{object}	FaultsResponse
//	@Failure	502	{object}	ErrorResponse	"some faults could not be reverted: they stay reverting and are retried in the background"
//	@Security	BearerToken
//	@Router		/api/faults/reset [post]
func (h *handler) resetFaults(w http.ResponseWriter, r *http.Request) {
	fs, err := h.Faults.Reset(r.Context())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := FaultsResponse{Faults: make([]FaultResponse, len(fs))}
	for i, f := range fs {
		out.Faults[i] = toResponse(f)
	}
	writeJSON(w, http.StatusOK, out)
}
