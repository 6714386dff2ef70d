// Command service-a is the demo's service-a: POST /api/message-a (which
// calls service-b), POST /api/error?statusCode=N, and its request logs shipped
// to the distributor's Loki endpoint.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dsplab/dsplab/internal/demosvc"
	"github.com/dsplab/dsplab/internal/logging"
	"github.com/dsplab/dsplab/internal/telemetry"
)

var version = "dev"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "service-a:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := demosvc.ConfigFromEnv("service-a", "/api/message-a", "10001", "http://service-b:10002", os.Getenv)
	if err != nil {
		return err
	}
	log := logging.FromEnv(cfg.Name)
	tel, err := telemetry.Setup(ctx, cfg.Name, version)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		tel.Shutdown(sctx)
	}()
	a, err := demosvc.New(cfg, "", tel, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
