//go:build e2e

package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// promVector runs an instant query and returns its samples by the value
// of one label ("" for a label-less result such as max(...)).
func promVector(t *testing.T, q, by string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(promURL + "/api/v1/query?query=" + url.QueryEscape(q))
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Equal(t, "success", body.Status, "%s: %s", q, body.Error)
	out := map[string]float64{}
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		require.NoError(t, err)
		out[r.Metric[by]] = v
	}
	return out
}

// panelExpr is the first query of a dashboard panel, read from the file
// Grafana provisions, so that the test reads what the panel shows.
func panelExpr(t *testing.T, dashboard, title string) string {
	t.Helper()
	d := readDashboard(t, filepath.Join(root, "grafana", "dashboards", dashboard+".json"))
	for _, p := range d.Panels {
		if p.Title == title && len(p.Targets) > 0 {
			return p.Targets[0].Expr
		}
	}
	t.Fatalf("%s: no panel %q", dashboard, title)
	return ""
}

// webhookHas says whether the platform's webhook (GET /api/alerts) received
// an alert with this name, service and status since a time.
func webhookHas(t *testing.T, alertname, service, status string, since time.Time) bool {
	t.Helper()
	var al alertList
	call(t, http.MethodGet, "/api/alerts?limit=1000&since="+since.Add(-time.Second).UTC().Format(time.RFC3339), nil, &al)
	for _, a := range al.Alerts {
		if a.Labels["alertname"] == alertname && a.Labels["service_name"] == service && a.Status == status && !a.ReceivedAt.Before(since) {
			return true
		}
	}
	return false
}

