package experiments

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/dsplab/dsplab/internal/prom"
)

// The report's charts: Prometheus range queries over the experiment (plus
// a margin on each side), read once when it ends and kept with its record,
// so the report still draws after Prometheus has forgotten the window and
// after a restart of the platform. Each series keeps at most MaxPoints
// points (the step is chosen for it, and longer answers are thinned), so a
// record stays far below the store's 8 MiB bound: 7 charts × 12 series ×
// 300 points × ~25 bytes is about 600 KB at worst, ~60 KB for a usual run.

// RangeQuerier evaluates a PromQL range query (prom.Prometheus).
type RangeQuerier interface {
	QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) ([]prom.Series, error)
}

// Chart limits.
const (
	// MaxPoints bounds the points of one series.
	MaxPoints = 300
	// maxSeries bounds the series of one chart (the first, by name).
	maxSeries = 12
	// ChartMargin is drawn before the start and after the end.
	ChartMargin = 30 * time.Second
	// minStep: the stack scrapes every 5 s; a finer step repeats samples.
	minStep = 2 * time.Second
	// rateWindow of the charts' rate()s: four scrapes, so a 15 s outage
	// shows as a dip and not as a smear over a minute.
	rateWindow = "20s"
)

// Charts is what the report draws: the window, the faults' windows, and
// each chart's series.
type Charts struct {
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	StepSeconds float64   `json:"stepSeconds"`
	Charts      []Chart   `json:"charts"`
	// Traces are sample traces of the window: the slowest ingest requests
	// Prometheus kept an exemplar of (trace ids), for Tempo.
	Traces []TraceSample `json:"traces,omitempty"`
	// Checks holds, for each check (same order as the experiment's
	// checks), the range of its query where it has no $__range or
	// $__recovery (those change meaning with time); empty otherwise.
	Checks []Chart `json:"checks"`
}

// TraceSample is one request's trace, from a latency exemplar.
type TraceSample struct {
	TraceID string    `json:"traceId"`
	At      time.Time `json:"at"`
	Seconds float64   `json:"seconds"` // the request's duration
}

// ExemplarQuerier reads exemplars (prom.Prometheus).
type ExemplarQuerier interface {
	Exemplars(ctx context.Context, q string, start, end time.Time) ([]prom.Exemplar, error)
}

// maxTraces bounds the sample traces kept.
const maxTraces = 6

// sampleTraces are the slowest requests of the window with a trace id.
func sampleTraces(ctx context.Context, q any, from, to time.Time) []TraceSample {
	eq, ok := q.(ExemplarQuerier)
	if !ok {
		return nil
	}
	ex, err := eq.Exemplars(ctx, "distributor_request_duration_seconds_bucket", from, to)
	if err != nil {
		return nil // exemplar storage off, or an older Prometheus: no samples
	}
	sort.Slice(ex, func(i, j int) bool { return ex[i].Value > ex[j].Value })
	var out []TraceSample
	seen := map[string]bool{}
	for _, e := range ex {
		id := e.Labels["trace_id"]
		if id == "" || seen[id] || len(out) == maxTraces {
			continue
		}
		seen[id] = true
		out = append(out, TraceSample{TraceID: id, At: e.T.UTC(), Seconds: e.Value})
	}
	return out
}

// Chart is one chart: its queries and the series they gave.
type Chart struct {
	ID      string        `json:"id" example:"latency"`
	Title   string        `json:"title" example:"Ingest latency"`
	Unit    string        `json:"unit,omitempty" example:"s"`
	Queries []ChartQuery  `json:"queries"`
	Series  []ChartSeries `json:"series"`
	// Look says what to look for in it (shown under the title).
	Look  string `json:"look,omitempty"`
	Error string `json:"error,omitempty"`
}

// ChartQuery is one PromQL range query of a chart; each series it gives
// is named by Legend: the value of that label, or Name when the label is
// absent (or Legend is empty).
type ChartQuery struct {
	Expr   string `json:"expr"`
	Legend string `json:"legend,omitempty"`
	Name   string `json:"name,omitempty"`
}

// ChartSeries is one line: points as [unix milliseconds, value]; a
// missing step (no sample, NaN, ±Inf) is no point, and the line breaks.
type ChartSeries struct {
	Name string `json:"name"`
	// Points are [unix milliseconds, value] pairs.
	Points []Point `json:"points" swaggertype:"array,array,number"`
}

