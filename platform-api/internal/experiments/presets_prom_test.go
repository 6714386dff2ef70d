package experiments

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/prom"
)

// hotReloadOpenMetrics writes distributor_routed_messages_total of a
// hot-reload run whose traffic starts at t0: 300 messages/s, shares
// 50/30/20 until 15 s, 20/30/50 until the clear at 45 s, 50/30/20 again
// until the traffic ends at 60 s, then flat (the counters stay, as the
// distributor keeps exporting them). One sample every 5 s, as scraped.
func hotReloadOpenMetrics(t0 time.Time) string {
	share := func(a int, s float64) float64 {
		if s >= 15 && s < 45 {
			return []float64{0.2, 0.3, 0.5}[a]
		}
		return []float64{0.5, 0.3, 0.2}[a]
	}
	var b strings.Builder
	b.WriteString("# TYPE distributor_routed_messages counter\n")
	for a := range 3 {
		total := 0.0
		for s := -60.0; s <= 180; s += 5 {
			fmt.Fprintf(&b, "distributor_routed_messages_total{analyzer=\"analyzer-%d\"} %g %d\n", a+1, total, t0.Unix()+int64(s))
			if s >= 0 && s < 60 {
				total += 5 * 300 * share(a, s)
			}
		}
	}
	b.WriteString("# EOF\n")
	return b.String()
}

// Without faults, the after phase of a preset starts once its traffic has
// ended, as late as the runner sees k6 end: on a busy machine many seconds
// later. hot-reload's after check must hold for the whole recovery window
// from then, on the real Prometheus (CI failed on the 10 s share it had
// before, which is 0/0 once the counters stop).
func TestHotReloadAfterCheckHoldsOnceTheTrafficHasEnded(t *testing.T) {
	presets, err := LoadPresets("../../../experiments", 600)
	require.NoError(t, err)
	def := presets["hot-reload"]
	require.Zero(t, len(def.Faults), "no faults: after starts when the traffic ends")
	end := def.Traffic.DurationSeconds
	require.Equal(t, 60.0, end, "the synthetic run below is this preset's")
	var after Check
	for _, c := range def.Checks {
		if c.Phase == PhaseAfter {
			require.Empty(t, after.Name, "one after check")
			after = c
		}
	}

	t0 := time.Now().Add(-20 * time.Minute).Truncate(5 * time.Second).UTC()
	q := prom.New(realPrometheus(t, hotReloadOpenMetrics(t0)))
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	// Every evaluation the recovery window can make, from the traffic's end.
	step := time.Duration(def.IntervalSeconds * float64(time.Second))
	series, err := q.QueryRange(t.Context(), after.Query, at(end), at(end+def.RecoverySeconds), step)
	require.NoError(t, err)
	require.Len(t, series, 1)
	require.Len(t, series[0].Samples, int(def.RecoverySeconds/def.IntervalSeconds)+1, "a value at every evaluation")
	for _, s := range series[0].Samples {
		require.True(t, after.holds(s.V), "%s: %g %gs after the traffic", after.Name, s.V, s.T.Sub(at(end)).Seconds())
		require.InDelta(t, 0.5, s.V, 0.01, "the share of the traffic's last seconds, after the clear")
	}
	// The query it replaced: the share over the last 10 s, which is 0/0
	// once the traffic has been over for longer than the window.
	old := `sum(rate(distributor_routed_messages_total{analyzer="analyzer-1"}[10s])) / sum(rate(distributor_routed_messages_total[10s]))`
	series, err = q.QueryRange(t.Context(), old, at(end+20), at(end+20), time.Second)
	require.NoError(t, err)
	require.Len(t, series, 1)
	require.True(t, math.IsNaN(series[0].Samples[0].V), "the old check 20 s after the traffic: %v", series[0].Samples)
	// And while the overlay is on, the new query does not hold: it
	// follows the traffic, not a constant.
	series, err = q.QueryRange(t.Context(), after.Query, at(40), at(40), time.Second)
	require.NoError(t, err)
	require.Len(t, series, 1)
	require.False(t, after.holds(series[0].Samples[0].V), "analyzer-1's share under the overlay: %v", series[0].Samples)
}
