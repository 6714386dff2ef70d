package experiments

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/devstack"
	"github.com/dsplab/dsplab/internal/prom"
)

// realPrometheus starts Debian's Prometheus (the e2e stack's) on a TSDB
// made by promtool from OpenMetrics text with explicit timestamps: the
// samples of a run that ended minutes ago, served as Prometheus serves
// them. Skipped without prometheus and promtool, failed in CI.
func realPrometheus(t *testing.T, openMetrics string) string {
	t.Helper()
	bins := map[string]string{}
	for _, name := range []string{"prometheus", "promtool"} {
		bins[name] = devstack.Command(t, name, "prometheus")
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "samples.om")
	require.NoError(t, os.WriteFile(in, []byte(openMetrics), 0o644))
	out, err := exec.Command(bins["promtool"], "tsdb", "create-blocks-from", "openmetrics", in, filepath.Join(dir, "data")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	cfg := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("global: {scrape_interval: 5s}\n"), 0o644))
	port := devstack.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bins["prometheus"], "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port))
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cancel(); <-exited })
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	devstack.Eventually(t, time.Minute, func() bool {
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "prometheus ready: %s", &logs)
	return base
}

// crashOpenMetrics writes the counters and gauges of a crash run starting
// at t0: 300 packets/s of 1 message, shares 50/30/20, analyzer-2 down from
// 20 s to 60 s (its share to the others), 5 % of requests slow then.
func crashOpenMetrics(t0 time.Time) string {
	var b strings.Builder
	series := func(name, labels string, f func(s float64) float64) {
		for s := -60.0; s <= 160; s += 5 {
			fmt.Fprintf(&b, "%s{%s} %g %d\n", name, labels, f(s), t0.Unix()+int64(s))
		}
	}
	down := func(s float64) bool { return s >= 20 && s < 60 }
	// integrate a rate over [-60, s] in 5 s steps (the counters' values).
	counter := func(rate func(s float64) float64) func(s float64) float64 {
		return func(s float64) float64 {
			total := 0.0
			for x := -60.0; x < s; x += 5 {
				total += 5 * rate(x)
			}
			return total
		}
	}
	b.WriteString("# TYPE distributor_routed_messages counter\n")
	for a, share := range map[string][2]float64{"analyzer-1": {150, 300 * 5 / 7.0}, "analyzer-2": {90, 0}, "analyzer-3": {60, 300 * 2 / 7.0}} {
		series("distributor_routed_messages_total", fmt.Sprintf("analyzer=%q", a), counter(func(s float64) float64 {
			if down(s) {
				return share[1]
			}
			return share[0]
		}))
	}
	b.WriteString("# TYPE distributor_healthy_analyzers gauge\n")
	series("distributor_healthy_analyzers", "", func(s float64) float64 {
		if down(s) {
			return 2
		}
		return 3
	})
	b.WriteString("# TYPE distributor_requests counter\n")
	series("distributor_requests_total", `result="accepted"`, counter(func(float64) float64 { return 300 }))
	b.WriteString("# TYPE distributor_request_duration_seconds histogram\n")
	slow := func(s float64) float64 {
		if down(s) {
			return 15
		}
		return 0
	}
	for _, le := range []string{"0.005", "0.05", "0.25", "+Inf"} {
		series("distributor_request_duration_seconds_bucket", fmt.Sprintf("le=%q", le), counter(func(s float64) float64 {
			if le == "0.005" || le == "0.05" {
				return 300 - slow(s)
			}
			return 300
		}))
	}
	series("distributor_request_duration_seconds_count", "", counter(func(float64) float64 { return 300 }))
	series("distributor_request_duration_seconds_sum", "", counter(func(float64) float64 { return 1 }))
	b.WriteString("# TYPE distributor_queue_depth gauge\n")
	series("distributor_queue_depth", `analyzer="analyzer-2"`, func(s float64) float64 {
		if down(s) {
			return 90 * (s - 20)
		}
		return 0
	})
	b.WriteString("# TYPE k6_http_reqs counter\n")
	series("k6_http_reqs_total", `job_id="t-1",status="200"`, counter(func(s float64) float64 {
		if s >= 0 && s < 90 {
			return 300
		}
		return 0
	}))
	b.WriteString("# EOF\n")
	return b.String()
}

