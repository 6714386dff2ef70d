package experiments

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/prom"
)

// twoRuns are the synthetic crash run (a) and a second run (b), an hour
// later, whose fault lasts 10 s and whose p99 during it is 40 ms.
func twoRuns(t *testing.T) (Experiment, Experiment) {
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Second).UTC()
	a := syntheticCrash(t0)
	a.Charts = NewManager(Options{Querier: prom.New(newPromStandIn(t, crashScript(t0)).URL)}).captureCharts(context.Background(), a, *a.EndedAt)
	t1 := t0.Add(time.Hour)
	b := syntheticCrash(t1)
	b.ID = "x-second"
	b.Definition.Faults[0].DurationSeconds = 10
	b.Faults[0].End = b.Faults[0].Start.Add(10 * time.Second)
	ttd := 1.0
	b.TimeToDetectSeconds = &ttd
	base := crashScript(t1)
	script := func(q string, at time.Time) map[string]float64 {
		s := at.Sub(t1).Seconds()
		if strings.Contains(q, "histogram_quantile(0.99") && s >= 21 && s < 31 {
			return map[string]float64{"": 0.04}
		}
		if s >= 31 && s < 36 { // back 5 s earlier than a
			return base(q, t1.Add(-time.Minute))
		}
		return base(q, at)
	}
	b.Charts = NewManager(Options{Querier: prom.New(newPromStandIn(t, script).URL)}).captureCharts(context.Background(), b, *b.EndedAt)
	return a, b
}

func TestComparingTwoRunsAlignsThemOnTheFirstFaultAndNamesTheDeltas(t *testing.T) {
	a, b := twoRuns(t)
	c := Compare(a, b)
	require.True(t, c.SamePreset)
	require.Equal(t, []string{"faults[0].durationSeconds: 15 → 10"}, c.DefinitionDiffs)
	require.Contains(t, c.Deltas, "time to detect: 2.0s → 1.0s")
	require.Contains(t, c.Deltas, "Ingest latency p50 / p99 — p99 during the fault (median): 180 ms → 40 ms")
	// Aligned: both runs' latency series jump at time 0 ± one step.
	for _, ch := range c.Charts {
		if ch.ID != "latency" {
			continue
		}
		for _, side := range [][]ChartSeries{ch.A, ch.B} {
			for _, s := range side {
				if s.Name != "p99" {
					continue
				}
				var jump int64
				for i := 1; i < len(s.Points); i++ {
					if s.Points[i].V > s.Points[i-1].V*2 {
						jump = s.Points[i].T
						break
					}
				}
				require.InDelta(t, 1000, jump, 2000, "p99 rises about 1 s after the fault starts in both runs")
			}
		}
	}
	page := CompareHTML(a, b)
	doc := strictParse(t, page)
	requireSelfContained(t, doc)
	plots := svgs(doc)
	lat := plots["latency"]
	require.NotEmpty(t, findAll(lat, "path", "series"))
	var dashed int
	for _, p := range findAll(lat, "path", "series") {
		if attr(p, "stroke-dasharray") != "" {
			dashed++
		}
	}
	require.Equal(t, 2, dashed, "b's p50 and p99 dashed")
	// Both runs' fault bands start at time 0 of the aligned axis.
	fr := plotFrame(t, lat)
	bands := findAll(lat, "rect", "fault")
	require.Len(t, bands, 2)
	for _, band := range bands {
		require.InDelta(t, fr.X(0), attrF(t, band, "x"), 0.11)
	}
	require.InDelta(t, fr.X(15000)-fr.X(0), attrF(t, bands[0], "width"), 0.21)
	require.InDelta(t, fr.X(10000)-fr.X(0), attrF(t, bands[1], "width"), 0.21)
	require.Contains(t, string(page), "180 ms → 40 ms")
}
