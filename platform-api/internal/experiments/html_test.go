package experiments

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/dsplab/dsplab/internal/prom"
	"github.com/dsplab/dsplab/platform-api/internal/alerts"
	"github.com/dsplab/dsplab/platform-api/internal/ledgercheck"
)

// syntheticCrash is an ended analyzer-crash run: traffic from 0 s to 90 s,
// analyzer-2 killed from 20 s to 35 s, detected at 22 s, recovered at 40 s.
func syntheticCrash(t0 time.Time) Experiment {
	at := func(s float64) time.Time { return t0.Add(seconds(s)) }
	v := func(f float64) *float64 { return &f }
	end := at(100)
	ev := func(s float64, kind, msg string) Event { return Event{At: at(s), Seconds: s, Kind: kind, Message: msg} }
	def := crashDefinition()
	def.Traffic.DurationSeconds = 90
	def.Faults[0].AtSeconds = 20
	if err := def.Validate(600); err != nil {
		panic(err)
	}
	e := Experiment{ID: "x-synthetic", Name: "analyzer-crash", State: Passed, StartedAt: t0, EndedAt: &end, Definition: def,
		TrafficJobID: "t-1", FaultIDs: []string{"f-1"},
		Faults: []FaultWindow{{ID: "f-1", Type: "kill", Target: "analyzer-2", Command: "docker kill --signal KILL dsplab-analyzer-2-1", Start: at(20), End: at(35)}},
		Timeline: []Event{ev(0, "started", "experiment analyzer-crash"), ev(0.5, "traffic-started", "ingest-packets constant 300/s for 90s (t-1)"),
			ev(20, "fault-started", "kill on analyzer-2 for 15s: docker kill --signal KILL dsplab-analyzer-2-1 (f-1)"),
			ev(22, "detected", "after 2.0s by query ..."), ev(30, "config-changed", `distributor hot-reloaded with {"limits":{}}`),
			ev(35, "faults-ended", "every fault has been reverted"), ev(40, "recovered", "after checks hold 5.0s after the faults ended"),
			ev(90.5, "traffic-stopped", "traffic job t-1 stopped"), ev(100, "verdict", "passed ")},
		Alerts: []alerts.Alert{{Status: "firing", Labels: map[string]string{"alertname": "AnalyzerDown", "analyzer": "analyzer-2"}, Annotations: map[string]string{"summary": "analyzer-2 is down"}, ReceivedAt: at(24), StartsAt: at(23)},
			{Status: "resolved", Labels: map[string]string{"alertname": "AnalyzerDown", "analyzer": "analyzer-2"}, ReceivedAt: at(41)}},
		TimeToDetectSeconds: v(2), DetectedBy: "query (min(distributor_analyzer_up) < 1)", TimeToRecoverSeconds: v(5),
		Ledger: Ledger{Accepted: v(27000), Processed: v(26990), Duplicates: v(0), Lost: v(10), K6Accepted: v(27000)},
	}
	for _, c := range def.Checks {
		cr := CheckResult{Check: c, Passed: true}
		for s := 20.0; s < 36; s += 5 {
			val := 3.0
			if c.Phase == "during" {
				val = 2
			}
			cr.Samples = append(cr.Samples, Sample{At: at(s), Value: v(val), Holds: c.holds(val)})
		}
		e.Checks = append(e.Checks, cr)
	}
	return e
}

// crashScript is the stand-in Prometheus's view of syntheticCrash.
func crashScript(t0 time.Time) func(q string, t time.Time) map[string]float64 {
	return func(q string, t time.Time) map[string]float64 {
		s := t.Sub(t0).Seconds()
		down := s >= 21 && s < 36
		switch {
		case strings.Contains(q, "distributor_routed_messages_total"):
			if down {
				return map[string]float64{"analyzer=analyzer-1": 71.4, "analyzer=analyzer-2": 0, "analyzer=analyzer-3": 28.6}
			}
			return map[string]float64{"analyzer=analyzer-1": 50, "analyzer=analyzer-2": 30, "analyzer=analyzer-3": 20}
		case strings.Contains(q, "distributor_requests_total"):
			return map[string]float64{"result=accepted": 300, "result=rate_limited": 0}
		case strings.Contains(q, "histogram_quantile(0.99"):
			if down {
				return map[string]float64{"": 0.18}
			}
			return map[string]float64{"": 0.02}
		case strings.Contains(q, "histogram_quantile(0.5"):
			return map[string]float64{"": 0.004}
		case strings.Contains(q, "distributor_queue_depth"):
			lag := 0.0
			if down {
				lag = 90 * (s - 21)
			}
			return map[string]float64{"analyzer=analyzer-1": 0, "analyzer=analyzer-2": lag, "analyzer=analyzer-3": 0}
		case strings.Contains(q, "distributor_healthy_analyzers"):
			if down {
				return map[string]float64{"": 2}
			}
			return map[string]float64{"": 3}
		case strings.Contains(q, "k6_http_reqs_total") && strings.Contains(q, "status!~"):
			return map[string]float64{"": 0}
		case strings.Contains(q, "k6_http_reqs_total"):
			return map[string]float64{"": 300}
		}
		return nil // Kafka write errors: none, an empty matrix
	}
}