// Point is one sample, [unix ms, value] in JSON.
type Point struct {
	T int64
	V float64
}

// MarshalJSON writes [t, v].
func (p Point) MarshalJSON() ([]byte, error) { return json.Marshal([2]float64{float64(p.T), p.V}) }

// UnmarshalJSON reads [t, v].
func (p *Point) UnmarshalJSON(b []byte) error {
	var a [2]float64
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	p.T, p.V = int64(a[0]), a[1]
	return nil
}

// chartSpecs are the report's charts; jobID fills the k6 chart's filter.
func chartSpecs(jobID string) []Chart {
	r := func(expr string) string { return strings.ReplaceAll(expr, "$w", rateWindow) }
	q := func(expr, legend, name string) ChartQuery {
		return ChartQuery{Expr: r(expr), Legend: legend, Name: name}
	}
	specs := []Chart{
		{ID: "shares", Title: "Message shares per analyzer", Unit: "%", Look: "the shares move to the analyzers left when one is down, and come back without a flood",
			Queries: []ChartQuery{q(`100 * sum by (analyzer) (rate(distributor_routed_messages_total[$w])) / ignoring(analyzer) group_left sum(rate(distributor_routed_messages_total[$w]))`, "analyzer", "")}},
		{ID: "requests", Title: "Requests by result", Unit: "/s", Look: "accepted vs rejected, by reason (rate_limited, unavailable, error...)",
			Queries: []ChartQuery{q(`sum by (result) (rate(distributor_requests_total[$w]))`, "result", "")}},
		{ID: "latency", Title: "Ingest latency p50 / p99", Unit: "s", Look: "how slow requests get while the fault lasts",
			Queries: []ChartQuery{
				q(`histogram_quantile(0.5, sum by (le) (rate(distributor_request_duration_seconds_bucket[$w])))`, "", "p50"),
				q(`histogram_quantile(0.99, sum by (le) (rate(distributor_request_duration_seconds_bucket[$w])))`, "", "p99")}},
		// The distributor's reading of each analyzer's consumer-group lag:
		// a dead analyzer exports nothing, its backlog is seen from here.
		{ID: "lag", Title: "Consumer lag per analyzer", Unit: "records", Look: "a stopped analyzer's backlog waits in Kafka and drains after it comes back (as the distributor reads it)",
			Queries: []ChartQuery{q(`max by (analyzer) (distributor_queue_depth)`, "analyzer", "")}},
		{ID: "healthy", Title: "Healthy analyzers", Look: "when the distributor noticed, and when the analyzer rejoined",
			Queries: []ChartQuery{q(`max(distributor_healthy_analyzers)`, "", "healthy")}},
		{ID: "kafka-errors", Title: "Kafka write errors", Unit: "/s", Look: "errors by class; empty is good",
			Queries: []ChartQuery{q(`sum by (error_type) (rate(distributor_kafka_write_errors_total[$w]))`, "error_type", "")}},
	}
	if jobID != "" {
		sel := fmt.Sprintf(`job_id=%q`, jobID)
		specs = append(specs, Chart{ID: "k6", Title: "k6 requests and failures", Unit: "/s", Look: "what the load tool sent, and what failed (any status but 2xx)",
			Queries: []ChartQuery{
				q(`sum(rate(k6_http_reqs_total{`+sel+`}[$w]))`, "", "requests"),
				// 0, not absent, while k6 runs and nothing fails.
				q(`sum(rate(k6_http_reqs_total{`+sel+`,status!~"2.."}[$w])) or 0 * sum(rate(k6_http_reqs_total{`+sel+`}[$w]))`, "", "failures")}})
	}
	return specs
}

// chartWindow is the window and step of an experiment's charts.
func chartWindow(start, end time.Time) (from, to time.Time, step time.Duration) {
	from, to = start.Add(-ChartMargin), end.Add(ChartMargin)
	// Whole seconds, and at most MaxPoints steps from from to to.
	secs := math.Ceil(to.Sub(from).Seconds() / (MaxPoints - 1))
	return from, to, max(minStep, time.Duration(secs)*time.Second)
}

