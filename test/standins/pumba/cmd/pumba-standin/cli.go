package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/urfave/cli"
)

// Pumba 1.1.7's flag set (cmd/flags.go, cmd/commands.go and
// pkg/chaos/*/cmd): names, aliases and defaults as there. Flags that only
// select Pumba's engine connection (--host, --tls..., --runtime) are
// accepted and ignored: the stand-in uses DOCKER_HOST.

const defaultNettools = "ghcr.io/alexei-led/pumba-alpine-nettools:latest"

func globalFlags() []cli.Flag {
	return []cli.Flag{
		cli.StringFlag{Name: "host, H", Value: "unix:///var/run/docker.sock", EnvVar: "DOCKER_HOST"},
		cli.StringFlag{Name: "runtime", Value: "docker"},
		cli.StringFlag{Name: "containerd-socket", Value: "/run/containerd/containerd.sock"},
		cli.StringFlag{Name: "containerd-namespace", Value: "k8s.io"},
		cli.StringFlag{Name: "podman-socket"},
		cli.BoolFlag{Name: "tls"},
		cli.BoolFlag{Name: "tlsverify", EnvVar: "DOCKER_TLS_VERIFY"},
		cli.StringFlag{Name: "tlscacert", Value: "/etc/ssl/docker/ca.pem"},
		cli.StringFlag{Name: "tlscert", Value: "/etc/ssl/docker/cert.pem"},
		cli.StringFlag{Name: "tlskey", Value: "/etc/ssl/docker/key.pem"},
		cli.StringFlag{Name: "log-level, l", Value: "warning", EnvVar: "LOG_LEVEL"},
		cli.BoolFlag{Name: "json, j", EnvVar: "LOG_JSON"},
		cli.StringFlag{Name: "slackhook"},
		cli.StringFlag{Name: "slackchannel", Value: "#pumba"},
		cli.DurationFlag{Name: "interval, i"},
		cli.StringSliceFlag{Name: "label"},
		cli.BoolFlag{Name: "random, r"},
		cli.BoolFlag{Name: "dry-run", EnvVar: "DRY-RUN"},
		cli.BoolFlag{Name: "skip-error"},
	}
}

// newApp is Pumba's CLI over rt (opened once the command line is read).
func newApp(ctx context.Context, open func() (runtime, error), w io.Writer) *cli.App {
	out := &lockedWriter{w: w} // targets run in parallel
	app := cli.NewApp()
	app.Name = "Pumba"
	app.Usage = "stand-in for Pumba 1.1.7's netem and iptables commands (pumba-standin)"
	app.Writer, app.ErrWriter = out, out
	app.Flags = globalFlags()
	app.Commands = []cli.Command{netemCommand(ctx, open, out), iptablesCommand(ctx, open, out)}
	return app
}

// lockedWriter serializes writes: each line is one Write.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// globals are Pumba's chaos.GlobalParams.
type globals struct {
	names    []string
	pattern  string
	labels   []string
	random   bool
	dryRun   bool
	skipErr  bool
	interval time.Duration
}

const re2Prefix = "re2:"

// parseGlobals reads the global flags and the container arguments as
// Pumba's chaos.ParseGlobalParams does: no argument is every running
// container; several are names; one is a name, or an RE2 pattern after
// "re2:".
func parseGlobals(c *cli.Context) globals {
	g := globals{random: c.GlobalBool("random"), labels: c.GlobalStringSlice("label"), dryRun: c.GlobalBool("dry-run"),
		skipErr: c.GlobalBool("skip-error"), interval: c.GlobalDuration("interval")}
	args := []string(c.Args())
	switch {
	case len(args) > 1:
		g.names = args
	case len(args) == 1 && len(args[0]) >= len(re2Prefix) && args[0][:len(re2Prefix)] == re2Prefix:
		g.pattern = args[0][len(re2Prefix):]
	case len(args) == 1:
		g.names = args
	}
	return g
}

// chaos is one parsed command: run applies it to one container and holds
// it until ctx ends or its duration passes.
type chaos struct {
	limit int
	run   func(ctx context.Context, rt runtime, t target) error
}

// runChaos is Pumba's chaos.RunChaosCommand: run once, or every interval
// until a signal; an error ends it unless --skip-error.
func runChaos(ctx context.Context, rt runtime, g globals, ch chaos, out io.Writer) error {
	var tick <-chan time.Time
	if g.interval > 0 {
		t := time.NewTicker(g.interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		if err := runOnTargets(ctx, rt, g, ch, out); err != nil {
			if !g.skipErr {
				return fmt.Errorf("error running chaos command: %w", err)
			}
			fmt.Fprintln(out, "skipping error:", err)
		}
		if tick == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		}
	}
}

// runOnTargets lists the matching containers and runs ch on each, in
// parallel, as Pumba's RunOnContainers does for netem and iptables.
func runOnTargets(ctx context.Context, rt runtime, g globals, ch chaos, out io.Writer) error {
	ts, err := rt.List(ctx, g.names, g.pattern, g.labels, ch.limit)
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}
	if len(ts) == 0 {
		fmt.Fprintln(out, "level=warning msg=\"no containers found\"")
		return nil
	}
	if g.random {
		ts = ts[randN(len(ts)):][:1]
	}
	errs := make(chan error, len(ts))
	for _, t := range ts {
		go func() { errs <- ch.run(ctx, rt, t) }()
	}
	var all []error
	for range ts {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// hold waits for d or until ctx ends (SIGTERM), as Pumba holds a fault.
func hold(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// action builds a subcommand's action: parse and validate (build), then,
// with a runtime, run.
func action(ctx context.Context, open func() (runtime, error), out io.Writer, build func(c *cli.Context, g globals) (chaos, error)) func(c *cli.Context) error {
	return func(c *cli.Context) error {
		g := parseGlobals(c)
		ch, err := build(c, g)
		if err != nil {
			return err
		}
		rt, err := open()
		if err != nil {
			return err
		}
		defer rt.Close()
		if err := runChaos(ctx, rt, g, ch, out); err != nil {
			return fmt.Errorf("running %s: %w", c.Command.Name, err)
		}
		return nil
	}
}