func TestTheReportPageIsValidSelfContainedHTMLWithEveryChartAndTheFaultBandsInPlace(t *testing.T) {
	// Prometheus here is the stand-in (promstandin_test.go); the same
	// code path against the real one: TestChartsFromTheRealPrometheus.
	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Second).UTC()
	e := syntheticCrash(t0)
	p := newPromStandIn(t, crashScript(t0))
	p.exemplars = []standInExemplar{{"4bf92f3577b34da6a3ce929d0e0e4736", t0.Add(25 * time.Second), 0.181}, {"0af7651916cd43dd8448eb211c80319c", t0.Add(5 * time.Second), 0.004}}
	m := NewManager(Options{Querier: prom.New(p.URL)})
	e.Charts = m.captureCharts(context.Background(), e, *e.EndedAt)
	require.NotNil(t, e.Charts)
	require.Equal(t, []TraceSample{{"4bf92f3577b34da6a3ce929d0e0e4736", t0.Add(25 * time.Second), 0.181}, {"0af7651916cd43dd8448eb211c80319c", t0.Add(5 * time.Second), 0.004}}, e.Charts.Traces, "slowest first")
	require.Len(t, e.Charts.Charts, 7)
	for _, c := range e.Charts.Charts {
		require.Empty(t, c.Error, c.ID)
		for _, s := range c.Series {
			require.LessOrEqual(t, len(s.Points), MaxPoints)
		}
	}

	page := HTML(e, ReportLinks{GrafanaURL: "http://localhost:3000"})
	doc := strictParse(t, page)
	requireSelfContained(t, doc)

	plots := svgs(doc)
	for _, id := range []string{"timeline", "shares", "requests", "latency", "lag", "healthy", "kafka-errors", "k6", "check-0"} {
		require.Contains(t, plots, id, "an SVG for %s", id)
	}
	for id, svg := range plots {
		fr := plotFrame(t, svg)
		bands := findAll(svg, "rect", "fault")
		require.Len(t, bands, 1, "%s: one fault band", id)
		// Where the band must be, from the fault's own times.
		require.InDelta(t, fr.X(e.Faults[0].Start.UnixMilli()), attrF(t, bands[0], "x"), 0.11, "%s: band start", id)
		require.InDelta(t, fr.X(e.Faults[0].End.UnixMilli())-fr.X(e.Faults[0].Start.UnixMilli()), attrF(t, bands[0], "width"), 0.21, "%s: band width", id)
		if id == "kafka-errors" || id == "timeline" {
			continue
		}
		paths := findAll(svg, "path", "series")
		require.NotEmpty(t, paths, "%s: data paths", id)
		for _, pth := range paths {
			d := attr(pth, "d")
			require.True(t, strings.HasPrefix(d, "M"), "%s: %q", id, d)
			require.Greater(t, strings.Count(d, "L"), 10, "%s: a line, not a dot", id)
		}
	}
	// The shares chart: analyzer-2 at 0 % inside the band, 30 % outside.
	shares := plots["shares"]
	fr := plotFrame(t, shares)
	fr.lo, fr.hi = 0, 100
	var a2 string
	for _, pth := range findAll(shares, "path", "series") {
		if attr(pth, "data-series") == "analyzer-2" {
			a2 = attr(pth, "d")
		}
	}
	require.NotEmpty(t, a2)
	inBand, outside := 0, 0
	for _, pt := range pathPoints(t, a2) {
		tMs := fr.from + int64((pt[0]-fr.x)/fr.w*float64(fr.to-fr.from))
		s := time.UnixMilli(tMs).Sub(t0).Seconds()
		switch {
		case s > 22 && s < 35:
			require.InDelta(t, fr.Y(0), pt[1], 0.2, "analyzer-2 at 0%% at %.0fs", s)
			inBand++
		case s > 0 && s < 19:
			require.InDelta(t, fr.Y(30), pt[1], 0.2, "analyzer-2 at 30%% at %.0fs", s)
			outside++
		}
	}
	require.Positive(t, inBand)
	require.Positive(t, outside)
	// Every check sample is a point, coloured by whether it held.
	var pass, fail int
	for _, c := range e.Checks {
		for _, s := range c.Samples {
			if s.Holds {
				pass++
			} else {
				fail++
			}
		}
	}
	var gotPass, gotFail int
	for id, svg := range plots {
		if strings.HasPrefix(id, "check-") {
			gotPass += len(findAll(svg, "circle", "pass"))
			gotFail += len(findAll(svg, "circle", "fail"))
		}
	}
	require.Equal(t, pass, gotPass)
	require.Equal(t, fail, gotFail)
	// The ledger, the verdict, TTD/TTR and Grafana's window.
	text := string(page)
	requireHas(t, text, "27000")
	requireHas(t, text, "PASSED")
	requireHas(t, text, "2.0s")
	requireHas(t, text, fmt.Sprintf("/d/dsp-resilience?from=%d&amp;to=%d", e.Charts.From.UnixMilli(), e.Charts.To.UnixMilli()))
	requireHas(t, text, "docker kill --signal KILL dsplab-analyzer-2-1")
	requireHas(t, text, "<code>4bf92f35</code> 181 ms at &#43;25.0s")
	requireHas(t, text, url.QueryEscape(`"query":"4bf92f3577b34da6a3ce929d0e0e4736"`))
	// The stand-in was asked each chart's queries and each check's once.
	require.Len(t, p.queries, 12)
}

