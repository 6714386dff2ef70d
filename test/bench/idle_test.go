//go:build bench

package bench

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dsplab/dsplab/internal/devstack"
)

// TestIdleCost is what the dev stack costs a laptop with no traffic: the
// CPU of devkafka, the three analyzers and the distributor over
// BENCH_SECONDS, after 5 s to settle. The analyzers' fetch wait sets most
// of it (an idle analyzer's fetch returns every FETCH_MAX_WAIT_MS): compare
// with BENCH_ANALYZER_ENV=FETCH_MAX_WAIT_MS=10 (docs/BENCHMARKS.md).
func TestIdleCost(t *testing.T) {
	bins, err := devstack.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	aenv := []string{"LOG_LEVEL=error"}
	if v, ok := os.LookupEnv("BENCH_ANALYZER_ENV"); ok {
		aenv = append(aenv, strings.Split(v, ",")...)
	}
	s := devstack.Start(t, bins, devstack.Options{DistributorEnv: []string{"LOG_LEVEL=error"}, AnalyzerEnv: aenv})
	procs := map[string]*devstack.Proc{"distributor": s.Distributor, "devkafka": s.Kafka}
	for i, a := range s.Analyzers {
		procs[fmt.Sprintf("analyzer-%d", i+1)] = a
	}
	time.Sleep(5 * time.Second)
	secs := seconds()
	before := cpuSeconds(procs)
	time.Sleep(time.Duration(secs) * time.Second)
	after := cpuSeconds(procs)
	var total float64
	fmt.Printf("idle, %d s, no traffic (%% of one core):", secs)
	for _, name := range sortedKeys(after) {
		if _, ok := before[name]; !ok {
			t.Fatalf("%s is not running", name)
		}
		used := (after[name] - before[name]) / float64(secs)
		total += used
		fmt.Printf("  %s %.1f%%", name, used*100)
	}
	fmt.Printf("\nRESULT idle_cpu_percent_of_a_core=%.1f analyzer_env=%q\n", total*100, os.Getenv("BENCH_ANALYZER_ENV"))
}
