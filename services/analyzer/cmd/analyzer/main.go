// Command analyzer consumes its Kafka topic logs.<ANALYZER_ID>, processes
// and de-duplicates packets, and serves /health, /stats and /metrics.
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
	"github.com/dsplab/dsplab/services/analyzer/internal/app"
)

var version = "dev"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "analyzer:", err)
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
	log := logging.FromEnv(cfg.Consumer.ID)
	tel, err := telemetry.Setup(ctx, cfg.Consumer.ID, version)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		tel.Shutdown(sctx)
	}()
	a, err := app.New(cfg, "", tel, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