func TestALedgerFieldAddedLaterShowsInTheReportWithoutAChange(t *testing.T) {
	// The ledger is rendered from its JSON: a new field (the exact ledger
	// of issue 15, say) is a row as soon as it is in the struct.
	rows := ledgerRows(Ledger{})
	require.Equal(t, "accepted (distributor)", rows[0].Name)
	require.Equal(t, "—", rows[0].Value)
	require.Equal(t, "[1,2]", jsonValue(json.RawMessage(`[1,2]`)))
	require.Equal(t, "12", jsonValue(json.RawMessage(`12`)))
}

func TestTheReportOfARecordRestoredFromDiskDrawsTheSameCharts(t *testing.T) {
	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Second).UTC()
	e := syntheticCrash(t0)
	p := newPromStandIn(t, crashScript(t0))
	e.Charts = NewManager(Options{Querier: prom.New(p.URL)}).captureCharts(context.Background(), e, *e.EndedAt)
	b, err := json.Marshal(record{Experiment: e})
	require.NoError(t, err)
	require.Less(t, len(b), 512<<10, "a record stays small")
	t.Logf("a 100 s run's record with its charts: %d bytes", len(b))
	var back record
	require.NoError(t, json.Unmarshal(b, &back))
	// Prometheus is gone: the page comes from the record alone.
	p.Close()
	require.Equal(t, svgs(strictParse(t, HTML(e, ReportLinks{})))["latency"].String(), svgs(strictParse(t, HTML(back.Experiment, ReportLinks{})))["latency"].String())
}

func TestChartWindowKeepsEverySeriesWithinMaxPoints(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	for _, d := range []time.Duration{time.Second, time.Minute, 10 * time.Minute, 3 * time.Hour} {
		from, to, step := chartWindow(t0, t0.Add(d))
		require.GreaterOrEqual(t, step, minStep)
		require.LessOrEqual(t, int(to.Sub(from)/step)+1, MaxPoints, "%s", d)
	}
	ps := make([]Point, 1000)
	for i := range ps {
		ps[i] = Point{T: int64(i), V: float64(i)}
	}
	got := thin(ps, MaxPoints)
	require.LessOrEqual(t, len(got), MaxPoints)
	require.Equal(t, ps[999], got[len(got)-1])
}

// --- helpers: a strict reading of the page, and of its SVGs ---

// voidElements have no end tag in HTML.
var voidElements = map[string]bool{"area": true, "base": true, "br": true, "col": true, "embed": true, "hr": true, "img": true, "input": true, "link": true, "meta": true, "source": true, "track": true, "wbr": true}

