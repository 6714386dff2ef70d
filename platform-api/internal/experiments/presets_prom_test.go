package experiments

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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

// instant is a PromQL query's value at t on a real Prometheus: present is
// false for an empty result, and a 0/0 is NaN (as the runner sees it).
func instant(t *testing.T, base, q string, at time.Time) (v float64, present bool) {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?" + url.Values{"query": {q}, "time": {strconv.FormatInt(at.Unix(), 10)}}.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Equal(t, "success", body.Status, "%s: %s", q, body.Error)
	if len(body.Data.Result) == 0 {
		return 0, false
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	v, err = strconv.ParseFloat(s, 64)
	require.NoError(t, err)
	return v, true
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
	base := realPrometheus(t, hotReloadOpenMetrics(t0))
	for d := 0.0; d <= def.RecoverySeconds; d += def.IntervalSeconds {
		at := t0.Add(time.Duration((end + d) * float64(time.Second)))
		v, ok := instant(t, base, after.Query, at)
		require.True(t, ok, "%s: a value %gs after the traffic", after.Name, d)
		require.True(t, after.holds(v), "%s: %g %gs after the traffic", after.Name, v, d)
		require.InDelta(t, 0.5, v, 0.01, "the share of the traffic's last seconds, after the clear")
	}
	// The query it replaced: the share over the last 10 s, which has no
	// value once the traffic has been over for longer than the window.
	old := `sum(rate(distributor_routed_messages_total{analyzer="analyzer-1"}[10s])) / sum(rate(distributor_routed_messages_total[10s]))`
	v, _ := instant(t, base, old, t0.Add((60+20)*time.Second))
	require.True(t, math.IsNaN(v), "the old check 20 s after the traffic: %g", v)
	// And while the overlay is on, the new query does not hold: it
	// follows the traffic, not a constant.
	v, ok := instant(t, base, after.Query, t0.Add(40*time.Second))
	require.True(t, ok)
	require.False(t, after.holds(v), "analyzer-1's share under the overlay: %g", v)
}
