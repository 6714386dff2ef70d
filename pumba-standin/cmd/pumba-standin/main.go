// Command pumba-standin stands in for Pumba (ghcr.io/alexei-led/pumba) and
// its nettools helper where neither can be pulled and the kernel has no
// netem qdisc. It accepts the subset of Pumba's command line the platform
// uses and rejects anything else as Pumba would.
//
//   - netem: it prints the tc commands real Pumba would run in each
//     target's network namespace (this kernel has no netem qdisc, so
//     nothing is applied), holds for the duration (or until SIGTERM, as
//     Pumba does), then prints the cleanup and exits 0.
//   - iptables loss: it does what Pumba does, for real: for each target
//     container and each rule it runs a sidecar of --iptables-image with
//     NET_ADMIN in the target's network namespace ("iptables -I INPUT -i
//     eth0 -s <source> -m statistic --mode random --probability P -j
//     DROP", Pumba's rule), holds, and deletes the rules the same way. With
//     a real nettools image (e2e builds one from Debian's iptables) the
//     packets are really dropped: a partition works on this kernel.
//
// Run as "tc ..." or "iptables ..." it plays the nettools image: it prints
// the command and succeeds (the platform's unit tests use it so).
//
// It tests the platform's orchestration of Pumba jobs (command, labels,
// stop grace, revert, reconciliation); netem emulation itself is not.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	args := os.Args[1:]
	if name := filepath.Base(os.Args[0]); name == "tc" || name == "iptables" {
		args = append([]string{name}, args...)
	}
	if len(args) > 0 && (args[0] == "tc" || args[0] == "iptables") {
		fmt.Println("nettools stand-in:", strings.Join(args, " "))
		return
	}
	if err := run(args); err != nil {
		fmt.Fprintln(os.Stderr, "pumba stand-in:", err)
		os.Exit(1)
	}
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func run(args []string) error {
	global := flag.NewFlagSet("pumba", flag.ContinueOnError)
	global.String("log-level", "info", "")
	global.Bool("json", false, "")
	if err := global.Parse(args); err != nil {
		return err
	}
	rest := global.Args()
	if len(rest) > 0 && rest[0] == "iptables" {
		return runIPTables(rest[1:])
	}
	if len(rest) == 0 || rest[0] != "netem" {
		return fmt.Errorf("only the netem and iptables commands are emulated, got %q", rest)
	}
	netem := flag.NewFlagSet("netem", flag.ContinueOnError)
	duration := netem.Duration("duration", 0, "")
	iface := netem.String("interface", "eth0", "")
	tcImage := netem.String("tc-image", "", "")
	netem.Bool("pull-image", true, "")
	var targets multi
	netem.Var(&targets, "target", "")
	if err := netem.Parse(rest[1:]); err != nil {
		return err
	}
	if *duration <= 0 {
		return fmt.Errorf("unset or invalid duration value")
	}
	for _, t := range targets {
		if _, _, err := net.ParseCIDR(t); err != nil && net.ParseIP(t) == nil {
			return fmt.Errorf("failed to parse ip %q", t)
		}
	}
	sub := netem.Args()
	if len(sub) == 0 {
		return fmt.Errorf("netem needs a subcommand")
	}
	qdisc, containers, err := subcommand(sub[0], sub[1:])
	if err != nil {
		return err
	}
	if len(containers) == 0 {
		return fmt.Errorf("no containers named")
	}
	for _, c := range containers {
		fmt.Printf("[%s] via %s: tc qdisc add dev %s root netem %s (targets %v)\n", c, *tcImage, *iface, qdisc, []string(targets))
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-time.After(*duration):
		fmt.Println("duration elapsed")
	case s := <-stop:
		fmt.Println("received", s)
	}
	for _, c := range containers {
		fmt.Printf("[%s] tc qdisc del dev %s root netem\n", c, *iface)
	}
	return nil
}

// subcommand parses one netem subcommand and returns the qdisc it would add
// and the container names.
func subcommand(name string, args []string) (string, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var describe func() string
	switch name {
	case "delay":
		t, j := fs.Int("time", 100, ""), fs.Int("jitter", 10, "")
		c, d := fs.Float64("correlation", 20, ""), fs.String("distribution", "", "")
		describe = func() string {
			if *d != "" && !slices.Contains([]string{"uniform", "normal", "pareto", "paretonormal"}, *d) {
				return ""
			}
			return fmt.Sprintf("delay %dms %dms %g%% %s", *t, *j, *c, *d)
		}
	case "loss", "duplicate", "corrupt":
		p, c := fs.Float64("percent", 0, ""), fs.Float64("correlation", 0, "")
		describe = func() string {
			if *p < 0 || *p > 100 {
				return ""
			}
			return fmt.Sprintf("%s %g%% %g%%", name, *p, *c)
		}
	case "rate":
		r := fs.String("rate", "100kbit", "")
		fs.Int("packetoverhead", 0, "")
		fs.Int("cellsize", 0, "")
		fs.Int("celloverhead", 0, "")
		describe = func() string { return "rate " + *r }
	default:
		return "", nil, fmt.Errorf("unknown netem subcommand %q", name)
	}
	if err := fs.Parse(args); err != nil {
		return "", nil, err
	}
	q := describe()
	if q == "" {
		return "", nil, fmt.Errorf("invalid %s parameters", name)
	}
	return q, fs.Args(), nil
}
