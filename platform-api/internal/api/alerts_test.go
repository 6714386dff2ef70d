package api

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/dsplab/dsplab/platform-api/internal/alerts"
)

// A notification as Alertmanager (v0.2x) posts it to a webhook receiver.
const notification = `{
  "receiver": "platform-api", "status": "firing", "version": "4", "groupKey": "{}:{alertname=\"AnalyzerDown\"}",
  "truncatedAlerts": 0, "groupLabels": {"alertname": "AnalyzerDown"}, "commonLabels": {"alertname": "AnalyzerDown", "severity": "critical"},
  "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
  "alerts": [
    {"status": "firing", "labels": {"alertname": "AnalyzerDown", "analyzer": "analyzer-2", "severity": "critical"},
     "annotations": {"summary": "analyzer-2 is down"}, "startsAt": "2026-11-22T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
     "generatorURL": "http://prometheus:9090/graph?g0.expr=distributor_analyzer_up+%3D%3D+0", "fingerprint": "c3b1f0a1"},
    {"status": "resolved", "labels": {"alertname": "HighLatency"}, "annotations": {}, "startsAt": "2026-11-22T09:50:00Z",
     "endsAt": "2026-11-22T09:55:00Z", "generatorURL": "", "fingerprint": "d4"}
  ]
}`

func TestAlertmanagerNotificationsAreStoredAndListed(t *testing.T) {
	store := alerts.New(10)
	h := NewRouter(Deps{Targets: fakeTargets{}, Faults: &fakeFaults{}, Alerts: store, MetricsHandler: http.NotFoundHandler(),
		TracerProvider: noop.NewTracerProvider(), Logger: slog.New(slog.DiscardHandler)})
	w := do(h, "POST", "/api/alerts/webhook", notification)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.JSONEq(t, `{"received":2}`, w.Body.String())

	var got AlertsResponse
	require.NoError(t, json.Unmarshal(do(h, "GET", "/api/alerts", "").Body.Bytes(), &got))
	require.Equal(t, 2, got.Total)
	require.Equal(t, "analyzer-2", got.Alerts[0].Labels["analyzer"])
	require.Equal(t, "platform-api", got.Alerts[0].Receiver)
	require.False(t, got.Alerts[0].ReceivedAt.IsZero())

	require.NoError(t, json.Unmarshal(do(h, "GET", "/api/alerts?since=2999-01-01T00:00:00Z", "").Body.Bytes(), &got))
	require.Empty(t, got.Alerts)
	require.Equal(t, http.StatusBadRequest, do(h, "GET", "/api/alerts?since=yesterday", "").Code)
	require.Equal(t, http.StatusBadRequest, do(h, "POST", "/api/alerts/webhook", `{"status":"firing"}`).Code)
	require.Equal(t, http.StatusBadRequest, do(h, "POST", "/api/alerts/webhook", `[`).Code)
}

func TestTheAlertStoreKeepsTheNewest(t *testing.T) {
	s := alerts.New(3)
	for i := 0; i < 5; i++ {
		s.Add(alerts.Notification{Alerts: []alerts.Alert{{Fingerprint: string(rune('a' + i))}}}, fakeNow.Add(0))
	}
	all := s.Since(fakeNow.Add(-1))
	require.Len(t, all, 3)
	require.Equal(t, "c", all[0].Fingerprint)
	require.Equal(t, 5, s.Total())
}