func TestChartsFromTheRealPrometheus(t *testing.T) {
	t0 := time.Now().Add(-20 * time.Minute).Truncate(time.Second).UTC()
	base := realPrometheus(t, crashOpenMetrics(t0))
	e := syntheticCrash(t0)
	e.Faults[0].End = t0.Add(60 * time.Second)
	e.Charts = NewManager(Options{Querier: prom.New(base)}).captureCharts(context.Background(), e, *e.EndedAt)
	require.NotNil(t, e.Charts)
	charts := map[string]Chart{}
	for _, c := range e.Charts.Charts {
		require.Empty(t, c.Error, c.ID)
		charts[c.ID] = c
	}
	at := func(s ChartSeries, from, to float64) []float64 {
		var out []float64
		for _, p := range s.Points {
			if x := time.UnixMilli(p.T).Sub(t0).Seconds(); x >= from && x <= to {
				out = append(out, p.V)
			}
		}
		require.NotEmpty(t, out, "%s has points in %g..%g s", s.Name, from, to)
		return out
	}
	shares := charts["shares"]
	require.Len(t, shares.Series, 3)
	for _, s := range shares.Series {
		want := map[string][2]float64{"analyzer-1": {50, 71.43}, "analyzer-2": {30, 0}, "analyzer-3": {20, 28.57}}[s.Name]
		for _, v := range at(s, -30, 15) {
			require.InDelta(t, want[0], v, 0.1, "%s before the fault", s.Name)
		}
		for _, v := range at(s, 42, 58) { // a 20 s rate window wholly inside the outage
			require.InDelta(t, want[1], v, 0.1, "%s during the fault", s.Name)
		}
	}
	for _, v := range at(charts["healthy"].Series[0], 22, 58) {
		require.Equal(t, 2.0, v)
	}
	var p99 ChartSeries
	for _, s := range charts["latency"].Series {
		if s.Name == "p99" {
			p99 = s
		}
	}
	for _, v := range at(p99, -30, 15) {
		require.Less(t, v, 0.005)
	}
	for _, v := range at(p99, 42, 58) {
		require.Greater(t, v, 0.05, "5 %% of requests over 50 ms: p99 above it")
	}
	require.Empty(t, charts["kafka-errors"].Series, "no such series: an empty chart")
	k6 := map[string]ChartSeries{}
	for _, s := range charts["k6"].Series {
		k6[s.Name] = s
	}
	for _, v := range at(k6["requests"], 25, 85) {
		require.InDelta(t, 300, v, 0.1)
	}
	for _, v := range at(k6["failures"], 25, 85) {
		require.Zero(t, v, "no failure is a 0 while k6 runs, not a gap")
	}
	require.Len(t, charts["lag"].Series, 1)
	// The page from the real series: valid, bands in place.
	doc := strictParse(t, HTML(e, ReportLinks{}))
	requireSelfContained(t, doc)
	for id, svg := range svgs(doc) {
		fr := plotFrame(t, svg)
		band := findAll(svg, "rect", "fault")
		require.Len(t, band, 1, id)
		require.InDelta(t, fr.X(t0.Add(20*time.Second).UnixMilli()), attrF(t, band[0], "x"), 0.11, id)
	}
}

// The stand-in's answer has the real one's shape: the same query_range
// asked of both decodes to the same structure (keys, JSON types, values
// as strings, times as numbers) and the same evaluation times.
func TestThePrometheusStandInAnswersInTheRealOnesShape(t *testing.T) {
	t0 := time.Now().Add(-20 * time.Minute).Truncate(time.Second).UTC()
	real := realPrometheus(t, crashOpenMetrics(t0))
	standIn := newPromStandIn(t, func(q string, at time.Time) map[string]float64 {
		return map[string]float64{"": 3}
	})
	ask := func(base, query string, step string) map[string]any {
		v := url.Values{"query": {query}, "start": {strconv.FormatInt(t0.Unix(), 10) + ".5"}, "end": {strconv.FormatInt(t0.Unix()+30, 10)}, "step": {step}}
		resp, err := http.Get(base + "/api/v1/query_range?" + v.Encode())
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		require.NoError(t, json.Unmarshal(b, &out), "%s", b)
		out["httpStatus"] = float64(resp.StatusCode)
		return out
	}
	shape := func(v any) any {
		var walk func(v any) any
		walk = func(v any) any {
			switch x := v.(type) {
			case map[string]any:
				out := map[string]any{}
				for k, c := range x {
					if k == "error" { // the message's wording
						c = ""
					}
					out[k] = walk(c)
				}
				return out
			case []any:
				if len(x) == 0 {
					return []any{}
				}
				return []any{walk(x[0]), len(x)}
			case float64:
				return "number"
			case string:
				return "string"
			}
			return fmt.Sprintf("%T", v)
		}
		return walk(v)
	}
	r, s := ask(real, "max(distributor_healthy_analyzers)", "5"), ask(standIn.URL, "max(distributor_healthy_analyzers)", "5")
	require.Equal(t, shape(r), shape(s))
	times := func(m map[string]any) []any {
		var out []any
		for _, v := range m["data"].(map[string]any)["result"].([]any)[0].(map[string]any)["values"].([]any) {
			out = append(out, v.([]any)[0])
		}
		return out
	}
	require.Equal(t, times(r), times(s), "evaluated at start, start+step, ... (fractional start kept)")
	for _, bad := range []string{"0", "-1", "x"} {
		r, s := ask(real, "up", bad), ask(standIn.URL, "up", bad)
		require.Equal(t, shape(r), shape(s), "step=%s", bad)
		require.Equal(t, r["errorType"], s["errorType"])
	}
	// Exemplars: the real one without exemplar storage answers an empty
	// list, in the envelope the stand-in uses.
	ex := func(base string) map[string]any {
		resp, err := http.Get(base + "/api/v1/query_exemplars?query=distributor_request_duration_seconds_bucket&start=" + strconv.FormatInt(t0.Unix(), 10) + "&end=" + strconv.FormatInt(t0.Unix()+60, 10))
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return out
	}
	require.Equal(t, ex(real), ex(standIn.URL))
	r, s = ask(real, "up", "0.001"), ask(standIn.URL, "up", "0.001")
	require.Equal(t, r["httpStatus"], s["httpStatus"], "over 11,000 points: %v / %v", r["error"], s["error"])
	require.Equal(t, r["error"], s["error"])
}