// alertActive says whether Alertmanager holds an active alert now.
func alertActive(t *testing.T, alertname, service string) bool {
	t.Helper()
	resp, err := http.Get(alertmgrURL + "/api/v2/alerts?active=true&filter=" + url.QueryEscape(`alertname="`+alertname+`"`))
	require.NoError(t, err)
	defer resp.Body.Close()
	var alerts []struct {
		Labels map[string]string `json:"labels"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&alerts))
	for _, a := range alerts {
		if a.Labels["service_name"] == service {
			return true
		}
	}
	return false
}

// TestADeadServiceLooksDead stops the distributor and analyzer-3 for 40 s
// through the platform's fault API (docker stop) and checks, on the real
// collector, Prometheus and Alertmanager, that a dead process shows dead:
// the Resilience dashboard's health panels read 0 within 30 s, the
// collector stops exposing the process's own series (metric_expiration),
// ServiceDown reaches Alertmanager and the platform's webhook, and all of
// it recovers after the fault reverts. Before the liveness scrape and the
// expiration, the collector exposed the last values for 5 minutes and the
// panels said healthy.
func TestADeadServiceLooksDead(t *testing.T) {
	health := panelExpr(t, "resilience", "Distributor health")
	healthy := panelExpr(t, "resilience", "Healthy analyzers")
	liveness := panelExpr(t, "resilience", "Process liveness (Prometheus scrape)")
	waitFor(t, time.Minute, func() bool {
		return promVector(t, health, "")[""] == 1 && promVector(t, liveness, "service_name")["analyzer-3"] == 1
	}, "the distributor healthy and analyzer-3 up before the faults")

	amDist := watchAlert(t, "ServiceDown", map[string]string{"service_name": "distributor"})
	amA3 := watchAlert(t, "ServiceDown", map[string]string{"service_name": "analyzer-3"})
	dist := startFault(t, map[string]any{"type": "stop", "target": "distributor", "durationSeconds": 40})
	a3 := startFault(t, map[string]any{"type": "stop", "target": "analyzer-3", "durationSeconds": 40})

	t.Run("the health panels read 0 within 30 s", func(t *testing.T) {
		waitFor(t, 30*time.Second-time.Since(dist.StartedAt), func() bool {
			v, ok := promVector(t, health, "")[""]
			return ok && v == 0
		}, "Distributor health reads 0")
		t.Logf("Distributor health 0 after %s", time.Since(dist.StartedAt).Round(time.Second))
		require.Equal(t, 0.0, promVector(t, healthy, "")[""], "Healthy analyzers reads 0 while the distributor is down")
		waitFor(t, 30*time.Second-time.Since(a3.StartedAt), func() bool {
			v, ok := promVector(t, liveness, "service_name")["analyzer-3"]
			return ok && v == 0
		}, "Process liveness of analyzer-3 reads 0")
		t.Logf("analyzer-3's liveness 0 after %s", time.Since(a3.StartedAt).Round(time.Second))
	})

	t.Run("the collector stops exposing a dead process's own series", func(t *testing.T) {
		// metric_expiration 15 s, then a 5 s scrape marks them stale.
		waitFor(t, 35*time.Second-time.Since(dist.StartedAt), func() bool {
			return !promHas(t, `distributor_health_up`)
		}, "distributor_health_up gone from Prometheus")
		t.Logf("distributor's series gone %s after the stop", time.Since(dist.StartedAt).Round(time.Second))
		waitFor(t, 35*time.Second-time.Since(a3.StartedAt), func() bool {
			return !promHas(t, `analyzer_packets_processed_total{service_name="analyzer-3"}`)
		}, "analyzer-3's analyzer_* series gone from Prometheus")
		t.Logf("analyzer-3's series gone %s after the stop", time.Since(a3.StartedAt).Round(time.Second))
	})

	t.Run("ServiceDown reaches Alertmanager within 30 s and the platform's webhook", func(t *testing.T) {
		for _, c := range []struct {
			f  fault
			w  *alertWatch
			sv string
		}{{dist, amDist, "distributor"}, {a3, amA3, "analyzer-3"}} {
			at := c.w.wait(t, 30*time.Second-time.Since(c.f.StartedAt))
			t.Logf("ServiceDown for %s in Alertmanager %s after the stop", c.sv, at.Sub(c.f.StartedAt).Round(time.Second))
			waitFor(t, 45*time.Second-time.Since(c.f.StartedAt), func() bool {
				return webhookHas(t, "ServiceDown", c.sv, "firing", c.f.StartedAt)
			}, "ServiceDown for "+c.sv+" at the webhook")
			t.Logf("ServiceDown for %s at the webhook %s after the stop", c.sv, time.Since(c.f.StartedAt).Round(time.Second))
		}
	})

	t.Run("both recover after the revert", func(t *testing.T) {
		fd := waitReverted(t, dist, time.Minute)
		fa := waitReverted(t, a3, time.Minute)
		waitFor(t, time.Minute, func() bool {
			return promVector(t, health, "")[""] == 1 && promVector(t, liveness, "service_name")["analyzer-3"] == 1
		}, "Distributor health 1 and analyzer-3 up again")
		t.Logf("panels healthy again %s after the revert", time.Since(*fd.EndedAt).Round(time.Second))
		// Their own series come by OTLP: an export (2 s) and a scrape (5 s)
		// after the liveness scrape saw the process.
		waitFor(t, 30*time.Second, func() bool {
			return promHas(t, `distributor_health_up`) && promHas(t, `analyzer_packets_processed_total{service_name="analyzer-3"}`)
		}, "the distributor's and analyzer-3's own series are back")
		for _, c := range []struct {
			f  fault
			sv string
		}{{fd, "distributor"}, {fa, "analyzer-3"}} {
			waitFor(t, time.Minute, func() bool {
				return !alertActive(t, "ServiceDown", c.sv) && webhookHas(t, "ServiceDown", c.sv, "resolved", *c.f.EndedAt)
			}, "ServiceDown for "+c.sv+" resolved in Alertmanager and at the webhook")
			t.Logf("ServiceDown for %s resolved at the webhook %s after the revert", c.sv, time.Since(*c.f.EndedAt).Round(time.Second))
		}
	})
}

// dashboard is the part of a provisioned Grafana dashboard the tests
// read: each panel's title and its queries (Tempo's have no expr).
type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// readDashboard reads a dashboard file as Grafana provisions it.
func readDashboard(t *testing.T, path string) dashboard {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(b, &d), path)
	return d
}
