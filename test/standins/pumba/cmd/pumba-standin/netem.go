package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli"
)

// netemBase is what Pumba's netem.ParseRequestBase reads from the netem
// command's flags.
type netemBase struct {
	duration time.Duration
	iface    string
	ips      []string
	sports   []string
	dports   []string
	image    string
	pull     bool
	limit    int
}

var reInterface = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9.:_-]*`)

// validInterface is Pumba's util.ValidateInterfaceName.
func validInterface(name string) error {
	if name == "" || name != reInterface.FindString(name) {
		return fmt.Errorf("bad network interface name: must match '%s'", reInterface.String())
	}
	return nil
}

// parseCIDR is Pumba's util.ParseCIDR: a CIDR, or an IP taken as /32.
func parseCIDR(s string) (string, error) {
	if !strings.Contains(s, "/") {
		s += "/32"
	}
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		return "", fmt.Errorf("failed to parse CIDR: %w", err)
	}
	return n.String(), nil
}

// parsePorts is Pumba's util.GetPorts: comma-separated ports 0..65535.
func parsePorts(s string) ([]string, error) {
	list := strings.Split(s, ",")
	if list[0] == "" {
		return nil, nil
	}
	for _, p := range list {
		if p == "" {
			continue
		}
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("invalid port specified: failed to parse port as number: %w", err)
		}
		if n < 0 || n > 65535 {
			return nil, fmt.Errorf("invalid port specified: port is either below 0 or greater than 65535: %s", p)
		}
	}
	return list, nil
}

func parseNetemBase(c *cli.Context, g globals) (netemBase, error) {
	b := netemBase{duration: c.Duration("duration"), iface: c.String("interface"), image: c.String("tc-image"), pull: c.BoolT("pull-image"), limit: c.Int("limit")}
	if b.duration == 0 {
		return b, errors.New("unset or invalid duration value")
	}
	if g.interval != 0 && b.duration >= g.interval {
		return b, errors.New("duration must be shorter than interval")
	}
	if err := validInterface(b.iface); err != nil {
		return b, err
	}
	for _, s := range c.StringSlice("target") {
		ip, err := parseCIDR(s)
		if err != nil {
			return b, fmt.Errorf("failed to parse ip: %w", err)
		}
		b.ips = append(b.ips, ip)
	}
	var err error
	if b.sports, err = parsePorts(c.String("egress-port")); err != nil {
		return b, fmt.Errorf("failed to get source ports: %w", err)
	}
	if b.dports, err = parsePorts(c.String("ingress-port")); err != nil {
		return b, fmt.Errorf("failed to get destination ports: %w", err)
	}
	return b, nil
}

func netemCommand(ctx context.Context, open func() (runtime, error), out io.Writer) cli.Command {
	sub := func(name string, flags []cli.Flag, build netemBuild) cli.Command {
		return netemSub(ctx, open, out, name, flags, build)
	}
	percentFlags := []cli.Flag{cli.Float64Flag{Name: "percent, p"}, cli.Float64Flag{Name: "correlation, c"}}
	return cli.Command{
		Name: "netem",
		Flags: []cli.Flag{
			cli.DurationFlag{Name: "duration, d"},
			cli.StringFlag{Name: "interface, i", Value: "eth0"},
			cli.StringSliceFlag{Name: "target, t"},
			cli.StringFlag{Name: "egress-port, egressPort"},
			cli.StringFlag{Name: "ingress-port, ingressPort"},
			cli.StringFlag{Name: "tc-image", Value: defaultNettools},
			cli.BoolTFlag{Name: "pull-image"},
			cli.IntFlag{Name: "limit"},
		},
		Subcommands: []cli.Command{
			sub("delay", []cli.Flag{
				cli.IntFlag{Name: "time, t", Value: 100}, cli.IntFlag{Name: "jitter, j", Value: 10},
				cli.Float64Flag{Name: "correlation, c", Value: 20}, cli.StringFlag{Name: "distribution, d"},
			}, buildDelay),
			sub("loss", percentFlags, buildPercent("loss")),
			sub("loss-state", []cli.Flag{
				cli.Float64Flag{Name: "p13"}, cli.Float64Flag{Name: "p31", Value: 100}, cli.Float64Flag{Name: "p32"},
				cli.Float64Flag{Name: "p23", Value: 100}, cli.Float64Flag{Name: "p14"},
			}, buildProbabilities("state", []string{"p13", "p31", "p32", "p23", "p14"}, func(n string) string {
				return "invalid " + n + " percentage: : must be between 0.0 and 100.0"
			})),
			sub("loss-gemodel", []cli.Flag{
				cli.Float64Flag{Name: "pg, p"}, cli.Float64Flag{Name: "pb, r", Value: 100},
				cli.Float64Flag{Name: "one-h", Value: 100}, cli.Float64Flag{Name: "one-k"},
			}, buildProbabilities("gemodel", []string{"pg", "pb", "one-h", "one-k"}, gemodelError)),
			sub("rate", []cli.Flag{
				cli.StringFlag{Name: "rate, r", Value: "100kbit"}, cli.IntFlag{Name: "packetoverhead, p"},
				cli.IntFlag{Name: "cellsize, s"}, cli.IntFlag{Name: "celloverhead, c"},
			}, buildRate),
			sub("duplicate", percentFlags, buildPercent("duplicate")),
			sub("corrupt", percentFlags, buildPercent("corrupt")),
		},
	}
}

// netemBuild turns a netem subcommand's flags into the netem arguments of
// its tc command, or refuses them with Pumba's message.
type netemBuild func(c *cli.Context) ([]string, error)

// netemSub is one netem subcommand: the parent's flags parsed as Pumba
// parses them, the subcommand's own built, then tc run on every target.
func netemSub(ctx context.Context, open func() (runtime, error), out io.Writer, name string, flags []cli.Flag, build netemBuild) cli.Command {
	what := netemFailures[name]
	return cli.Command{Name: name, Flags: flags, Action: action(ctx, open, out, func(c *cli.Context, g globals) (chaos, error) {
		base, err := parseNetemBase(c.Parent(), g)
		if err != nil {
			return chaos{}, fmt.Errorf("error parsing netem parameters: %w", err)
		}
		cmd, err := build(c)
		if err != nil {
			return chaos{}, err
		}
		return chaos{limit: base.limit, run: func(ctx context.Context, rt runtime, t target) error {
			if err := runNetem(ctx, rt, t, base, cmd, g.dryRun, out); err != nil {
				return fmt.Errorf("failed to %s for one or more containers: %w", what, err)
			}
			return nil
		}}, nil
	})}
}

// f2 formats a percentage as Pumba does (two decimals).
func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

// buildPercent is loss, duplicate and corrupt: a percent and an optional
// correlation, each from 0 to 100.
func buildPercent(what string) netemBuild {
	return func(c *cli.Context) ([]string, error) {
		p, corr := c.Float64("percent"), c.Float64("correlation")
		if p < 0 || p > 100 {
			return nil, fmt.Errorf("invalid %s percent: must be between 0.0 and 100.0", what)
		}
		if corr < 0 || corr > 100 {
			return nil, fmt.Errorf("invalid %s correlation: must be between 0.0 and 100.0", what)
		}
		cmd := []string{what, f2(p)}
		if corr > 0 {
			cmd = append(cmd, f2(corr))
		}
		return cmd, nil
	}
}

// buildProbabilities is loss-state and loss-gemodel: "loss KIND" and each
// named probability (0 to 100) in order; msg is Pumba's refusal of one.
func buildProbabilities(kind string, names []string, msg func(string) string) netemBuild {
	return func(c *cli.Context) ([]string, error) {
		cmd := []string{"loss", kind}
		for _, n := range names {
			v := c.Float64(n)
			if v < 0 || v > 100 {
				return nil, errors.New(msg(n))
			}
			cmd = append(cmd, f2(v))
		}
		return cmd, nil
	}
}

// gemodelError is Pumba's refusal of a loss-gemodel probability.
func gemodelError(n string) string {
	switch n {
	case "pg":
		return "invalid pg (Good State) transition probability: must be between 0.0 and 100.0"
	case "pb":
		return "invalid pb (Bad State) transition probability: must be between 0.0 and 100.0"
	}
	return "invalid loss probability: must be between 0.0 and 100.0"
}

var delayDistributions = []string{"", "uniform", "normal", "pareto", "paretonormal"}

// buildDelay is Pumba's NewDelayCommand and buildNetemCmd: the jitter and
// correlation are sent only when non-zero, so "delay 100ms 20.00" (no
// jitter) is what tc reads as 20 µs of jitter.
func buildDelay(c *cli.Context) ([]string, error) {
	t, j, corr, dist := c.Int("time"), c.Int("jitter"), c.Float64("correlation"), c.String("distribution")
	switch {
	case t <= 0:
		return nil, errors.New("non-positive delay time")
	case j < 0 || j > t:
		return nil, errors.New("invalid delay jitter: must be non-negative and smaller than delay time")
	case corr < 0 || corr > 100:
		return nil, errors.New("invalid delay correlation: must be between 0.0 and 100.0")
	case !slices.Contains(delayDistributions, dist):
		return nil, errors.New("invalid delay distribution: must be one of {uniform | normal | pareto |  paretonormal}")
	}
	cmd := []string{"delay", strconv.Itoa(t) + "ms"}
	if j > 0 {
		cmd = append(cmd, strconv.Itoa(j)+"ms")
	}
	if corr > 0 {
		cmd = append(cmd, strconv.FormatFloat(corr, 'f', 2, 64))
	}
	if dist != "" {
		cmd = append(cmd, "distribution", dist)
	}
	return cmd, nil
}

var reRate = regexp.MustCompile(`\d+[gmk]?bit`)

// buildRate is Pumba's NewRateCommand (its parseRate refuses every unit
// but bit, kbit, mbit and gbit).
func buildRate(c *cli.Context) ([]string, error) {
	rate := c.String("rate")
	if rate == "" {
		return nil, errors.New("undefined rate limit")
	}
	if reRate.FindString(rate) != rate {
		return nil, fmt.Errorf("invalid rate: invalid rate, must match '%s'", reRate.String())
	}
	if c.Int("cellsize") < 0 {
		return nil, errors.New("invalid cell size: must be a non-negative integer")
	}
	cmd := []string{"rate", rate}
	if v := c.Int("packetoverhead"); v != 0 {
		cmd = append(cmd, strconv.Itoa(v))
	}
	if v := c.Int("cellsize"); v > 0 {
		cmd = append(cmd, strconv.Itoa(v))
	}
	if v := c.Int("celloverhead"); v != 0 {
		cmd = append(cmd, strconv.Itoa(v))
	}
	return cmd, nil
}

// tcCommands are the tc commands Pumba runs to add and to remove netem:
// one root qdisc, or with IP or port filters a prio qdisc whose third band
// holds netem and gets the filtered traffic.
func tcCommands(b netemBase, netem []string) (add, del [][]string) {
	dev := b.iface
	if len(b.ips) == 0 && len(b.sports) == 0 && len(b.dports) == 0 {
		return [][]string{append([]string{"qdisc", "add", "dev", dev, "root", "netem"}, netem...)},
			[][]string{{"qdisc", "del", "dev", dev, "root", "netem"}}
	}
	add = [][]string{
		{"qdisc", "add", "dev", dev, "root", "handle", "1:", "prio"},
		{"qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:", "sfq"},
		{"qdisc", "add", "dev", dev, "parent", "1:2", "handle", "20:", "sfq"},
		append([]string{"qdisc", "add", "dev", dev, "parent", "1:3", "handle", "30:", "netem"}, netem...),
	}
	filter := []string{"filter", "add", "dev", dev, "protocol", "ip", "parent", "1:0", "prio", "1", "u32", "match", "ip"}
	for _, ip := range b.ips {
		add = append(add, append(slices.Clone(filter), "dst", ip, "flowid", "1:3"))
	}
	for _, p := range b.sports {
		add = append(add, append(slices.Clone(filter), "sport", p, "0xffff", "flowid", "1:3"))
	}
	for _, p := range b.dports {
		add = append(add, append(slices.Clone(filter), "dport", p, "0xffff", "flowid", "1:3"))
	}
	del = [][]string{
		{"qdisc", "del", "dev", dev, "parent", "1:1", "handle", "10:"},
		{"qdisc", "del", "dev", dev, "parent", "1:2", "handle", "20:"},
		{"qdisc", "del", "dev", dev, "parent", "1:3", "handle", "30:"},
		{"qdisc", "del", "dev", dev, "root", "handle", "1:", "prio"},
	}
	return add, del
}

// netemFailures are the words of Pumba's error for a subcommand whose tc
// failed ("failed to delay packets for one or more containers: ...").
var netemFailures = map[string]string{
	"delay":        "delay packets",
	"loss":         "add packet loss",
	"loss-state":   "add packet loss (4-state Markov model)",
	"loss-gemodel": "add packet loss (Gilbert-Elliot model)",
	"rate":         "set network rate",
	"duplicate":    "set packet duplicates",
	"corrupt":      "corrupt packets",
}

// runNetem is Pumba 1.1.7's runNetem with its docker client's
// NetemContainer and StopNetemContainer: the tc commands run, for real,
// in a sidecar of --tc-image in the target's network namespace (exit codes
// checked, tc's own output drained as Pumba drains it, here printed); it
// holds for the duration or until SIGTERM; then the deletions run in a
// second sidecar on a context of their own, and a failure there is only a
// warning (Pumba's "failed to stop netem container"), exit 0.
func runNetem(ctx context.Context, rt runtime, t target, b netemBase, netem []string, dryRun bool, out io.Writer) error {
	add, del := tcCommands(b, netem)
	if dryRun || b.image == "" {
		// A dry run execs nothing. Without --tc-image Pumba execs tc in the
		// target itself, which the stand-in does not emulate: it prints.
		where := "dry run, via " + b.image
		if b.image == "" {
			where = "in the container (not emulated: printed only)"
		}
		for _, c := range add {
			fmt.Fprintf(out, "[%s] %s: tc %s\n", t.Name, where, strings.Join(c, " "))
		}
		hold(ctx, b.duration)
		return nil
	}
	filtered := len(add) > 1
	if err := rt.Sidecar(ctx, t, b.image, b.pull, "tc", add, out); err != nil {
		if filtered {
			err = fmt.Errorf("failed to run tc commands: %w", err)
		}
		return fmt.Errorf("netem failed: %w", err)
	}
	hold(ctx, b.duration)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := rt.Sidecar(cctx, t, b.image, false, "tc", del, out); err != nil {
		fmt.Fprintf(out, "level=warning msg=\"failed to stop netem container (container may have been removed)\" error=%q\n", err.Error())
	}
	return nil
}
