package api

import (
	"net/http"
)

// TargetResponse is one container of the project.
type TargetResponse struct {
	Service string            `json:"service" example:"analyzer-2"`
	Name    string            `json:"name" example:"dsplab-analyzer-2-1"`
	ID      string            `json:"id"`
	Role    string            `json:"role" example:"target" enums:"target,infra"`
	Image   string            `json:"image"`
	State   string            `json:"state" example:"running"`
	Health  string            `json:"health,omitempty" example:"healthy"`
	IPs     map[string]string `json:"ips"`
}

// TargetsResponse is GET /api/targets.
type TargetsResponse struct {
	Project string           `json:"project" example:"dsplab"`
	Targets []TargetResponse `json:"targets"`
}

// listTargets godoc
//
//	@Summary		List the stack's containers
//	@Description	Every container of the platform's compose project: compose service, state, health, IPs and role. Services with role infra can only be targeted with allowInfra.
//	@Tags			targets
//	@Produce		json
//	@Success		200	{object}	TargetsResponse
//	@Failure		401	{object}	ErrorResponse	"PLATFORM_API_TOKEN is set and the request has not got it"
//	@Failure		500	{object}	ErrorResponse
//	@Security		BearerToken
//	@Router			/api/targets [get]
func (h *handler) listTargets(w http.ResponseWriter, r *http.Request) {
	ts, err := h.Targets.Targets(r.Context())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := TargetsResponse{Project: h.Targets.Project(), Targets: make([]TargetResponse, len(ts))}
	for i, t := range ts {
		out.Targets[i] = TargetResponse{Service: t.Service, Name: t.Name, ID: t.ID, Role: t.Role, Image: t.Image, State: t.State, Health: t.Health, IPs: t.IPs}
	}
	writeJSON(w, http.StatusOK, out)
}
