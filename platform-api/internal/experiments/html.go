package experiments

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/ledgercheck"
)

// ReportLinks are where the report's links point.
type ReportLinks struct {
	// GrafanaURL is Grafana as the reader's browser reaches it
	// (GRAFANA_PUBLIC_URL, http://localhost:3000); empty: no links.
	GrafanaURL string
}

// HTML renders an experiment's report as one self-contained page: inline
// CSS and SVG, no script, no external asset (it works offline and from a
// file), laid out to print on A4.
func HTML(e Experiment, links ReportLinks) []byte {
	var b bytes.Buffer
	if err := reportTmpl.Execute(&b, reportView(e, links)); err != nil {
		// The template is fixed and its data plain values: an error is a
		// bug, shown rather than an empty page.
		return []byte("<!DOCTYPE html><title>report</title><pre>" + template.HTMLEscapeString(err.Error()) + "</pre>")
	}
	return b.Bytes()
}

// chartView is one chart of the HTML report, drawn.
type chartView struct {
	Chart
	SVG    template.HTML
	Legend []legendItem
}

// legendItem is a series name and its colour.
type legendItem struct{ Name, Colour string }

// linkView is a link of the report (Grafana, Prometheus).
type linkView struct{ Name, URL string }

// rowView is a name and a value of a summary table.
type rowView struct{ Name, Value string }

// checkView is a check as the HTML report shows it: its result and chart.
type checkView struct {
	CheckResult
	Result string
	Class  string
	Values string
	SVG    template.HTML
}

// reportView is what the HTML report template shows of e: its charts,
// check rows, timeline, ledgers and links.
func reportView(e Experiment, links ReportLinks) map[string]any {
	from, to, step := window(e)
	fws := faultWindowsOf(e)
	var charts []chartView
	if e.Charts != nil {
		for _, c := range e.Charts.Charts {
			charts = append(charts, chartView{Chart: c, SVG: template.HTML(chartSVG(c, e.StartedAt, from, to, step, fws)), Legend: legend(c.Series)})
		}
	}
	var checks []checkView
	for i, c := range e.Checks {
		var rng Chart
		if e.Charts != nil && i < len(e.Charts.Checks) {
			rng = e.Charts.Checks[i]
		}
		result, class := "passed", "pass"
		switch {
		case e.State == StateRunning && !c.Passed:
			result, class = "running", "running"
		case c.Error == notJudged:
			result, class = notJudged, "running"
		case !c.Passed:
			result, class = "failed", "fail"
			if c.Error != "" {
				result += " (" + c.Error + ")"
			}
		}
		checks = append(checks, checkView{CheckResult: c, Result: result, Class: class, Values: values(c.Samples),
			SVG: template.HTML(checkSVG(i, c, rng, e.StartedAt, from, to, step, fws))})
	}
	return map[string]any{
		"E": e, "Timeline": template.HTML(timelineSVG(e)), "Charts": charts, "Checks": checks,
		"Faults": fws, "Ledger": ledgerRows(e.Ledger), "Exact": exactView(e), "Links": grafanaLinks(links.GrafanaURL, e, from, to), "Traces": traceLinks(links.GrafanaURL, e),
		"TTD": secs(e.TimeToDetectSeconds), "TTR": secs(e.TimeToRecoverSeconds),
		"Killed":    e.Ledger.Lost != nil && *e.Ledger.Lost > 0 && killedAnalyzer(e.Definition),
		"Chartless": e.Charts == nil, "Generated": time.Now().UTC().Format(time.RFC3339),
	}
}

// legend gives each series its palette colour.
func legend(ss []ChartSeries) []legendItem {
	out := make([]legendItem, len(ss))
	for i, s := range ss {
		out[i] = legendItem{s.Name, palette[i%len(palette)]}
	}
	return out
}

