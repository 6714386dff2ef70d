// Command analyzer consumes its Kafka topic logs.<ANALYZER_ID>, processes
// and de-duplicates packets, and serves /health, /stats and /metrics.
package main

import (
	"context"
	"log/slog"
	"os"
	"runtime"

	"github.com/dsplab/dsplab/internal/lifecycle"
	"github.com/dsplab/dsplab/internal/telemetry"
	"github.com/dsplab/dsplab/services/analyzer/internal/app"
)

var version = "dev"

func main() {
	oneProcessor()
	name := os.Getenv("ANALYZER_ID")
	if name == "" {
		name = "analyzer-1"
	}
	lifecycle.Main(name, version, func(ctx context.Context, tel *telemetry.Providers, log *slog.Logger) error {
		cfg, err := app.ConfigFromEnv(os.LookupEnv)
		if err != nil {
			return err
		}
		a, err := app.New(cfg, "", tel, log)
		if err != nil {
			return err
		}
		return a.Run(ctx)
	})
}

// oneProcessor runs the analyzer's goroutines on one OS thread at a time
// where the operator has not chosen (GOMAXPROCS in the environment wins).
// An analyzer's work is one consume loop; with Go's default of one P per
// core, every wake-up of it on a busy laptop also wakes a second thread
// that spins for work, and the stack's five Go processes and the broker
// then queue for the same few cores. On the bench's 2 cores, one P used
// 0.91 of the CPU per packet, and the distributor's p99 at 5,000 packets/s
// fell (docs/BENCHMARKS.md, "Threads waiting for a core").
func oneProcessor() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}
