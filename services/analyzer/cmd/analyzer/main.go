// Command analyzer consumes its Kafka topic logs.<ANALYZER_ID>, processes
// and de-duplicates packets, and serves /health, /stats and /metrics.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/dsplab/dsplab/internal/lifecycle"
	"github.com/dsplab/dsplab/internal/telemetry"
	"github.com/dsplab/dsplab/services/analyzer/internal/app"
)

var version = "dev"

func main() {
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
