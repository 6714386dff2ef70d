// Command platform-api drives the DSP Lab stack through the Docker Engine:
// targets, traffic, faults and experiments, documented with Swagger UI at
// /swagger/index.html.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/dsplab/dsplab/internal/lifecycle"
	"github.com/dsplab/dsplab/internal/telemetry"
	"github.com/dsplab/dsplab/platform-api/internal/app"
)

var version = "dev"

func main() {
	lifecycle.Main("platform-api", version, func(ctx context.Context, tel *telemetry.Providers, log *slog.Logger) error {
		cfg, err := app.ConfigFromEnv(os.Getenv)
		if err != nil {
			return err
		}
		a, err := app.New(ctx, cfg, "", tel, log)
		if err != nil {
			return err
		}
		return a.Run(ctx)
	})
}
