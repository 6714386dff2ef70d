package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/alerts"
	"github.com/dsplab/dsplab/platform-api/internal/apierr"
)

// Alerts stores what Alertmanager sends.
type Alerts interface {
	Add(n alerts.Notification, now time.Time) int
	Since(t time.Time) []alerts.Alert
	Total() int
}

// AlertsResponse is GET /api/alerts.
type AlertsResponse struct {
	// Total alerts received since the platform started.
	Total  int            `json:"total" example:"3"`
	Alerts []alerts.Alert `json:"alerts"`
}

// WebhookResponse acknowledges a notification.
type WebhookResponse struct {
	Received int `json:"received" example:"2"`
}

// alertWebhook godoc
//
//	@Summary		Alertmanager webhook receiver
//	@Description	Point an Alertmanager webhook_configs receiver here (url: http://platform-api:5050/api/alerts/webhook). Received alerts are listed by GET /api/alerts and feed experiment reports.
//	@Tags			alerts
//	@Accept			json
//	@Produce		json
//	@Param			notification	body		alerts.Notification	true	"Alertmanager's webhook body (version 4)"
//	@Success		200				{object}	WebhookResponse
//	@Failure		400				{object}	ErrorResponse
//	@Security		BearerToken
//	@Router			/api/alerts/webhook [post]
func (h *handler) alertWebhook(w http.ResponseWriter, r *http.Request) {
	var n alerts.Notification
	// Lenient on unknown fields: Alertmanager adds fields across versions.
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20)).Decode(&n); err != nil {
		h.writeError(w, r, apierr.Invalid("alert notification", "body", "not an Alertmanager webhook notification: %v", err))
		return
	}
	if n.Alerts == nil {
		h.writeError(w, r, apierr.Invalid("alert notification", "alerts", "is required"))
		return
	}
	writeJSON(w, http.StatusOK, WebhookResponse{Received: h.Alerts.Add(n, time.Now().UTC())})
}

// listAlerts godoc
//
//	@Summary	Alerts received from Alertmanager, oldest first
//	@Tags		alerts
//	@Produce	json
//	@Param		since	query		string	false	"RFC 3339 time: only alerts received since"
//	@Success	200		{object}	AlertsResponse
//	@Failure	400		{object}	ErrorResponse
//	@Failure	401		{object}	ErrorResponse	"PLATFORM_API_TOKEN is set and the request has not got it"
//	@Security	BearerToken
//	@Router		/api/alerts [get]
func (h *handler) listAlerts(w http.ResponseWriter, r *http.Request) {
	var since time.Time
	if s := r.URL.Query().Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			h.writeError(w, r, apierr.Invalid("request", "since", "must be an RFC 3339 time"))
			return
		}
		since = t
	}
	out := AlertsResponse{Total: h.Alerts.Total(), Alerts: h.Alerts.Since(since)}
	if out.Alerts == nil {
		out.Alerts = []alerts.Alert{}
	}
	writeJSON(w, http.StatusOK, out)
}
