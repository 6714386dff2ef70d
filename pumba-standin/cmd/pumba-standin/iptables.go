package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// runIPTables emulates "pumba iptables [flags] loss [flags] containers":
// Pumba's ingress packet loss, applied for real through sidecars.
func runIPTables(args []string) error {
	fs := flag.NewFlagSet("iptables", flag.ContinueOnError)
	duration := fs.Duration("duration", 0, "")
	iface := fs.String("interface", "eth0", "")
	protocol := fs.String("protocol", "any", "")
	image := fs.String("iptables-image", "ghcr.io/alexei-led/pumba-alpine-nettools:latest", "")
	fs.Bool("pull-image", false, "")
	var sources, dests multi
	fs.Var(&sources, "source", "")
	fs.Var(&dests, "destination", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *duration <= 0 {
		return fmt.Errorf("unset or invalid duration value")
	}
	for _, ip := range append(append([]string{}, sources...), dests...) {
		if _, _, err := net.ParseCIDR(ip); err != nil && net.ParseIP(ip) == nil {
			return fmt.Errorf("failed to parse ip %q", ip)
		}
	}
	sub := fs.Args()
	if len(sub) == 0 || sub[0] != "loss" {
		return fmt.Errorf("iptables needs the loss subcommand, got %q", sub)
	}
	loss := flag.NewFlagSet("loss", flag.ContinueOnError)
	mode := loss.String("mode", "random", "")
	prob := loss.Float64("probability", 0, "")
	every := loss.Int("every", 0, "")
	packet := loss.Int("packet", 0, "")
	if err := loss.Parse(sub[1:]); err != nil {
		return err
	}
	containers := loss.Args()
	if len(containers) == 0 {
		return fmt.Errorf("no containers named")
	}
	// Pumba's rules: one per source and destination filter, or one for all.
	prefix := []string{"INPUT", "-i", *iface}
	if *protocol != "any" {
		prefix = append(prefix, "-p", *protocol)
	}
	var suffix []string
	switch *mode {
	case "random":
		if *prob < 0 || *prob > 1 {
			return fmt.Errorf("probability must be between 0.0 and 1.0")
		}
		suffix = []string{"-m", "statistic", "--mode", "random", "--probability", strconv.FormatFloat(*prob, 'f', 2, 64), "-j", "DROP"}
	case "nth":
		if *every <= 0 || *packet < 0 || *packet >= *every {
			return fmt.Errorf("nth mode needs 0 <= packet < every")
		}
		suffix = []string{"-m", "statistic", "--mode", "nth", "--every", strconv.Itoa(*every), "--packet", strconv.Itoa(*packet), "-j", "DROP"}
	default:
		return fmt.Errorf("unknown mode %q", *mode)
	}
	var filters [][]string
	for _, ip := range sources {
		filters = append(filters, []string{"-s", ip})
	}
	for _, ip := range dests {
		filters = append(filters, []string{"-d", ip})
	}
	if len(filters) == 0 {
		filters = [][]string{nil}
	}
	rule := func(op string, filter []string) []string {
		r := append([]string{op}, prefix...)
		return append(append(r, filter...), suffix...)
	}

	cli, err := client.New(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx := context.Background()
	type applied struct {
		container string
		filter    []string
	}
	var done []applied
	cleanup := func() error {
		var errs []error
		for _, a := range done {
			if err := sidecar(ctx, cli, a.container, *image, rule("-D", a.filter)); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	for _, c := range containers {
		for _, f := range filters {
			if err := sidecar(ctx, cli, c, *image, rule("-I", f)); err != nil {
				return errors.Join(err, cleanup())
			}
			done = append(done, applied{c, f})
		}
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-time.After(*duration):
		fmt.Println("duration elapsed")
	case s := <-stop:
		fmt.Println("received", s)
	}
	return cleanup()
}

// sidecar runs "iptables args..." in a container of image sharing c's
// network namespace with NET_ADMIN, as Pumba's sidecars do, and removes it.
func sidecar(ctx context.Context, cli *client.Client, c, image string, args []string) error {
	cmd := append([]string{"iptables"}, args...)
	res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: image, Cmd: cmd, Labels: map[string]string{"com.gaiaadm.pumba.skip": "true"}},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode("container:" + c), CapAdd: []string{"NET_ADMIN"}},
	})
	if err != nil {
		return fmt.Errorf("[%s] create iptables sidecar: %w", c, err)
	}
	defer cli.ContainerRemove(context.WithoutCancel(ctx), res.ID, client.ContainerRemoveOptions{Force: true})
	if _, err := cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("[%s] start iptables sidecar: %w", c, err)
	}
	wait := cli.ContainerWait(ctx, res.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	var code int64
	select {
	case w := <-wait.Result:
		code = w.StatusCode
	case err := <-wait.Error:
		return fmt.Errorf("[%s] wait iptables sidecar: %w", c, err)
	}
	out := ""
	if logs, err := cli.ContainerLogs(ctx, res.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true}); err == nil {
		b, _ := io.ReadAll(io.LimitReader(logs, 1<<16))
		logs.Close()
		out = strings.TrimSpace(stripHeaders(b))
	}
	fmt.Printf("[%s] via %s: %s (exit %d) %s\n", c, image, strings.Join(cmd, " "), code, out)
	if code != 0 {
		return fmt.Errorf("[%s] %s: exit %d: %s", c, strings.Join(cmd, " "), code, out)
	}
	return nil
}

// stripHeaders removes the 8-byte stream headers of a non-TTY log stream.
func stripHeaders(b []byte) string {
	var out strings.Builder
	for len(b) >= 8 && (b[0] == 1 || b[0] == 2) && b[1] == 0 && b[2] == 0 && b[3] == 0 {
		n := min(int(b[4])<<24|int(b[5])<<16|int(b[6])<<8|int(b[7]), len(b)-8)
		out.Write(b[8 : 8+n])
		b = b[8+n:]
	}
	out.Write(b)
	return out.String()
}
