//go:build bench

package bench

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/dsplab/dsplab/internal/devstack"
)

// TestAnalyzerAB compares two analyzer builds in the same seconds: one
// distributor routes the wrk load at equal weights to analyzer-1, the
// program BENCH_AB_ANALYZER_BASE (`make bench-ab-analyzer BASE=<git ref>`
// builds it), and analyzer-2, this tree's. Both read the same kind of
// records from the same broker while the machine does the same to both, so
// the ratio of their CPU per processed packet in one round is the figure
// to quote on a shared machine; each round also prints it. An A/A run
// (this tree's analyzer as the base) shows what the two positions alone
// differ by.
func TestAnalyzerAB(t *testing.T) {
	base, rounds, bins := abSetup(t, "BENCH_AB_ANALYZER_BASE", "an analyzer binary", "make bench-ab-analyzer BASE=<git ref>")
	secs := seconds()
	s := devstack.Start(t, bins, devstack.Options{Weights: []float64{1, 1}, AnalyzerBins: []string{base, bins.Analyzer},
		DistributorEnv: []string{"LOG_LEVEL=error"}, AnalyzerEnv: []string{"LOG_LEVEL=error"}})
	names := map[string]*devstack.Proc{"base": s.Analyzers[0], "cand": s.Analyzers[1]}
	runWrk(t, s.Distributor.URL(), 32, 3) // warm-up
	var ratios, baseUs, candUs []float64
	for r := range rounds {
		cpu0, n0 := cpuSeconds(names), processedBy(t, names)
		sat := runWrk(t, s.Distributor.URL(), 32, secs)
		time.Sleep(3 * time.Second) // the backlog drains: its CPU and its packets both count
		cpu1, n1 := cpuSeconds(names), processedBy(t, names)
		us := map[string]float64{}
		for name := range names {
			if n := n1[name] - n0[name]; n > 0 {
				us[name] = (cpu1[name] - cpu0[name]) * 1e6 / n
			}
			if _, ok := cpu1[name]; !ok {
				t.Fatalf("%s is not running", name)
			}
		}
		fmt.Printf("round %d: %8.0f req/s | base %6.0f packets, %6.1f CPU µs/packet | cand %6.0f packets, %6.1f CPU µs/packet | cand/base %.2f\n",
			r+1, sat.rps, n1["base"]-n0["base"], us["base"], n1["cand"]-n0["cand"], us["cand"], us["cand"]/us["base"])
		ratios, baseUs, candUs = append(ratios, us["cand"]/us["base"]), append(baseUs, us["base"]), append(candUs, us["cand"])
	}
	fmt.Printf("ANALYZER_AB rounds=%d base_us_per_packet=%.1f cand_us_per_packet=%.1f cand/base median of rounds=%.2f\n",
		rounds, median(baseUs), median(candUs), median(ratios))
}

// processedBy reads each analyzer's packets processed from its /stats.
func processedBy(t *testing.T, procs map[string]*devstack.Proc) map[string]float64 {
	out := map[string]float64{}
	for name, p := range procs {
		resp, err := http.Get(p.URL() + "/stats")
		if err != nil {
			t.Fatalf("%s /stats: %v", name, err)
		}
		var st struct {
			PacketsProcessed int64 `json:"packets_processed"`
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s /stats: %v", name, err)
		}
		out[name] = float64(st.PacketsProcessed)
	}
	return out
}