// strictParse tokenizes the page (golang.org/x/net/html) and fails on
// anything a browser would have to repair: no doctype, an end tag that
// closes nothing or the wrong element, an element left open; then parses
// it into a tree.
func strictParse(t *testing.T, page []byte) *html.Node {
	t.Helper()
	z := html.NewTokenizer(bytes.NewReader(page))
	var stack []string
	sawDoctype := false
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			require.ErrorIs(t, z.Err(), io.EOF)
			require.True(t, sawDoctype, "<!DOCTYPE html> first")
			require.Empty(t, stack, "elements left open")
			doc, err := html.Parse(bytes.NewReader(page))
			require.NoError(t, err)
			return doc
		case html.DoctypeToken:
			sawDoctype = true
		case html.StartTagToken:
			name, _ := z.TagName()
			if !voidElements[string(name)] {
				stack = append(stack, string(name))
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			require.NotEmpty(t, stack, "</%s> closes nothing", name)
			require.Equal(t, stack[len(stack)-1], string(name), "</%s> closes <%s>", name, stack[len(stack)-1])
			stack = stack[:len(stack)-1]
		}
	}
}

// requireSelfContained: no script, no stylesheet or image from anywhere,
// no CSS url(); only anchors may point at http(s) URLs (Grafana).
func requireSelfContained(t *testing.T, doc *html.Node) {
	t.Helper()
	walk(doc, func(n *html.Node) {
		if n.Type == html.TextNode && n.Parent != nil && n.Parent.Data == "style" {
			require.NotContains(t, n.Data, "url(")
			require.NotContains(t, n.Data, "@import")
		}
		if n.Type != html.ElementNode {
			return
		}
		require.NotContains(t, []string{"script", "img", "iframe", "object", "embed"}, n.Data)
		if n.Data == "link" { // only the empty icon, so the browser asks for none
			require.Equal(t, "data:,", attr(n, "href"))
			return
		}
		for _, a := range n.Attr {
			low := strings.ToLower(a.Val)
			if a.Key == "src" || (a.Key == "href" && n.Data != "a") || a.Key == "xlink:href" {
				t.Fatalf("<%s %s=%q>: an asset reference", n.Data, a.Key, a.Val)
			}
			if a.Key == "style" {
				require.NotContains(t, low, "url(")
			}
		}
	})
}

func walk(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

type svgNode struct{ *html.Node }

func (s svgNode) String() string {
	var b bytes.Buffer
	html.Render(&b, s.Node)
	return b.String()
}

// svgs are the page's SVGs by data-chart.
func svgs(doc *html.Node) map[string]svgNode {
	out := map[string]svgNode{}
	walk(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "svg" {
			out[attr(n, "data-chart")] = svgNode{n}
		}
	})
	return out
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func attrF(t *testing.T, n *html.Node, key string) float64 {
	f, err := strconv.ParseFloat(attr(n, key), 64)
	require.NoError(t, err, "%s=%q", key, attr(n, key))
	return f
}

func findAll(s svgNode, tag, class string) []*html.Node {
	var out []*html.Node
	walk(s.Node, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == tag && strings.Contains(" "+attr(n, "class")+" ", " "+class+" ") {
			out = append(out, n)
		}
	})
	return out
}

// plotFrame reads the plot area and its window back from the SVG.
func plotFrame(t *testing.T, s svgNode) frame {
	plots := findAll(s, "rect", "plot")
	require.Len(t, plots, 1)
	p := plots[0]
	from, _ := strconv.ParseInt(attr(p, "data-from"), 10, 64)
	to, _ := strconv.ParseInt(attr(p, "data-to"), 10, 64)
	return frame{from: from, to: to, x: attrF(t, p, "x"), y: attrF(t, p, "y"), w: attrF(t, p, "width"), h: attrF(t, p, "height")}
}

// pathPoints reads "M x y L x y ..." back.
func pathPoints(t *testing.T, d string) [][2]float64 {
	f := strings.Fields(d)
	var out [][2]float64
	for i := 0; i+1 < len(f); i += 2 {
		x, err := strconv.ParseFloat(strings.TrimLeft(f[i], "ML"), 64)
		require.NoError(t, err)
		y, err := strconv.ParseFloat(f[i+1], 64)
		require.NoError(t, err)
		out = append(out, [2]float64{x, y})
	}
	return out
}

