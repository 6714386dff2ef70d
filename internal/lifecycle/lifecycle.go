// Package lifecycle is the main of every DSP Lab service: a signal-aware
// context, the JSON logger, telemetry set up and flushed on the way out,
// then the service's own run function; an error exits 1.
package lifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dsplab/dsplab/internal/logging"
	"github.com/dsplab/dsplab/internal/telemetry"
)

// Main runs service until SIGINT or SIGTERM. name is the service name for
// logs and telemetry (OTEL_SERVICE_NAME overrides it in telemetry).
func Main(name, version string, run func(ctx context.Context, tel *telemetry.Providers, log *slog.Logger) error) {
	if err := mainErr(name, version, run); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func mainErr(name, version string, run func(ctx context.Context, tel *telemetry.Providers, log *slog.Logger) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := logging.FromEnv(name)
	tel, err := telemetry.Setup(ctx, name, version)
	if err != nil {
		return err
	}
	defer func() {
		// Flush spans and metrics on a detached, bounded context: the
		// signal has already cancelled ctx.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry shutdown", "err", err)
		}
	}()
	return run(ctx, tel, log)
}
