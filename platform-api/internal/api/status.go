package api

import (
	"context"
	"net/http"
	"time"
)

// Images reports the job images (k6, Pumba, nettools) the platform ensures.
type Images interface {
	ImageStates() map[string]string
	Ping(ctx context.Context) error
}

// StatusResponse is GET /api/status.
type StatusResponse struct {
	Project string `json:"project" example:"dsplab"`
	// Docker is "ok" or why the engine does not answer.
	Docker string `json:"docker" example:"ok"`
	// Images maps each job image to "checking", "present", "pulling N%
	// (done/all layers, MB of MB)" or "failed: cause". They are pulled in
	// the background at start-up, and before a job if still missing.
	Images map[string]string `json:"images"`
}

// status godoc
//
//	@Summary		Platform status: Docker engine and job images
//	@Description	Whether the Docker engine answers, and the state of each job image (k6, Pumba, Pumba's nettools). A job whose image is still pulling waits for that pull; one whose pull failed is answered 503 naming the image and the cause.
//	@Tags			platform
//	@Produce		json
//	@Success		200	{object}	StatusResponse
//	@Router			/api/status [get]
func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	out := StatusResponse{Project: h.Targets.Project(), Docker: "ok", Images: map[string]string{}}
	if h.Images != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := h.Images.Ping(ctx); err != nil {
			out.Docker = err.Error()
		}
		out.Images = h.Images.ImageStates()
	}
	writeJSON(w, http.StatusOK, out)
}