// TestWriteSyntheticReport writes the synthetic report for a look in a
// browser: REPORT_OUT=/tmp/report.html go test -run TestWriteSyntheticReport.
func TestWriteSyntheticReport(t *testing.T) {
	out := os.Getenv("REPORT_OUT")
	if out == "" {
		t.Skip("set REPORT_OUT to a file to write the page to")
	}
	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Second).UTC()
	e := syntheticCrash(t0)
	p := newPromStandIn(t, crashScript(t0))
	e.Charts = NewManager(Options{Querier: prom.New(p.URL)}).captureCharts(context.Background(), e, *e.EndedAt)
	require.NoError(t, os.WriteFile(out, HTML(e, ReportLinks{GrafanaURL: "http://localhost:3000"}), 0o644))
}

func TestARunningExperimentsPageShowsItsPlannedFaultsAndNoCharts(t *testing.T) {
	t0 := time.Now().Add(-30 * time.Second).UTC()
	e := syntheticCrash(t0)
	e.State, e.EndedAt, e.Faults, e.Charts = StateRunning, nil, nil, nil
	for i := range e.Checks {
		e.Checks[i].Passed = false
	}
	doc := strictParse(t, HTML(e, ReportLinks{}))
	requireSelfContained(t, doc)
	tl := svgs(doc)["timeline"]
	bands := findAll(tl, "rect", "fault")
	require.Len(t, bands, 1, "the fault planned at 20 s has begun")
	fr := plotFrame(t, tl)
	require.InDelta(t, fr.X(t0.Add(20*time.Second).UnixMilli()), attrF(t, bands[0], "x"), 0.11)
	page := string(HTML(e, ReportLinks{}))
	requireHas(t, page, "RUNNING")
	requireHas(t, page, "it is still running")
}

// requireHas fails unless page has s (without dumping the page).
func requireHas(t *testing.T, page, s string) {
	t.Helper()
	require.True(t, strings.Contains(page, s), "the page has %s", s)
}

func TestTheReportPageShowsTheExactLedgerWithItsExamplesAndExpectations(t *testing.T) {
	e := syntheticCrash(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	i := func(n int64) *int64 { return &n }
	at := e.StartedAt.Add(30 * time.Second)
	e.ExactLedger = &ledgercheck.Result{JobIDs: []string{"t-1"}, Attempted: i(27000), Accepted: i(27000), AcceptedNotWritten: i(0),
		Counts: ledgercheck.Counts{Written: 27000, Processed: 26999, Processings: 27011, Duplicates: 12, Redelivered: 12, Lost: 1},
		Examples: ledgercheck.Examples{
			Lost: []ledgercheck.Example{{PacketID: "t-1-3-118", Written: []ledgercheck.Position{{Topic: "logs.analyzer-2", Partition: 0, Offset: 4711}}}},
			Duplicates: []ledgercheck.Example{{PacketID: "t-1-2-7", Processed: []ledgercheck.Processing{
				{Analyzer: "analyzer-2", Delivery: "at-least-once", ProcessedAt: at, Ledger: ledgercheck.Position{Topic: "ledger.processed", Offset: 9}},
				{Analyzer: "analyzer-2", Delivery: "at-least-once", ProcessedAt: at.Add(6 * time.Second), Ledger: ledgercheck.Position{Topic: "ledger.processed", Offset: 99}}}}}}}
	e.LedgerChecks = []LedgerCheck{{Count: "lost", Comparator: "==", Threshold: 0, Value: i(1), Passed: false}}
	page := string(HTML(e, ReportLinks{}))
	for _, want := range []string{"Delivery ledger (exact, from Kafka)", "<th>lost</th><td>1</td>", "<th>duplicates</th><td>12 (12 re-deliveries)</td>",
		"<code>t-1-3-118</code>: written logs.analyzer-2/0@4711", "<code>t-1-2-7</code>: processed by analyzer-2 (at-least-once)",
		"ledger ledger.processed/0@99", `<span class="result fail">failed</span> lost == 0 (got 1)`, "Metric ledger (cross-check)"} {
		require.Contains(t, page, want)
	}
	e.ExactLedger, e.LedgerNote = nil, "Kafka is off (KAFKA_BROKERS=off)"
	require.Contains(t, string(HTML(e, ReportLinks{})), "Not read: Kafka is off (KAFKA_BROKERS=off)")
}
