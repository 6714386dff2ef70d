// Command platform-api drives the DSP Lab stack through the Docker Engine:
// targets and faults, documented with Swagger UI at /swagger/index.html.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dsplab/dsplab/internal/logging"
	"github.com/dsplab/dsplab/internal/telemetry"
	"github.com/dsplab/dsplab/platform-api/internal/app"
)

var version = "dev"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "platform-api:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := app.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	log := logging.FromEnv("platform-api")
	tel, err := telemetry.Setup(ctx, "platform-api", version)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		tel.Shutdown(sctx)
	}()
	a, err := app.New(ctx, cfg, "", tel, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