// ledgerRows lists every field of the ledger as it is encoded, the known
// ones first with their names for people, then any other in key order: a
// field added to Ledger shows without a change here.
func ledgerRows(l Ledger) []rowView {
	b, _ := json.Marshal(l)
	var m map[string]json.RawMessage
	json.Unmarshal(b, &m)
	known := []struct{ key, name string }{
		{"accepted", "accepted (distributor)"}, {"processed", "processed (analyzers, unique)"},
		{"duplicates", "duplicates"}, {"lost", "lost"}, {"k6Accepted", "accepted (k6)"},
	}
	var out []rowView
	for _, k := range known {
		out = append(out, rowView{k.name, jsonValue(m[k.key])})
		delete(m, k.key)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, rowView{k, jsonValue(m[k])})
	}
	return out
}

// jsonValue shows a JSON value: numbers whole where they are, absent as
// a dash, anything else as compact JSON (cut at 400 characters).
func jsonValue(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return "—"
	}
	var f float64
	if json.Unmarshal(raw, &f) == nil {
		return trimNumber(f)
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	out := string(raw)
	if len(out) > 400 {
		out = out[:400] + "…"
	}
	return out
}

// trimNumber formats a threshold without a needless ".0".
func trimNumber(f float64) string {
	if f == float64(int64(f)) {
		return fmt.Sprintf("%d", int64(f))
	}
	return fmt.Sprintf("%g", f)
}

// Grafana dashboards of the stack (grafana/dashboards/*.json uids).
var dashboards = []struct{ uid, name string }{
	{"dsp-resilience", "Resilience"}, {"dsp-errors", "Errors & latency"}, {"dsp-load", "Load & performance"}, {"dsp-ledger", "Delivery ledger"},
}

// grafanaLinks open the same window in Grafana's dashboards, in the k6
// dashboard for its job, and in Explore on Tempo's traces.
func grafanaLinks(base string, e Experiment, from, to time.Time) []linkView {
	if base == "" {
		return nil
	}
	base = strings.TrimSuffix(base, "/")
	rng := fmt.Sprintf("from=%d&to=%d", from.UnixMilli(), to.UnixMilli())
	var out []linkView
	for _, d := range dashboards {
		out = append(out, linkView{d.name, base + "/d/" + d.uid + "?" + rng})
	}
	if e.TrafficJobID != "" {
		out = append(out, linkView{"k6 load test", base + "/d/dsp-k6?" + rng + "&var-job_id=" + url.QueryEscape(e.TrafficJobID)})
	}
	panes := fmt.Sprintf(`{"traces":{"datasource":"tempo","queries":[{"refId":"A","datasource":{"type":"tempo","uid":"tempo"},"queryType":"traceqlSearch","limit":20,"filters":[]}],"range":{"from":"%d","to":"%d"}}}`,
		from.UnixMilli(), to.UnixMilli())
	out = append(out, linkView{"Traces in Tempo", base + "/explore?schemaVersion=1&orgId=1&panes=" + url.QueryEscape(panes)})
	return out
}

// traceView is a trace sampled during the run, with its link in Grafana.
type traceView struct {
	TraceSample
	URL string
}

// traceLinks open the sample traces in Grafana's Explore on Tempo.
func traceLinks(base string, e Experiment) []traceView {
	if e.Charts == nil {
		return nil
	}
	var out []traceView
	for _, t := range e.Charts.Traces {
		v := traceView{TraceSample: t}
		if base != "" {
			panes := fmt.Sprintf(`{"trace":{"datasource":"tempo","queries":[{"refId":"A","datasource":{"type":"tempo","uid":"tempo"},"queryType":"traceql","query":%q}],"range":{"from":"%d","to":"%d"}}}`,
				t.TraceID, t.At.Add(-time.Minute).UnixMilli(), t.At.Add(time.Minute).UnixMilli())
			v.URL = strings.TrimSuffix(base, "/") + "/explore?schemaVersion=1&orgId=1&panes=" + url.QueryEscape(panes)
		}
		out = append(out, v)
	}
	return out
}

// reportFuncs are the report templates' functions.
var reportFuncs = template.FuncMap{
	"rel": func(e Experiment, t time.Time) string {
		return fmt.Sprintf("%+.1fs", t.Sub(e.StartedAt).Seconds())
	},
	"clock":  func(t time.Time) string { return t.UTC().Format("15:04:05") },
	"ms":     func(s float64) string { return formatValue(s, "s") },
	"dur":    func(a, b time.Time) string { return fmt.Sprintf("%.0fs", b.Sub(a).Seconds()) },
	"upper":  func(s any) string { return strings.ToUpper(fmt.Sprint(s)) },
	"labels": labels,
	"rfc":    func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}