var fakeNow = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// GET /api/alerts pages through the router: limit (default 100, at most
// 1000), the after cursor and next; a huge alert from the webhook is
// stored cut to size; bad paging parameters are 400 naming each.
func TestAlertsArePagedAndHugeAlertsAreStoredCut(t *testing.T) {
	store := alerts.New(1000)
	h := NewRouter(Deps{Targets: fakeTargets{}, Faults: &fakeFaults{}, Alerts: store, MetricsHandler: http.NotFoundHandler(),
		TracerProvider: noop.NewTracerProvider(), Logger: slog.New(slog.DiscardHandler)})
	var b strings.Builder
	b.WriteString(`{"receiver":"platform","alerts":[`)
	for i := range 250 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"status":"firing","labels":{"alertname":"A%d"}}`, i)
	}
	b.WriteString(`]}`)
	require.Equal(t, http.StatusOK, do(h, "POST", "/api/alerts/webhook", b.String()).Code)
	big := `{"receiver":"platform","alerts":[{"status":"firing","labels":{"alertname":"Big"},"annotations":{"description":"` + strings.Repeat("x", 3<<20) + `"}}]}`
	require.Equal(t, http.StatusOK, do(h, "POST", "/api/alerts/webhook", big).Code)

	var page AlertsResponse
	require.NoError(t, json.Unmarshal(do(h, "GET", "/api/alerts", "").Body.Bytes(), &page))
	require.Equal(t, 251, page.Total)
	require.Len(t, page.Alerts, 100, "the default page")
	require.Equal(t, "A0", page.Alerts[0].Labels["alertname"])
	require.Equal(t, int64(100), page.Next)
	var seen []string
	for after := int64(0); ; {
		var p AlertsResponse
		w := do(h, "GET", fmt.Sprintf("/api/alerts?limit=60&after=%d", after), "")
		require.Equal(t, http.StatusOK, w.Code)
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p))
		for _, a := range p.Alerts {
			seen = append(seen, a.Labels["alertname"])
		}
		if p.Next == 0 {
			require.Contains(t, w.Body.String(), `"truncated":true`, "the last page holds the huge alert, cut")
			require.Less(t, w.Body.Len(), 100<<10)
			break
		}
		after = p.Next
	}
	require.Len(t, seen, 251)
	require.Equal(t, "Big", seen[250])

	w := do(h, "GET", "/api/alerts?limit=0&after=-1&since=x", "")
	require.Equal(t, http.StatusBadRequest, w.Code)
	for _, f := range []string{`"limit"`, `"after"`, `"since"`} {
		require.Contains(t, w.Body.String(), f)
	}
	require.Equal(t, http.StatusBadRequest, do(h, "GET", "/api/alerts?limit=1001", "").Code)
}

// A notification is read only once one of the 4 decode slots is free:
// with 4 bodies still arriving, a fifth waits, then gets 503 with
// Retry-After after 10 s (Alertmanager retries); once a slot frees, the
// next is stored. Without the bound, 300 bodies of 4 MiB are decoded at
// once (7.3 GB seen).
func TestAlertNotificationsAreDecodedAFewAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := alerts.New(10)
		h := NewRouter(Deps{Targets: fakeTargets{}, Faults: &fakeFaults{}, Alerts: store, MetricsHandler: http.NotFoundHandler(),
			TracerProvider: noop.NewTracerProvider(), Logger: slog.New(slog.DiscardHandler)})
		post := func(body io.Reader) *httptest.ResponseRecorder {
			r := httptest.NewRequest("POST", "/api/alerts/webhook", body)
			r.Host = "localhost:5050"
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w
		}
		var writers []*io.PipeWriter
		held := make(chan *httptest.ResponseRecorder, webhookDecodes)
		for range webhookDecodes {
			pr, pw := io.Pipe()
			writers = append(writers, pw)
			go func() { held <- post(pr) }()
		}
		synctest.Wait() // the 4 hold every slot, reading their bodies
		start := time.Now()
		w := post(strings.NewReader(notification))
		require.Equal(t, http.StatusServiceUnavailable, w.Code, w.Body.String())
		require.Equal(t, "5", w.Header().Get("Retry-After"))
		require.Contains(t, w.Body.String(), "retry")
		require.Equal(t, webhookWait, time.Since(start), "it waited for a slot before refusing")
		require.Zero(t, store.Total())

		_, err := writers[0].Write([]byte(notification))
		require.NoError(t, err)
		require.NoError(t, writers[0].Close())
		require.Equal(t, http.StatusOK, (<-held).Code)
		require.Equal(t, http.StatusOK, post(strings.NewReader(notification)).Code, "a freed slot takes the next")
		require.Equal(t, 4, store.Total())
		for _, pw := range writers[1:] {
			pw.CloseWithError(io.ErrUnexpectedEOF)
		}
		for range webhookDecodes - 1 {
			require.Equal(t, http.StatusBadRequest, (<-held).Code)
		}
	})
}
