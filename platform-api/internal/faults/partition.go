package faults

import (
	"context"
	"fmt"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
)

// partition cuts the target and its peer off from each other, both
// directions. It is Pumba's iptables command, not netem: on both
// containers it drops every packet coming in on eth0 from the other side,
// and it needs no netem qdisc, which some kernels (this project's CI
// machine's) lack. Rules as Pumba adds them:
// iptables -I INPUT -i eth0 -s <peer> -m statistic --mode random
// --probability 1.00 -j DROP.
type partition struct{}

// twoSided: a partition acts between the target and its peer.
func (partition) twoSided() {}

// class: a partition fault holds its container's network (see family).
func (partition) class() class { return classNetwork }

// validate checks a partition fault's own fields (see family).
func (partition) validate(s *Spec, p *apierr.Problems, _ int) {
	if s.Peer == "" {
		p.Add("peer", "is required: the service cut off from target, both directions")
	} else if s.Peer == s.Target {
		p.Add("peer", "must differ from target")
	}
}

// params are a partition fault's fields as its record shows them.
func (partition) params(s Spec) map[string]string {
	p := durationParams(s)
	p["peer"] = s.Peer
	return p
}

// args is Pumba's command line: each side's address as a source to drop,
// on both containers.
func (partition) args(m *Manager, f *Fault) []string {
	args := []string{"--log-level", "info", "iptables", "--duration", f.spec.Duration.String(), "--iptables-image", m.pumba.NettoolsImage, "--pull-image=false"}
	for _, ip := range f.sources {
		args = append(args, "--source", ip)
	}
	args = append(args, "loss", "--probability", "1.0", f.Container)
	if f.peer != nil {
		args = append(args, f.peer.Name)
	}
	return args
}

// command is the command line a learner would type for a partition fault.
func (p partition) command(m *Manager, f *Fault) string { return pumbaCommand(p.args(m, f)) }

// apply finds both sides' addresses on the project network, then starts
// Pumba.
func (p partition) apply(ctx context.Context, m *Manager, f *Fault) error {
	if m.pumba.Image == "" {
		return fmt.Errorf("%w: network faults need PUMBA_IMAGE", apierr.ErrNotImplemented)
	}
	net, err := m.rt.ProjectNetwork(ctx, m.pumba.Network)
	if err != nil {
		return err
	}
	tIP, pIP := f.targetIPs[net], f.peer.IPs[net]
	if tIP == "" || pIP == "" {
		return fmt.Errorf("partition: %s and %s must both be on network %s (are they running?)", f.Container, f.peer.Name, net)
	}
	f.sources = []string{pIP + "/32", tIP + "/32"}
	return m.runPumba(ctx, f, p.args(m, f))
}

// revert undoes a partition fault (see family).
func (partition) revert(ctx context.Context, m *Manager, f *Fault) error { return m.stopPumba(ctx, f) }

// leftovers are the rules Pumba inserted, deleted with -D.
func (partition) leftovers(f *Fault) [][]string {
	var cmds [][]string
	for _, src := range f.sources {
		cmds = append(cmds, append([]string{"iptables"}, partitionRule("-D", src)...))
	}
	return cmds
}

// partitionRule is the iptables rule Pumba's "iptables loss --probability
// 1.0" inserts (op -I) or deletes (op -D) for one source.
func partitionRule(op, source string) []string {
	return []string{op, "INPUT", "-i", "eth0", "-s", source, "-m", "statistic", "--mode", "random", "--probability", "1.00", "-j", "DROP"}
}
