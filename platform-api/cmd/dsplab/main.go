// Command dsplab drives the DSP Lab platform API from a terminal or a CI
// job: targets, faults, traffic, experiments run to a verdict (exit code 0
// passed, 1 failed, 2 aborted or error), their HTML reports and the
// comparison of two runs. It talks only to the platform API (DSPLAB_URL,
// default http://localhost:5050; PLATFORM_API_TOKEN when the platform has
// a token). `dsplab help` lists the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/dsplab/dsplab/platform-api/internal/cli"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, cli.Env{Args: os.Args[1:], Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, TTY: cli.IsTerminal(os.Stdout), Version: version})
	stop()
	os.Exit(code)
}