// reportTmpl is the HTML report of one experiment.
var reportTmpl = template.Must(template.New("report").Funcs(reportFuncs).Parse(pageHead + `
<title>{{.E.Name}} — {{upper .E.State}} — DSP Lab experiment {{.E.ID}}</title>
</head>
<body>
<header>
<h1>{{.E.Name}} <span class="verdict {{.E.State}}">{{upper .E.State}}</span></h1>
{{with .E.Definition.Description}}<p class="desc">{{.}}</p>{{end}}
{{with .E.Reason}}<p class="reason">{{.}}</p>{{end}}
<table class="facts">
<tr><th>id</th><td><code>{{.E.ID}}</code></td><th>started</th><td>{{rfc .E.StartedAt}}</td>{{with .E.EndedAt}}<th>ended</th><td>{{rfc .}} ({{dur $.E.StartedAt .}})</td>{{end}}</tr>
<tr><th>time to detect</th><td>{{.TTD}} <small>{{.E.DetectedBy}}</small></td><th>time to recover</th><td>{{.TTR}}</td>{{with .E.TrafficJobID}}<th>traffic job</th><td><code>{{.}}</code></td>{{end}}</tr>
</table>
{{with .Links}}<nav class="links">Same window in Grafana: {{range $i, $l := .}}{{if $i}} · {{end}}<a href="{{$l.URL}}">{{$l.Name}}</a>{{end}}</nav>{{end}}
{{with .Traces}}<nav class="links">Slowest ingest requests with a trace: {{range $i, $t := .}}{{if $i}} · {{end}}{{if $t.URL}}<a href="{{$t.URL}}">{{end}}<code>{{printf "%.8s" $t.TraceID}}</code> {{ms $t.Seconds}} at {{rel $.E $t.At}}{{if $t.URL}}</a>{{end}}{{end}}</nav>{{end}}
</header>

<section>
<h2>Timeline</h2>
<p class="hint">Time in seconds since the start. Shaded bands are the faults, drawn on every chart below; ◆ marks config changes, detection, recovery and alerts (hover for details).</p>
{{.Timeline}}
</section>

<section>
<h2>Charts</h2>
{{if .Chartless}}<p class="hint">No charts: they are read from Prometheus when the experiment ends{{if eq .E.State "running"}} (it is still running){{end}}.</p>{{end}}
{{range .Charts}}<figure class="chart-box" id="chart-{{.ID}}">
<figcaption><b>{{.Title}}</b>{{with .Unit}} ({{.}}){{end}} — <span class="look">{{.Look}}</span></figcaption>
{{.SVG}}
<div class="legend">{{range .Legend}}<span><i style="background:{{.Colour}}"></i>{{.Name}}</span>{{end}}{{with .Error}}<span class="err">{{.}}</span>{{end}}</div>
<details><summary>PromQL</summary>{{range .Queries}}<code>{{.Expr}}</code><br>{{end}}</details>
</figure>
{{end}}
</section>

<section>
<h2>Checks</h2>
<p class="hint">Each check's samples are the points: <span class="pass">●</span> held, <span class="fail">●</span> did not; the dashed line is the threshold.</p>
{{range .Checks}}<figure class="chart-box check">
<figcaption><span class="result {{.Class}}">{{.Result}}</span> <b>{{.Phase}}</b>: {{.Name}} <code>{{.Query}}</code> {{.Comparator}} {{.Threshold}} ({{.Mode}})</figcaption>
{{.SVG}}
<div class="values">{{.Values}}</div>
</figure>
{{end}}
</section>

<section class="two">
<div>
<h2>Delivery ledger (exact, from Kafka)</h2>
{{with .Exact}}{{if .Note}}<p class="hint">Not read: {{.Note}}</p>{{else}}
<p class="hint">The job's packets ({{.Jobs}}), read packet by packet from <code>logs.*</code> (written before a 2xx) and the analyzers' ledger topic (each processing).{{if .Partial}} <b>{{.Partial}}</b>{{end}}</p>
<table class="ledger">{{range .Rows}}<tr><th>{{.Name}}</th><td>{{.Value}}</td></tr>{{end}}</table>
{{range .Expect}}<p><span class="result {{.Class}}">{{.Result}}</span> {{.Text}}</p>{{end}}
{{range .Examples}}<p><b>{{.Title}}</b> (first {{len .Lines}}):</p><ul class="examples">{{range .Lines}}<li><code>{{.ID}}</code>: {{.Where}}</li>{{end}}</ul>{{end}}
{{end}}{{end}}
<h3>Metric ledger (cross-check)</h3>
<table class="ledger">{{range .Ledger}}<tr><th>{{.Name}}</th><td>{{.Value}}</td></tr>{{end}}</table>
{{if .Killed}}<p class="hint">A SIGKILL hit an analyzer: what it processed after its last metric export was never exported, so the metric "lost" counts those packets too; the exact ledger above counts each packet from Kafka.</p>{{end}}
</div>
<div>
<h2>Faults</h2>
<table><tr><th>fault</th><th>from</th><th>to</th><th>command</th></tr>
{{range .Faults}}<tr><td>{{.Type}} {{.Target}}</td><td>{{rel $.E .Start}}</td><td>{{rel $.E .End}}</td><td><code>{{.Command}}</code></td></tr>{{else}}<tr><td colspan="4">none</td></tr>{{end}}
</table>
</div>
</section>

<section>
<h2>Events</h2>
<table class="events"><tr><th>t</th><th>clock</th><th>event</th><th></th></tr>
{{range .E.Timeline}}<tr><td>{{printf "%.1f" .Seconds}}s</td><td>{{clock .At}}</td><td>{{.Kind}}</td><td>{{.Message}}</td></tr>{{end}}
</table>
<h2>Alerts received</h2>
<table><tr><th>t</th><th>alert</th><th>status</th><th>labels</th><th>summary</th></tr>
{{range .E.Alerts}}<tr><td>{{rel $.E .ReceivedAt}}</td><td>{{index .Labels "alertname"}}</td><td class="{{.Status}}">{{.Status}}</td><td>{{labels .Labels}}</td><td>{{index .Annotations "summary"}}</td></tr>{{else}}<tr><td colspan="5">none</td></tr>{{end}}
</table>
</section>
<footer>DSP Lab · report generated {{.Generated}} · the same data: <code>GET /api/experiments/{{.E.ID}}/report</code></footer>
</body>
</html>
`))

