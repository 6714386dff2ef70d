package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/dsplab/dsplab/platform-api/internal/distributor"
)

// Distributor is the distributor's run-time configuration overlay.
type Distributor interface {
	URL() string
	Overlay(ctx context.Context) (string, error)
	SetOverlay(ctx context.Context, overlay []byte) error
}

// DistributorConfigResponse is the overlay in force.
type DistributorConfigResponse struct {
	Distributor string `json:"distributor" example:"http://distributor:8080"`
	// Overlay is the document in force on top of the distributor's file
	// and environment ("" when none).
	Overlay string `json:"overlay" example:"{\"limits\":{\"global\":{\"rate\":100,\"burst\":100}}}"`
}

// getDistributorConfig godoc
//
//	@Summary		The distributor's run-time configuration overlay
//	@Description	What PUT set on top of the distributor's file and environment (its effective config is at the distributor's GET /configz).
//	@Tags			distributor
//	@Produce		json
//	@Success		200	{object}	DistributorConfigResponse
//	@Failure		401	{object}	ErrorResponse	"PLATFORM_API_TOKEN is set and the request has not got it"
//	@Failure		502	{object}	ErrorResponse	"the distributor cannot be reached"
//	@Security		BearerToken
//	@Router			/api/distributor/config [get]
func (h *handler) getDistributorConfig(w http.ResponseWriter, r *http.Request) {
	ov, err := h.Distributor.Overlay(r.Context())
	if err != nil {
		h.distributorError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, DistributorConfigResponse{Distributor: h.Distributor.URL(), Overlay: ov})
}

// setDistributorConfig godoc
//
//	@Summary		Hot-reload the distributor with a configuration overlay
//	@Description	The body is a JSON object of the distributor's config file shape, usually partial: limits (global and per-tenant rate limits), analyzers (the whole list, with weights), routing (strategy weighted or tenant-hash), kafka, health, sla. It replaces the previous overlay, is applied on top of the file and environment, and is validated like a reload: an invalid one is refused with 400 and every problem, and changes nothing. Under traffic, no request fails because of it.
//	@Tags			distributor
//	@Accept			json
//	@Produce		json
//	@Param			overlay	body		object	true	"partial config"	example({"limits":{"global":{"rate":100,"burst":100}}})
//	@Success		200		{object}	DistributorConfigResponse
//	@Failure		400		{object}	ErrorResponse	"not a JSON object, or refused by the distributor (reasons given)"
//	@Failure		502		{object}	ErrorResponse	"the distributor cannot be reached"
//	@Security		BearerToken
//	@Router			/api/distributor/config [put]
func (h *handler) setDistributorConfig(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, ErrorResponse{Error: "body: " + err.Error()})
		return
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil || len(obj) == 0 {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: "the body must be a non-empty JSON object of the distributor's config shape, e.g. {\"limits\":{\"global\":{\"rate\":100,\"burst\":100}}}; DELETE clears the overlay"})
		return
	}
	if err := h.Distributor.SetOverlay(r.Context(), b); err != nil {
		h.distributorError(w, err)
		return
	}
	h.getDistributorConfig(w, r)
}

// clearDistributorConfig godoc
//
//	@Summary	Clear the overlay: back to the distributor's file and environment
//	@Tags		distributor
//	@Produce	json
//	@Success	200	{object}	DistributorConfigResponse
//	@Failure	400	{object}	ErrorResponse	"the file and environment alone do not validate (reasons given)"
//	@Failure	502	{object}	ErrorResponse	"the distributor cannot be reached"
//	@Security	BearerToken
//	@Router		/api/distributor/config [delete]
func (h *handler) clearDistributorConfig(w http.ResponseWriter, r *http.Request) {
	if err := h.Distributor.SetOverlay(r.Context(), nil); err != nil {
		h.distributorError(w, err)
		return
	}
	h.getDistributorConfig(w, r)
}

func (h *handler) distributorError(w http.ResponseWriter, err error) {
	var de *distributor.Error
	if errors.As(err, &de) && de.Status < 500 {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: de.Message})
		return
	}
	writeJSON(w, http.StatusBadGateway, ErrorResponse{Error: err.Error()})
}
