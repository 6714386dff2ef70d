package experiments

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"
)

// A small SVG writer for the report's charts, rather than a chart library:
// the timeline, every chart and every check share one x axis (the
// experiment's window), and the fault bands, check samples and markers
// must land on exactly the same pixels in each; a library lays out its own
// axes and has no shaded ranges (go-chart, MIT) or brings a font and
// raster stack for a few lines (gonum/plot, BSD-3). The output is plain
// SVG 1.1 inlined in the page, with classes and data-* attributes a test
// (or a script) can read back.

// Geometry shared by every SVG of a report.
const (
	svgWidth   = 1000.0
	plotLeft   = 130.0 // room for y labels and the timeline's row names
	plotRight  = 16.0
	plotTop    = 10.0
	plotBottom = 22.0
	chartH     = 190.0
	checkH     = 120.0
)

// palette for series, in order (colour-blind friendly, Okabe–Ito).
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"}

// frame maps a time window and a value range onto a plot area.
type frame struct {
	from, to   int64 // unix ms
	x, y, w, h float64
	lo, hi     float64
}

// newFrame is the plot area of a chart over from..to, height high.
func newFrame(from, to time.Time, height float64) frame {
	return frame{from: from.UnixMilli(), to: max(to.UnixMilli(), from.UnixMilli()+1), x: plotLeft, y: plotTop, w: svgWidth - plotLeft - plotRight, h: height - plotTop - plotBottom, hi: 1}
}

// X is the pixel column of a time (unix ms), clamped to the plot.
func (f frame) X(ms int64) float64 {
	r := float64(ms-f.from) / float64(f.to-f.from)
	return f.x + f.w*min(1, max(0, r))
}

// Y is the pixel row of a value.
func (f frame) Y(v float64) float64 {
	r := (v - f.lo) / (f.hi - f.lo)
	return f.y + f.h*(1-min(1, max(0, r)))
}

// svgBuf is an SVG document being written.
type svgBuf struct{ strings.Builder }

// p writes a formatted line of SVG.
func (b *svgBuf) p(format string, a ...any) { fmt.Fprintf(b, format, a...) }

// esc escapes s for SVG text and attributes.
func esc(s string) string { return html.EscapeString(s) }

// open starts an SVG chart of the frame and its plot area.
func (b *svgBuf) open(f frame, height float64, class, id, label string) {
	b.p(`<svg xmlns="http://www.w3.org/2000/svg" class="%s" data-chart="%s" viewBox="0 0 %g %g" width="100%%" role="img" aria-label="%s">`, class, esc(id), svgWidth, height, esc(label))
	b.p(`<rect class="plot" x="%.1f" y="%.1f" width="%.1f" height="%.1f" data-from="%d" data-to="%d"/>`, f.x, f.y, f.w, f.h, f.from, f.to)
}

// bands shades the faults' windows across the plot.
func (b *svgBuf) bands(f frame, fws []FaultWindow) {
	for _, w := range fws {
		x0, x1 := f.X(w.Start.UnixMilli()), f.X(w.End.UnixMilli())
		b.p(`<rect class="fault" data-fault="%s" data-start="%d" data-end="%d" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s %s: %s</title></rect>`,
			esc(w.ID), w.Start.UnixMilli(), w.End.UnixMilli(), x0, f.y, max(1, x1-x0), f.h, esc(w.Type), esc(w.Target), esc(w.Command))
	}
}

// xAxis draws ticks in seconds since the experiment's start.
func (b *svgBuf) xAxis(f frame, start time.Time) {
	span := float64(f.to-f.from) / 1000
	step := niceStep(span / 8)
	s0 := float64(f.from-start.UnixMilli()) / 1000
	for s := math.Ceil(s0/step) * step; s <= s0+span+1e-9; s += step {
		x := f.X(start.UnixMilli() + int64(s*1000))
		b.p(`<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, x, f.y, x, f.y+f.h)
		b.p(`<text class="tick" x="%.1f" y="%.1f" text-anchor="middle">%gs</text>`, x, f.y+f.h+14, s)
	}
}

// yAxis sets f's value range from lo..hi and draws its ticks.
func (b *svgBuf) yAxis(f *frame, lo, hi float64, unit string) {
	if unit == "%" {
		lo, hi = 0, max(100, hi)
	}
	lo = min(0, lo)
	if hi <= lo {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / 4)
	f.lo, f.hi = math.Floor(lo/step)*step, math.Ceil(hi/step)*step
	for v := f.lo; v <= f.hi+step/2; v += step {
		y := f.Y(v)
		b.p(`<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, f.x, y, f.x+f.w, y)
		b.p(`<text class="tick" x="%.1f" y="%.1f" text-anchor="end">%s</text>`, f.x-6, y+4, esc(formatValue(v, unit)))
	}
}

