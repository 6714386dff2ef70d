package experiments

import (
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"reflect"
	"sort"
	"strings"
	"time"
)

// Comparison is two runs side by side: what differed in their definitions,
// their verdicts, times to detect and recover, ledgers, every chart
// overlaid on one axis (seconds since each run's first fault), and the
// deltas worth noticing.
type Comparison struct {
	A RunSummary `json:"a"`
	B RunSummary `json:"b"`
	// SamePreset says both ran the same definition name.
	SamePreset bool `json:"samePreset"`
	// DefinitionDiffs lists each field that differs: "faults[0].durationSeconds: 15 → 30".
	DefinitionDiffs []string `json:"definitionDiffs"`
	// Deltas are the differences a student should notice, in words.
	Deltas []string `json:"deltas"`
	// Charts are each chart of both runs, their points' times made
	// relative to each run's first fault (milliseconds; negative before).
	Charts []ComparedChart `json:"charts"`
}

// RunSummary is one side of a comparison.
type RunSummary struct {
	ID                   string        `json:"id"`
	Name                 string        `json:"name"`
	State                State         `json:"state"`
	Reason               string        `json:"reason,omitempty"`
	StartedAt            time.Time     `json:"startedAt"`
	TimeToDetectSeconds  *float64      `json:"timeToDetectSeconds,omitempty"`
	TimeToRecoverSeconds *float64      `json:"timeToRecoverSeconds,omitempty"`
	Ledger               Ledger        `json:"ledger"`
	Anchor               time.Time     `json:"anchor"` // the first fault's start (the start without faults)
	Faults               []FaultWindow `json:"faults"`
}

// ComparedChart is one chart of both runs on the aligned axis.
type ComparedChart struct {
	ID    string        `json:"id"`
	Title string        `json:"title"`
	Unit  string        `json:"unit,omitempty"`
	A     []ChartSeries `json:"a"`
	B     []ChartSeries `json:"b"`
}

// anchor is when e's first fault started, or its start without faults.
func anchor(e Experiment) time.Time {
	a := time.Time{}
	for _, f := range faultWindowsOf(e) {
		if a.IsZero() || f.Start.Before(a) {
			a = f.Start
		}
	}
	if a.IsZero() {
		return e.StartedAt
	}
	return a
}

// summary is one side of a comparison.
func summary(e Experiment) RunSummary {
	fws := faultWindowsOf(e)
	if fws == nil {
		fws = []FaultWindow{}
	}
	return RunSummary{ID: e.ID, Name: e.Name, State: e.State, Reason: e.Reason, StartedAt: e.StartedAt, TimeToDetectSeconds: e.TimeToDetectSeconds,
		TimeToRecoverSeconds: e.TimeToRecoverSeconds, Ledger: e.Ledger, Anchor: anchor(e), Faults: fws}
}

// Compare compares run a with run b.
func Compare(a, b Experiment) Comparison {
	c := Comparison{A: summary(a), B: summary(b), SamePreset: a.Name == b.Name, DefinitionDiffs: definitionDiffs(a.Definition, b.Definition), Charts: []ComparedChart{}}
	charts := map[string]*ComparedChart{}
	add := func(e Experiment, side string) {
		if e.Charts == nil {
			return
		}
		at := anchor(e).UnixMilli()
		for _, ch := range e.Charts.Charts {
			cc, ok := charts[ch.ID]
			if !ok {
				cc = &ComparedChart{ID: ch.ID, Title: ch.Title, Unit: ch.Unit, A: []ChartSeries{}, B: []ChartSeries{}}
				charts[ch.ID] = cc
			}
			for _, s := range ch.Series {
				rel := ChartSeries{Name: s.Name, Points: make([]Point, len(s.Points))}
				for i, p := range s.Points {
					rel.Points[i] = Point{T: p.T - at, V: p.V}
				}
				if side == "a" {
					cc.A = append(cc.A, rel)
				} else {
					cc.B = append(cc.B, rel)
				}
			}
		}
	}
	add(a, "a")
	add(b, "b")
	for _, id := range chartOrder(a, b) {
		c.Charts = append(c.Charts, *charts[id])
	}
	c.Deltas = deltas(a, b, c)
	return c
}

