// Command distributor takes log packets and Loki pushes, rate-limits them,
// and routes them by weight to healthy analyzers through Kafka.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/dsplab/dsplab/distributor/internal/app"
	"github.com/dsplab/dsplab/internal/lifecycle"
	"github.com/dsplab/dsplab/internal/telemetry"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	configFile := flag.String("config.file", os.Getenv("CONFIG_FILE"), "YAML configuration file (env CONFIG_FILE); empty means defaults plus environment")
	flag.Parse()
	tuneGC()
	lifecycle.Main("distributor", version, func(ctx context.Context, tel *telemetry.Providers, log *slog.Logger) error {
		a, err := app.New(app.Options{ConfigPath: *configFile, Telemetry: tel, Logger: log, Version: version})
		if err != nil {
			return err
		}
		return a.Run(ctx)
	})
}

// tuneGC trades memory for CPU where the operator has not chosen: the
// distributor's live heap is small (a few MB at saturation) while it
// allocates ~100 MB/s, so Go's default GOGC=100 collects very often. With
// GOGC=300 it collects a third as often; the soft memory limit makes the
// collector work harder instead of growing past 160 MiB under overload.
// GOGC and GOMEMLIMIT in the environment win.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(300)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(160 << 20)
	}
}