// pageHead is the document's head with its whole style sheet; shared by
// the compare page.
const pageHead = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0 auto;max-width:1060px;padding:16px 24px}
h1{font-size:22px;margin:4px 0}h2{font-size:17px;margin:22px 0 6px;border-bottom:1px solid #ddd}
code{font:12px ui-monospace,Menlo,Consolas,monospace;background:#f4f4f4;padding:0 3px;word-break:break-all}
table{border-collapse:collapse;font-size:13px;margin:4px 0}th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f7f7f7;font-weight:600}table.facts th{width:110px}
.verdict{font-size:14px;padding:2px 8px;border-radius:4px;color:#fff;background:#777;vertical-align:middle}
.verdict.passed{background:#1a7f37}.verdict.failed{background:#cf222e}.verdict.aborted,.verdict.interrupted{background:#9a6700}.verdict.running{background:#0969da}
.reason{color:#555}.desc{margin:2px 0 6px}.hint{color:#666;font-size:12px;margin:2px 0}
.links{margin:8px 0}.links a{color:#0969da}
figure{margin:10px 0;break-inside:avoid;page-break-inside:avoid}figcaption{font-size:13px;margin-bottom:2px}.look{color:#666}
svg{display:block;max-width:100%;height:auto}
svg text{font:11px system-ui,sans-serif;fill:#444}svg .row{font-weight:600}
svg .plot{fill:#fff;stroke:#bbb}svg .grid{stroke:#eee}
svg .fault{fill:#d1242f;fill-opacity:.12;stroke:#d1242f;stroke-opacity:.35;stroke-dasharray:3 2}
svg .fault-bar{fill:#d1242f;fill-opacity:.55}svg .bar-label{fill:#fff;font-weight:600}svg .bar-label.outside{fill:#a40e26}
svg .traffic-bar{fill:#0969da;fill-opacity:.35}
svg .series{fill:none;stroke-width:1.8;stroke-linejoin:round;stroke-linecap:round}
svg .threshold{stroke:#555;stroke-dasharray:5 4}
svg .sample.pass,.pass{fill:#1a7f37;color:#1a7f37}svg .sample.fail,.fail{fill:#cf222e;color:#cf222e}svg .sample.nodata{fill:#999}
svg .marker path{fill:#0969da}svg .marker.detected path{fill:#bc4c00}svg .marker.recovered path{fill:#1a7f37}svg .marker.not-recovered path{fill:#cf222e}
svg .marker.alert.firing path{fill:#cf222e}svg .marker.alert.resolved path{fill:#1a7f37}
svg .empty{fill:#999;font-size:13px}
.legend{font-size:12px;display:flex;flex-wrap:wrap;gap:4px 14px}.legend i{display:inline-block;width:12px;height:3px;margin:0 4px 3px 0;vertical-align:middle}
.legend .err{color:#cf222e}.values{font-size:12px;color:#555}
.result{font-weight:600}.result.running{color:#0969da}
.two{display:grid;grid-template-columns:1fr 1.6fr;gap:20px}.two h2{margin-top:22px}
details{font-size:12px}footer{margin-top:24px;color:#888;font-size:12px}
.delta{font-size:14px}.delta li{margin:2px 0}.a{color:#0072B2}.b{color:#D55E00}
@media print{body{max-width:none;padding:0;font-size:11px}.links a{color:#222}details{display:none}h2{break-after:avoid}.two{grid-template-columns:1fr}}
</style>`

// exactLedgerView is the exact ledger as the HTML report shows it.
type exactLedgerView struct {
	Note, Jobs, Partial string
	Rows                []rowView
	Expect              []struct{ Class, Result, Text string }
	Examples            []struct {
		Title string
		Lines []struct{ ID, Where string }
	}
}

// exactView renders the exact ledger, its expectations and its examples
// (the same as report.md's).
func exactView(e Experiment) exactLedgerView {
	x := e.ExactLedger
	if x == nil {
		return exactLedgerView{Note: orDash(e.LedgerNote)}
	}
	v := exactLedgerView{Jobs: strings.Join(x.JobIDs, ", "), Partial: strings.TrimSpace(x.Error + " " + x.Truncated)}
	n := func(name string, value string) { v.Rows = append(v.Rows, rowView{Name: name, Value: value}) }
	n("attempted (k6)", inum(x.Attempted))
	n("accepted (k6, 2xx)", inum(x.Accepted))
	n("accepted, not written", inum(x.AcceptedNotWritten))
	n("written (logs.*)", fmt.Sprint(x.Written))
	n("processed (unique)", fmt.Sprint(x.Processed))
	n("duplicates", fmt.Sprintf("%d (%d re-deliveries)", x.Duplicates, x.Redelivered))
	n("lost", fmt.Sprint(x.Lost))
	n("unexpected", fmt.Sprint(x.Unexpected))
	n("unreadable", fmt.Sprint(x.Unreadable))
	for _, c := range e.LedgerChecks {
		class, result := "pass", "passed"
		if !c.Passed {
			class, result = "fail", "failed"
		}
		v.Expect = append(v.Expect, struct{ Class, Result, Text string }{class, result,
			fmt.Sprintf("%s %s %g (got %s)", c.Count, c.Comparator, c.Threshold, inum(c.Value))})
	}
	for _, g := range []struct {
		title string
		ex    []ledgercheck.Example
	}{{"Lost", x.Examples.Lost}, {"Duplicates", x.Examples.Duplicates}, {"Unexpected", x.Examples.Unexpected}} {
		if len(g.ex) == 0 {
			continue
		}
		var lines []struct{ ID, Where string }
		for _, ex := range g.ex {
			lines = append(lines, struct{ ID, Where string }{ex.PacketID, exampleWhere(ex)})
		}
		v.Examples = append(v.Examples, struct {
			Title string
			Lines []struct{ ID, Where string }
		}{g.title, lines})
	}
	return v
}