// captureCharts reads every chart of e from Prometheus, bounded: the
// report draws them after Prometheus has forgotten the window. Nothing is
// read without a range querier (tests' scripted queriers).
func (d deps) captureCharts(ctx context.Context, e Experiment, end time.Time) *Charts {
	rq, ok := d.q.(RangeQuerier)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	from, to, step := chartWindow(e.StartedAt, end)
	// The window cannot end in the future: Prometheus has nothing there.
	if now := time.Now(); to.After(now) {
		to = now
	}
	out := &Charts{From: from.UTC(), To: to.UTC(), StepSeconds: step.Seconds(), Charts: []Chart{}, Checks: make([]Chart, len(e.Checks))}
	out.Traces = sampleTraces(ctx, d.q, from, to)
	for _, c := range chartSpecs(e.TrafficJobID) {
		out.Charts = append(out.Charts, fill(ctx, rq, c, from, to, step))
	}
	for i, c := range e.Checks {
		ch := Chart{ID: fmt.Sprintf("check-%d", i), Title: c.Name, Queries: []ChartQuery{}, Series: []ChartSeries{}}
		if !strings.Contains(c.Query, "$__") {
			ch.Queries = []ChartQuery{{Expr: c.Query, Name: "value"}}
			ch = fill(ctx, rq, ch, from, to, step)
		}
		out.Checks[i] = ch
	}
	return out
}

// fill runs c's queries and names their series.
func fill(ctx context.Context, rq RangeQuerier, c Chart, from, to time.Time, step time.Duration) Chart {
	c.Series = []ChartSeries{}
	var errs []string
	for _, q := range c.Queries {
		got, err := rq.QueryRange(ctx, q.Expr, from, to, step)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		for _, s := range got {
			name := q.Name
			if v, ok := s.Labels[q.Legend]; ok && q.Legend != "" {
				name = v
			}
			if name == "" {
				name = labelString(s.Labels)
			}
			c.Series = append(c.Series, ChartSeries{Name: name, Points: thin(points(s.Samples), MaxPoints)})
		}
	}
	sort.SliceStable(c.Series, func(i, j int) bool { return c.Series[i].Name < c.Series[j].Name })
	if len(c.Series) > maxSeries {
		errs = append(errs, fmt.Sprintf("%d series, the first %d drawn", len(c.Series), maxSeries))
		c.Series = c.Series[:maxSeries]
	}
	c.Error = strings.Join(errs, "; ")
	return c
}

// points are the finite samples of a series as chart points.
func points(ss []prom.Sample) []Point {
	out := make([]Point, 0, len(ss))
	for _, s := range ss {
		if math.IsNaN(s.V) || math.IsInf(s.V, 0) {
			continue // JSON has no NaN; the line breaks there
		}
		out = append(out, Point{T: s.T.UnixMilli(), V: s.V})
	}
	return out
}

// thin keeps at most n points: every k-th, and the last.
func thin(ps []Point, n int) []Point {
	if len(ps) <= n {
		return ps
	}
	k := (len(ps) + n - 2) / (n - 1)
	out := make([]Point, 0, n)
	for i := 0; i < len(ps)-1; i += k {
		out = append(out, ps[i])
	}
	return append(out, ps[len(ps)-1])
}

// labelString names a series by its labels but __name__, sorted, as
// k=v,k=v ("value" for none).
func labelString(l map[string]string) string {
	var parts []string
	for k, v := range l {
		if k != "__name__" {
			parts = append(parts, k+"="+v)
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "value"
	}
	return strings.Join(parts, ",")
}

// FaultWindow is when one of the experiment's faults was active, and the
// command that made it: the report shades it on every chart.
type FaultWindow struct {
	ID      string    `json:"id"`
	Type    string    `json:"type" example:"kill"`
	Target  string    `json:"target" example:"analyzer-2"`
	Command string    `json:"command,omitempty"`
	Start   time.Time `json:"start"`
	// End is when it was reverted (or, if the fault manager forgot it,
	// when it was planned to end).
	End time.Time `json:"end"`
}

// faultWindows reads the experiment's faults from the fault manager.
func (d deps) faultWindows(e Experiment, now time.Time) []FaultWindow {
	out := []FaultWindow{}
	for _, id := range e.FaultIDs {
		f, err := d.faults.Get(id)
		if err != nil {
			continue
		}
		w := FaultWindow{ID: f.ID, Type: string(f.Type), Target: f.Target, Command: f.Command, Start: f.StartedAt.UTC(), End: now}
		switch {
		case f.EndedAt != nil:
			w.End = f.EndedAt.UTC()
		case f.EndsAt != nil && f.EndsAt.Before(now):
			w.End = f.EndsAt.UTC()
		}
		out = append(out, w)
	}
	return out
}
