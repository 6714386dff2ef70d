package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/alerts"
	"github.com/dsplab/dsplab/platform-api/internal/apierr"
)

// Alerts stores what Alertmanager sends.
type Alerts interface {
	Add(n alerts.Notification, now time.Time) int
	Page(since time.Time, after int64, limit int) ([]alerts.Alert, int64)
	Total() int
}

// AlertsResponse is GET /api/alerts: one page, oldest first.
type AlertsResponse struct {
	// Total alerts received since the platform started (the store keeps
	// the newest 1,000, 16 MiB at most).
	Total  int            `json:"total" example:"3"`
	Alerts []alerts.Alert `json:"alerts"`
	// Next is the cursor of the next page: pass it as after=. Absent on
	// the last page.
	Next int64 `json:"next,omitempty" example:"100"`
}

// Paging of GET /api/alerts.
const (
	defaultAlertsPage = 100
	maxAlertsPage     = 1000
)

// WebhookResponse acknowledges a notification.
type WebhookResponse struct {
	Received int `json:"received" example:"2"`
}

// alertWebhook godoc
//
//	@Summary		Alertmanager webhook receiver
//	@Description	Point an Alertmanager webhook_configs receiver here (url: http://platform-api:5050/api/alerts/webhook). Received alerts are listed by GET /api/alerts and feed experiment reports. Each alert is kept within 64 KiB (longer values cut, then the largest annotations and labels dropped; marked truncated), and the store keeps the newest 1,000 alerts within 16 MiB.
//	@Tags			alerts
//	@Accept			json
//	@Produce		json
//	@Param			notification	body		alerts.Notification	true	"Alertmanager's webhook body (version 4)"
//	@Success		200				{object}	WebhookResponse
//	@Failure		400				{object}	ErrorResponse
//	@Failure		503				{object}	ErrorResponse	"4 notifications are being read already and none ended within 10 s (Retry-After)"
//	@Security		BearerToken
//	@Router			/api/alerts/webhook [post]
func (h *handler) alertWebhook(w http.ResponseWriter, r *http.Request) {
	wait := time.NewTimer(webhookWait)
	defer wait.Stop()
	select {
	case h.webhookSlots <- struct{}{}:
		defer func() { <-h.webhookSlots }()
	case <-wait.C:
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, ErrorResponse{Error: "too many alert notifications are being read at once; retry"})
		return
	case <-r.Context().Done():
		return
	}
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
//	@Summary		Alerts received from Alertmanager, oldest first, a page at a time
//	@Description	Pages of at most limit alerts (default 100, at most 1000). Each alert has a seq; the answer's next, when present, is the cursor of the next page: GET /api/alerts?after={next}. since keeps only alerts received since an RFC 3339 time.
//	@Tags			alerts
//	@Produce		json
//	@Param			since	query		string	false	"RFC 3339 time: only alerts received since"
//	@Param			after	query		int		false	"cursor: only alerts whose seq is greater (the previous page's next)"
//	@Param			limit	query		int		false	"page size, 1 to 1000 (default 100)"
//	@Success		200		{object}	AlertsResponse
//	@Failure		400		{object}	ErrorResponse
//	@Failure		401		{object}	ErrorResponse	"PLATFORM_API_TOKEN is set and the request has not got it"
//	@Security		BearerToken
//	@Router			/api/alerts [get]
func (h *handler) listAlerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var problems apierr.Problems
	var since time.Time
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			problems.Add("since", "must be an RFC 3339 time")
		}
		since = t
	}
	var after int64
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			problems.Add("after", "must be a non-negative integer (a previous page's next)")
		}
		after = n
	}
	limit := defaultAlertsPage
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxAlertsPage {
			problems.Add("limit", "must be an integer from 1 to %d", maxAlertsPage)
		}
		limit = n
	}
	if err := problems.Err("request"); err != nil {
		h.writeError(w, r, err)
		return
	}
	page, next := h.Alerts.Page(since, after, limit)
	out := AlertsResponse{Total: h.Alerts.Total(), Alerts: page, Next: next}
	if out.Alerts == nil {
		out.Alerts = []alerts.Alert{}
	}
	writeJSON(w, http.StatusOK, out)
}