// niceStep rounds a step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// formatValue writes v in unit: seconds under 1 as milliseconds.
func formatValue(v float64, unit string) string {
	switch {
	case unit == "s" && v != 0 && math.Abs(v) < 1:
		return trimFloat(v*1000) + " ms"
	case unit == "%":
		return trimFloat(v) + "%"
	case unit == "" || unit == "records":
		return trimFloat(v)
	}
	return trimFloat(v) + " " + unit
}

// trimFloat is an axis label: three significant digits, k and M for
// large values.
func trimFloat(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.3gk", v/1e3)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// path draws one series; a gap longer than 2.5 steps breaks the line.
func (b *svgBuf) path(f frame, s ChartSeries, colour string, step time.Duration, dash bool) {
	var d strings.Builder
	var prev int64
	for i, p := range s.Points {
		cmd := "L"
		if i == 0 || time.Duration(p.T-prev)*time.Millisecond > step*5/2 {
			cmd = "M"
		}
		fmt.Fprintf(&d, "%s%.1f %.1f ", cmd, f.X(p.T), f.Y(p.V))
		prev = p.T
	}
	if d.Len() == 0 {
		return
	}
	extra := ""
	if dash {
		extra = ` stroke-dasharray="6 3"`
	}
	b.p(`<path class="series" data-series="%s" d="%s" stroke="%s"%s/>`, esc(s.Name), strings.TrimSpace(d.String()), colour, extra)
}

// valueRange is the lowest and highest value of the series.
func valueRange(series ...[]ChartSeries) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, ss := range series {
		for _, s := range ss {
			for _, p := range s.Points {
				lo, hi = min(lo, p.V), max(hi, p.V)
			}
		}
	}
	if math.IsInf(lo, 0) {
		return 0, 1
	}
	return lo, hi
}

// chartSVG draws one chart with the fault bands.
func chartSVG(c Chart, start time.Time, from, to time.Time, step time.Duration, fws []FaultWindow) string {
	var b svgBuf
	f := newFrame(from, to, chartH)
	b.open(f, chartH, "chart", c.ID, c.Title)
	b.bands(f, fws)
	lo, hi := valueRange(c.Series)
	b.yAxis(&f, lo, hi, c.Unit)
	b.xAxis(f, start)
	for i, s := range c.Series {
		b.path(f, s, palette[i%len(palette)], step, false)
	}
	if len(c.Series) == 0 {
		b.p(`<text class="empty" x="%.1f" y="%.1f" text-anchor="middle">no data in this window</text>`, f.x+f.w/2, f.y+f.h/2)
	}
	b.p(`</svg>`)
	return b.String()
}

// checkSVG draws a check: its query's range (when it has one), the
// threshold, and every sample as a point coloured by whether it held.
func checkSVG(i int, cr CheckResult, rng Chart, start, from, to time.Time, step time.Duration, fws []FaultWindow) string {
	var b svgBuf
	f := newFrame(from, to, checkH)
	b.open(f, checkH, "check-chart", fmt.Sprintf("check-%d", i), cr.Name)
	b.bands(f, fws)
	samples := ChartSeries{Name: "samples"}
	for _, s := range cr.Samples {
		if s.Value != nil {
			samples.Points = append(samples.Points, Point{T: s.At.UnixMilli(), V: *s.Value})
		}
	}
	lo, hi := valueRange(rng.Series, []ChartSeries{samples, {Points: []Point{{V: cr.Threshold}}}})
	b.yAxis(&f, lo, hi, "")
	b.xAxis(f, start)
	for j, s := range rng.Series {
		b.path(f, s, palette[j%len(palette)], step, false)
	}
	y := f.Y(cr.Threshold)
	b.p(`<line class="threshold" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"><title>threshold %s %g</title></line>`, f.x, y, f.x+f.w, y, esc(cr.Comparator), cr.Threshold)
	for _, s := range cr.Samples {
		x := f.X(s.At.UnixMilli())
		if s.Value == nil {
			b.p(`<circle class="sample nodata" cx="%.1f" cy="%.1f" r="3.5"><title>no data at %s</title></circle>`, x, f.y+f.h, s.At.Format(time.TimeOnly))
			continue
		}
		class := "fail"
		if s.Holds {
			class = "pass"
		}
		b.p(`<circle class="sample %s" data-at="%d" cx="%.1f" cy="%.1f" r="3.5"><title>%g at %s</title></circle>`, class, s.At.UnixMilli(), x, f.Y(*s.Value), *s.Value, s.At.Format(time.TimeOnly))
	}
	b.p(`</svg>`)
	return b.String()
}
