// Command service-b is the demo's service-b: POST /api/message-b, POST /api/error?statusCode=N, and its request logs shipped
// to the distributor's Loki endpoint.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/dsplab/dsplab/internal/lifecycle"
	"github.com/dsplab/dsplab/internal/telemetry"
	"github.com/dsplab/dsplab/services/demosvc"
)

var version = "dev"

func main() {
	lifecycle.Main("service-b", version, func(ctx context.Context, tel *telemetry.Providers, log *slog.Logger) error {
		cfg, err := demosvc.ConfigFromEnv("service-b", "/api/message-b", "10002", "", os.Getenv)
		if err != nil {
			return err
		}
		a, err := demosvc.New(cfg, "", tel, log)
		if err != nil {
			return err
		}
		return a.Run(ctx)
	})
}
