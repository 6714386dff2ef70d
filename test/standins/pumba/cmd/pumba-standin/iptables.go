package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli"
)

func iptablesCommand(ctx context.Context, open func() (runtime, error), out io.Writer) cli.Command {
	return cli.Command{
		Name: "iptables",
		Flags: []cli.Flag{
			cli.DurationFlag{Name: "duration, d"},
			cli.StringFlag{Name: "interface, i", Value: "eth0"},
			cli.StringFlag{Name: "protocol, p", Value: "any"},
			cli.StringSliceFlag{Name: "source, src, s"},
			cli.StringSliceFlag{Name: "destination, dest"},
			cli.StringFlag{Name: "src-port, sport"},
			cli.StringFlag{Name: "dst-port, dport"},
			cli.StringFlag{Name: "iptables-image", Value: defaultNettools},
			cli.BoolTFlag{Name: "pull-image"},
			cli.IntFlag{Name: "limit"},
		},
		Subcommands: []cli.Command{{
			Name: "loss",
			Flags: []cli.Flag{
				cli.StringFlag{Name: "mode", Value: "random"},
				cli.Float64Flag{Name: "probability"},
				cli.IntFlag{Name: "every"},
				cli.IntFlag{Name: "packet"},
			},
			Action: action(ctx, open, out, func(c *cli.Context, g globals) (chaos, error) {
				rules, err := parseIPTables(c, g)
				if err != nil {
					return chaos{}, err
				}
				return chaos{limit: rules.limit, run: func(ctx context.Context, rt runtime, t target) error {
					return runIPTables(ctx, rt, t, rules, g.dryRun, out)
				}}, nil
			}),
		}},
	}
}

// ipRules are the rules of one "iptables loss": Pumba's buildIPTablesCmd
// and its one rule per source, destination and port filter (or a single
// rule without filters).
type ipRules struct {
	netemBase
	protocol string
	pull     bool
	add, del [][]string
}

func parseIPTables(c *cli.Context, g globals) (ipRules, error) {
	p := c.Parent()
	var r ipRules
	r.duration, r.iface, r.protocol, r.image, r.limit = p.Duration("duration"), p.String("interface"), p.String("protocol"), p.String("iptables-image"), p.Int("limit")
	r.pull = p.BoolT("pull-image")
	wrap := func(err error) error { return fmt.Errorf("error parsing iptables parameters: %w", err) }
	if r.duration == 0 {
		return r, wrap(errors.New("unset or invalid duration value"))
	}
	if g.interval != 0 && r.duration >= g.interval {
		return r, wrap(errors.New("duration must be shorter than interval"))
	}
	if err := validInterface(r.iface); err != nil {
		return r, wrap(err)
	}
	if !slices.Contains([]string{"any", "tcp", "udp", "icmp"}, r.protocol) {
		return r, wrap(errors.New("bad protocol name: must be one of any, tcp, udp or icmp"))
	}
	var srcs, dsts []string
	for _, l := range []struct {
		flag string
		to   *[]string
	}{{"source", &srcs}, {"destination", &dsts}} {
		for _, s := range p.StringSlice(l.flag) {
			ip, err := parseCIDR(s)
			if err != nil {
				return r, wrap(fmt.Errorf("failed to parse ip: %w", err))
			}
			*l.to = append(*l.to, ip)
		}
	}
	sports, err := parsePorts(p.String("src-port"))
	if err != nil {
		return r, wrap(fmt.Errorf("failed to get source ports: %w", err))
	}
	dports, err := parsePorts(p.String("dst-port"))
	if err != nil {
		return r, wrap(fmt.Errorf("failed to get destination ports: %w", err))
	}
	if r.protocol != "udp" && r.protocol != "tcp" {
		if len(sports) > 0 {
			return r, wrap(errors.New("using source port is only supported for tcp and udp protocol"))
		}
		if len(dports) > 0 {
			return r, wrap(errors.New("using destination port is only supported for tcp and udp protocol"))
		}
	}
	suffix, err := lossStatistic(c)
	if err != nil {
		return r, err
	}
	suffix = append(suffix, "-j", "DROP")
	r.add, r.del = ipRuleLines(r, srcs, dsts, sports, dports, suffix)
	return r, nil
}

// lossStatistic is the rule's "-m statistic" part from the loss
// subcommand's flags, checked as Pumba checks them (messages unwrapped).
func lossStatistic(c *cli.Context) ([]string, error) {
	mode, prob, every, packet := c.String("mode"), c.Float64("probability"), c.Int("every"), c.Int("packet")
	suffix := []string{"-m", "statistic", "--mode", mode}
	switch mode {
	case "random":
		if prob < 0 || prob > 1 {
			return nil, errors.New("invalid loss probability: must be between 0.0 and 1.0")
		}
		suffix = append(suffix, "--probability", strconv.FormatFloat(prob, 'f', 2, 64))
	case "nth":
		if every <= 0 {
			return nil, errors.New("invalid loss every: must be > 0")
		}
		if packet < 0 || packet > every-1 {
			return nil, errors.New("invalid loss packet: must be 0 <= packet <= every-1")
		}
		suffix = append(suffix, "--every", strconv.Itoa(every), "--packet", strconv.Itoa(packet))
	default:
		return nil, errors.New("invalid loss mode: must be either random or nth")
	}
	return suffix, nil
}

// ipRuleLines is one INPUT rule per source, destination and port filter
// (one unfiltered rule when there is none), as "-I" lines to add and "-D"
// lines to delete, in Pumba's order.
func ipRuleLines(r ipRules, srcs, dsts, sports, dports, suffix []string) (add, del [][]string) {
	prefix := []string{"INPUT", "-i", r.iface}
	if r.protocol != "any" {
		prefix = append(prefix, "-p", r.protocol)
	}
	var filters [][]string
	for _, l := range []struct {
		flag   string
		values []string
	}{{"-s", srcs}, {"-d", dsts}, {"--sport", sports}, {"--dport", dports}} {
		for _, v := range l.values {
			filters = append(filters, []string{l.flag, v})
		}
	}
	if len(filters) == 0 {
		filters = [][]string{nil}
	}
	for _, f := range filters {
		rule := slices.Concat(prefix, f, suffix)
		add = append(add, append([]string{"-I"}, rule...))
		del = append(del, append([]string{"-D"}, rule...))
	}
	return add, del
}

// runIPTables adds the rules in one sidecar, holds, and deletes them in
// another, as Pumba does; the deletion runs even when SIGTERM ended the
// hold (on a context of its own).
func runIPTables(ctx context.Context, rt runtime, t target, r ipRules, dryRun bool, out io.Writer) error {
	if dryRun {
		for _, c := range r.add {
			fmt.Fprintf(out, "[%s] dry run, via %s: iptables %s\n", t.Name, r.image, strings.Join(c, " "))
		}
		hold(ctx, r.duration)
		return nil
	}
	if err := rt.Sidecar(ctx, t, r.image, r.pull, "iptables", r.add, out); err != nil {
		return fmt.Errorf("failed to add packet loss for one or more containers: %w", err)
	}
	hold(ctx, r.duration)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := rt.Sidecar(cctx, t, r.image, false, "iptables", r.del, out); err != nil {
		return fmt.Errorf("failed to stop packet loss: %w", err)
	}
	return nil
}
