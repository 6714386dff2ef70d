// Command distributor takes log packets and Loki pushes, rate-limits them,
// and routes them by weight to healthy analyzers through Kafka.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dsplab/dsplab/distributor/internal/app"
	"github.com/dsplab/dsplab/internal/logging"
	"github.com/dsplab/dsplab/internal/telemetry"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	configFile := flag.String("config.file", os.Getenv("CONFIG_FILE"), "YAML configuration file (env CONFIG_FILE); empty means defaults plus environment")
	flag.Parse()
	if err := run(*configFile); err != nil {
		fmt.Fprintln(os.Stderr, "distributor:", err)
		os.Exit(1)
	}
}

func run(configFile string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := logging.FromEnv("distributor")
	tel, err := telemetry.Setup(ctx, "distributor", version)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		tel.Shutdown(sctx)
	}()
	a, err := app.New(app.Options{ConfigPath: configFile, Telemetry: tel, Logger: log, Version: version})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
