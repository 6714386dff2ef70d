// Command distributor takes log packets and Loki pushes, rate-limits them,
// and routes them by weight to healthy analyzers through Kafka.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"

	"github.com/dsplab/dsplab/distributor/internal/app"
	"github.com/dsplab/dsplab/internal/lifecycle"
	"github.com/dsplab/dsplab/internal/telemetry"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	configFile := flag.String("config.file", os.Getenv("CONFIG_FILE"), "YAML configuration file (env CONFIG_FILE); empty means defaults plus environment")
	flag.Parse()
	lifecycle.Main("distributor", version, func(ctx context.Context, tel *telemetry.Providers, log *slog.Logger) error {
		a, err := app.New(app.Options{ConfigPath: *configFile, Telemetry: tel, Logger: log, Version: version})
		if err != nil {
			return err
		}
		return a.Run(ctx)
	})
}