// chartOrder is the charts' order in a, then those only b has.
func chartOrder(a, b Experiment) []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range []Experiment{a, b} {
		if e.Charts == nil {
			continue
		}
		for _, ch := range e.Charts.Charts {
			if !seen[ch.ID] {
				seen[ch.ID] = true
				out = append(out, ch.ID)
			}
		}
	}
	return out
}

// definitionDiffs lists the leaves of the two definitions (as JSON) that
// differ, by path.
func definitionDiffs(a, b Definition) []string {
	fa, fb := map[string]string{}, map[string]string{}
	flatten("", toJSON(a), fa)
	flatten("", toJSON(b), fb)
	keys := map[string]bool{}
	for k := range fa {
		keys[k] = true
	}
	for k := range fb {
		keys[k] = true
	}
	out := []string{}
	for k := range keys {
		if fa[k] != fb[k] {
			out = append(out, fmt.Sprintf("%s: %s → %s", k, orNone(fa[k]), orNone(fb[k])))
		}
	}
	sort.Strings(out)
	return out
}

// orNone is s, or "(none)" when empty.
func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// toJSON is v as generic JSON (maps, slices, numbers, strings), for
// flatten.
func toJSON(v any) any {
	b, _ := json.Marshal(v)
	var out any
	json.Unmarshal(b, &out)
	return out
}

// flatten writes v's leaves into out by path ("checks[0].threshold"), each
// as JSON, for a field-by-field comparison of two definitions.
func flatten(prefix string, v any, out map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, c, out)
		}
	case []any:
		for i, c := range x {
			flatten(fmt.Sprintf("%s[%d]", prefix, i), c, out)
		}
	case nil:
	default:
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // ">=" as written, not "\u003e=" (the page escapes it)
		enc.Encode(x)
		out[prefix] = strings.TrimSpace(b.String())
	}
}

// deltas are the differences worth a sentence: verdict, TTD, TTR, lost
// packets, and each chart's series during the first fault (median; the
// peak for lag) where they differ by more than a tenth.
func deltas(a, b Experiment, c Comparison) []string {
	out := []string{}
	if a.State != b.State {
		out = append(out, fmt.Sprintf("verdict: %s → %s", a.State, b.State))
	}
	for _, d := range []struct {
		name string
		a, b *float64
		unit string
	}{{"time to detect", a.TimeToDetectSeconds, b.TimeToDetectSeconds, "s"}, {"time to recover", a.TimeToRecoverSeconds, b.TimeToRecoverSeconds, "s"},
		{"packets lost", a.Ledger.Lost, b.Ledger.Lost, ""}, {"packets accepted", a.Ledger.Accepted, b.Ledger.Accepted, ""}} {
		if !reflect.DeepEqual(d.a, d.b) {
			out = append(out, fmt.Sprintf("%s: %s → %s", d.name, optValue(d.a, d.unit), optValue(d.b, d.unit)))
		}
	}
	faultLen := func(e Experiment) int64 {
		for _, f := range faultWindowsOf(e) {
			return f.End.Sub(f.Start).Milliseconds()
		}
		return 0
	}
	la, lb := faultLen(a), faultLen(b)
	if la == 0 || lb == 0 {
		return out
	}
	for _, ch := range c.Charts {
		peak := ch.ID == "lag"
		for _, sa := range ch.A {
			for _, sb := range ch.B {
				if sa.Name != sb.Name {
					continue
				}
				va, okA := during(sa.Points, la, peak)
				vb, okB := during(sb.Points, lb, peak)
				if !okA || !okB || !differs(va, vb) {
					continue
				}
				what := "median"
				if peak {
					what = "peak"
				}
				out = append(out, fmt.Sprintf("%s — %s during the fault (%s): %s → %s", ch.Title, sa.Name, what, formatValue(va, ch.Unit), formatValue(vb, ch.Unit)))
			}
		}
	}
	return out
}

// during is the median (or the peak) of the points from the fault's
// start (time 0) to its end: the median, because the first seconds of a
// fault still show the values from before it (detection takes a moment).
func during(ps []Point, length int64, peak bool) (float64, bool) {
	var vs []float64
	for _, p := range ps {
		if p.T >= 0 && p.T <= length {
			vs = append(vs, p.V)
		}
	}
	if len(vs) == 0 {
		return 0, false
	}
	sort.Float64s(vs)
	if peak {
		return vs[len(vs)-1], true
	}
	return vs[len(vs)/2], true
}

