package experiments

import (
	"fmt"
	"strings"
	"time"
)

// window is the time axis of an experiment's report: the charts' window
// when they were read, else the run with a margin on each side.
func window(e Experiment) (from, to time.Time, step time.Duration) {
	if e.Charts != nil {
		return e.Charts.From, e.Charts.To, time.Duration(e.Charts.StepSeconds * float64(time.Second))
	}
	end := time.Now()
	if e.EndedAt != nil {
		end = *e.EndedAt
	}
	return chartWindow(e.StartedAt, end)
}

// faultWindowsOf are the experiment's fault windows; while it runs (or
// for a record from before they were kept) the definition's schedule.
func faultWindowsOf(e Experiment) []FaultWindow {
	if len(e.Faults) > 0 {
		return e.Faults
	}
	var out []FaultWindow
	for i, f := range e.Definition.Faults {
		start := e.StartedAt.Add(seconds(f.AtSeconds))
		if start.After(time.Now()) {
			continue
		}
		out = append(out, FaultWindow{ID: fmt.Sprintf("planned-%d", i), Type: f.Type, Target: f.Target, Command: "(planned)", Start: start, End: start.Add(seconds(f.DurationSeconds))})
	}
	return out
}

// trafficWindow is when the experiment's traffic ran, if it had any.
func trafficWindow(e Experiment) (start, end time.Time, ok bool) {
	for _, ev := range e.Timeline {
		switch ev.Kind {
		case "traffic-started":
			start, ok = ev.At, true
		case "traffic-stopped", "traffic-ended", "traffic-stop-failed":
			end = ev.At
		}
	}
	if !ok || e.Definition.Traffic == nil {
		return start, end, false
	}
	planned := start.Add(seconds(e.Definition.Traffic.DurationSeconds))
	if end.IsZero() || end.After(planned) {
		end = planned
	}
	if e.EndedAt != nil && end.After(*e.EndedAt) {
		end = *e.EndedAt
	}
	return start, end, true
}

// marker is a point in time on the timeline.
type marker struct {
	at     time.Time
	class  string
	label  string
	detail string
}

// timelineMarkers are the config changes, detection, recovery and alerts.
func timelineMarkers(e Experiment) (config, judge, alertMarks []marker) {
	for _, ev := range e.Timeline {
		switch {
		case strings.HasPrefix(ev.Kind, "config-"):
			config = append(config, marker{ev.At, ev.Kind, strings.TrimPrefix(ev.Kind, "config-"), ev.Message})
		case ev.Kind == "detected":
			judge = append(judge, marker{ev.At, "detected", "detected", ev.Message})
		case ev.Kind == "recovered" || ev.Kind == "not-recovered":
			judge = append(judge, marker{ev.At, ev.Kind, strings.ReplaceAll(ev.Kind, "-", " "), ev.Message})
		}
	}
	for _, a := range e.Alerts {
		alertMarks = append(alertMarks, marker{a.ReceivedAt, "alert " + a.Status, a.Labels["alertname"], a.Status + ": " + a.Annotations["summary"]})
	}
	return config, judge, alertMarks
}

// timelineSVG draws the rows: traffic, each fault, config changes,
// detection and recovery, alerts; fault bands shade it from top to bottom.
func timelineSVG(e Experiment) string {
	from, to, _ := window(e)
	fws := faultWindowsOf(e)
	config, judge, alertMarks := timelineMarkers(e)
	const row = 24.0
	rows := 4 + len(fws)
	height := plotTop + plotBottom + row*float64(rows)
	f := newFrame(from, to, height)
	var b svgBuf
	b.open(f, height, "timeline", "timeline", "timeline of "+e.Name)
	b.bands(f, fws)
	b.xAxis(f, e.StartedAt)
	y := f.y
	label := func(name string) {
		b.p(`<text class="row" x="%.1f" y="%.1f" text-anchor="end">%s</text>`, f.x-6, y+row/2+4, esc(name))
	}
	label("traffic")
	if s, end, ok := trafficWindow(e); ok {
		x0, x1 := f.X(s.UnixMilli()), f.X(end.UnixMilli())
		b.p(`<rect class="traffic-bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>traffic %s</title></rect>`, x0, y+5, max(1, x1-x0), row-10, esc(e.TrafficJobID))
	}
	y += row
	for _, w := range fws {
		label(w.Type + " " + w.Target)
		x0, x1 := f.X(w.Start.UnixMilli()), f.X(w.End.UnixMilli())
		b.p(`<rect class="fault-bar" data-fault="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s</title></rect>`, esc(w.ID), x0, y+4, max(1, x1-x0), row-8, esc(w.Command))
		text := fmt.Sprintf("%s %s (%.0fs)", w.Type, w.Target, w.End.Sub(w.Start).Seconds())
		// Inside the bar when it fits (about 6.5 px a character), else after it.
		if float64(len(text))*6.5+8 < x1-x0 {
			b.p(`<text class="bar-label" x="%.1f" y="%.1f">%s</text>`, x0+4, y+row/2+4, esc(text))
		} else {
			b.p(`<text class="bar-label outside" x="%.1f" y="%.1f">%s</text>`, x1+4, y+row/2+4, esc(text))
		}
		y += row
	}
	for _, r := range []struct {
		name string
		ms   []marker
	}{{"config", config}, {"detect / recover", judge}, {"alerts", alertMarks}} {
		label(r.name)
		for i, m := range r.ms {
			x, cy := f.X(m.at.UnixMilli()), y+row/2
			b.p(`<g class="marker %s" data-at="%d"><path d="M%.1f %.1f l5 -6 l5 6 l-5 6 z"/><title>%s: %s</title></g>`, esc(m.class), m.at.UnixMilli(), x-5, cy, esc(m.label), esc(m.detail))
			if i < 6 { // more labels would overlap
				b.p(`<text class="marker-label" x="%.1f" y="%.1f">%s</text>`, x+7, cy+4, esc(m.label))
			}
		}
		y += row
	}
	b.p(`</svg>`)
	return b.String()
}