// differs says whether two values differ by more than a tenth (and more
// than rounding).
func differs(a, b float64) bool {
	d := math.Abs(a - b)
	return d > 0.1*max(math.Abs(a), math.Abs(b)) && d > 1e-9
}

// optValue formats an optional value in unit ("—" for none).
func optValue(v *float64, unit string) string {
	if v == nil {
		return "—"
	}
	if unit == "s" {
		return fmt.Sprintf("%.1fs", *v)
	}
	return trimNumber(*v)
}

// compareSVG draws one chart of both runs on the aligned axis: a's lines
// solid, b's dashed, one colour per series name; each run's faults shaded.
func compareSVG(ch ComparedChart, from, to int64, fa, fb []FaultWindow) string {
	var b svgBuf
	zero := time.UnixMilli(0)
	f := newFrame(time.UnixMilli(from), time.UnixMilli(to), chartH)
	b.open(f, chartH, "chart compare", ch.ID, ch.Title)
	b.bands(f, fa)
	b.bands(f, fb)
	lo, hi := valueRange(ch.A, ch.B)
	b.yAxis(&f, lo, hi, ch.Unit)
	b.xAxis(f, zero)
	colours := seriesColours(ch)
	for _, s := range ch.A {
		b.path(f, s, colours[s.Name], time.Hour, false)
	}
	for _, s := range ch.B {
		b.path(f, s, colours[s.Name], time.Hour, true)
	}
	if len(ch.A)+len(ch.B) == 0 {
		b.p(`<text class="empty" x="%.1f" y="%.1f" text-anchor="middle">no data in either run</text>`, f.x+f.w/2, f.y+f.h/2)
	}
	b.p(`</svg>`)
	return b.String()
}

// seriesColours gives each series name of a compared chart its colour,
// the same on both sides.
func seriesColours(ch ComparedChart) map[string]string {
	out := map[string]string{}
	for _, s := range append(append([]ChartSeries{}, ch.A...), ch.B...) {
		if _, ok := out[s.Name]; !ok {
			out[s.Name] = palette[len(out)%len(palette)]
		}
	}
	return out
}

// relative shifts fault windows to times since the anchor (as unix ms
// from 0, the compare chart's axis).
func relative(fws []FaultWindow, at time.Time) []FaultWindow {
	out := make([]FaultWindow, len(fws))
	for i, w := range fws {
		w.Start = time.UnixMilli(w.Start.Sub(at).Milliseconds())
		w.End = time.UnixMilli(w.End.Sub(at).Milliseconds())
		out[i] = w
	}
	return out
}

// compareWindow is the aligned axis: both runs' windows, relative.
func compareWindow(a, b Experiment) (from, to int64) {
	from, to = math.MaxInt64, math.MinInt64
	for _, e := range []Experiment{a, b} {
		f, t, _ := window(e)
		at := anchor(e)
		from, to = min(from, f.Sub(at).Milliseconds()), max(to, t.Sub(at).Milliseconds())
	}
	return from, to
}

// CompareHTML renders a comparison as one self-contained page.
func CompareHTML(a, b Experiment) []byte {
	c := Compare(a, b)
	from, to := compareWindow(a, b)
	fa, fb := relative(c.A.Faults, c.A.Anchor), relative(c.B.Faults, c.B.Anchor)
	for i := range fb {
		fb[i].ID = "b:" + fb[i].ID
	}
	type view struct {
		ComparedChart
		SVG    template.HTML
		Legend []legendItem
	}
	var charts []view
	for _, ch := range c.Charts {
		cols := seriesColours(ch)
		var lg []legendItem
		for _, s := range append(append([]ChartSeries{}, ch.A...), ch.B...) {
			if !containsLegend(lg, s.Name) {
				lg = append(lg, legendItem{s.Name, cols[s.Name]})
			}
		}
		charts = append(charts, view{ComparedChart: ch, SVG: template.HTML(compareSVG(ch, from, to, fa, fb)), Legend: lg})
	}
	var out strings.Builder
	data := map[string]any{"C": c, "Charts": charts, "A": a, "B": b,
		"TTD": [2]string{secs(a.TimeToDetectSeconds), secs(b.TimeToDetectSeconds)}, "TTR": [2]string{secs(a.TimeToRecoverSeconds), secs(b.TimeToRecoverSeconds)},
		"Ledger": ledgerPairs(a.Ledger, b.Ledger), "Generated": time.Now().UTC().Format(time.RFC3339)}
	if err := compareTmpl.Execute(&out, data); err != nil {
		return []byte("<!DOCTYPE html><title>compare</title><pre>" + esc(err.Error()) + "</pre>")
	}
	return []byte(out.String())
}

// containsLegend says whether the legend names a series already.
func containsLegend(l []legendItem, name string) bool {
	for _, x := range l {
		if x.Name == name {
			return true
		}
	}
	return false
}

// pairRow is one row of a two-sided table: a name and each side's value.
type pairRow struct{ Name, A, B string }

// ledgerPairs are the rows of two metric ledgers side by side.
func ledgerPairs(a, b Ledger) []pairRow {
	ra, rb := ledgerRows(a), ledgerRows(b)
	out := make([]pairRow, 0, len(ra))
	bv := map[string]string{}
	for _, r := range rb {
		bv[r.Name] = r.Value
	}
	for _, r := range ra {
		out = append(out, pairRow{r.Name, r.Value, bv[r.Name]})
	}
	return out
}

// compareTmpl is the HTML page of a comparison of two runs.
var compareTmpl = template.Must(template.New("compare").Funcs(reportFuncs).Parse(pageHead + `
<title>Compare {{.A.Name}} {{.A.ID}} and {{.B.Name}} {{.B.ID}} — DSP Lab</title>
</head>
<body>
<header>
<h1>Compare two runs</h1>
<p class="hint">{{if .C.SamePreset}}Both ran <b>{{.A.Name}}</b>.{{else}}Different experiments: <b>{{.A.Name}}</b> and <b>{{.B.Name}}</b>.{{end}} Charts are aligned on each run's first fault (time 0); <span class="a">a</span> is drawn solid, <span class="b">b</span> dashed.</p>
<table class="facts">
<tr><th></th><th class="a">a</th><th class="b">b</th></tr>
<tr><th>run</th><td><code>{{.A.ID}}</code> {{.A.Name}}</td><td><code>{{.B.ID}}</code> {{.B.Name}}</td></tr>
<tr><th>started</th><td>{{rfc .A.StartedAt}}</td><td>{{rfc .B.StartedAt}}</td></tr>
<tr><th>verdict</th><td><span class="verdict {{.A.State}}">{{upper .A.State}}</span> {{.A.Reason}}</td><td><span class="verdict {{.B.State}}">{{upper .B.State}}</span> {{.B.Reason}}</td></tr>
<tr><th>time to detect</th><td>{{index .TTD 0}}</td><td>{{index .TTD 1}}</td></tr>
<tr><th>time to recover</th><td>{{index .TTR 0}}</td><td>{{index .TTR 1}}</td></tr>
{{range .Ledger}}<tr><th>{{.Name}}</th><td>{{.A}}</td><td>{{.B}}</td></tr>{{end}}
</table>
</header>
<section>
<h2>What changed</h2>
<ul class="delta">{{range .C.Deltas}}<li>{{.}}</li>{{else}}<li>No difference worth a sentence.</li>{{end}}</ul>
<h2>Definition differences</h2>
{{if .C.DefinitionDiffs}}<ul>{{range .C.DefinitionDiffs}}<li><code>{{.}}</code></li>{{end}}</ul>{{else}}<p>The same definition.</p>{{end}}
</section>
<section>
<h2>Charts</h2>
{{range .Charts}}<figure class="chart-box" id="chart-{{.ID}}">
<figcaption><b>{{.Title}}</b>{{with .Unit}} ({{.}}){{end}} — seconds since the first fault</figcaption>
{{.SVG}}
<div class="legend">{{range .Legend}}<span><i style="background:{{.Colour}}"></i>{{.Name}}</span>{{end}}<span>— a ‒ ‒ b</span></div>
</figure>
{{else}}<p class="hint">Neither run has charts (they are read from Prometheus when a run ends).</p>{{end}}
</section>
<footer>DSP Lab · generated {{.Generated}} · the same data: <code>GET /api/experiments/compare?a={{.A.ID}}&amp;b={{.B.ID}}</code></footer>
</body>
</html>
`))
