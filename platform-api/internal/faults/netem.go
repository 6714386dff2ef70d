package faults

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/docker"
)

// Pumba configures network faults: they run as Pumba netem job containers
// that reach the engine through its socket.
type Pumba struct {
	Image         string // ghcr.io/alexei-led/pumba:1.1.7
	NettoolsImage string // the tc/iptables helper Pumba runs in the target's namespace
	DockerSocket  string // host path of the engine's socket (/var/run/docker.sock)
	Network       string // the project network whose IPs a partition uses ("": the project's)
	// StopGrace is how long a stop waits for Pumba after SIGTERM: Pumba
	// removes its tc rules only then, so it must not be cut short.
	StopGrace time.Duration
	// CleanupTimeout bounds each leftover-rule cleanup sidecar (30 s if
	// zero): a nettools tool that hangs must not hang the platform.
	CleanupTimeout time.Duration
}

// netemKind is the dsplab.job.kind of Pumba jobs.
const netemKind = "netfault"

// pumbaArgs builds Pumba's command line: the netem command, its
// parameters, and the containers (and the peers' IPs for a partition).
func (m *Manager) pumbaArgs(s Spec, containers, targetIPs []string) []string {
	if s.Type == Partition {
		// A partition is Pumba's iptables command, not netem: it drops
		// every packet coming in on eth0 from the other side (on both
		// containers, so both directions), and it needs no netem qdisc,
		// which some kernels (this project's CI machine's) lack. Rules
		// as Pumba adds them: iptables -I INPUT -i eth0 -s <peer>
		// -m statistic --mode random --probability 1.00 -j DROP.
		args := []string{"--log-level", "info", "iptables", "--duration", s.Duration.String(), "--iptables-image", m.pumba.NettoolsImage, "--pull-image=false"}
		for _, ip := range targetIPs {
			args = append(args, "--source", ip)
		}
		args = append(args, "loss", "--probability", "1.0")
		return append(args, containers...)
	}
	args := []string{"--log-level", "info", "netem", "--duration", s.Duration.String(), "--tc-image", m.pumba.NettoolsImage, "--pull-image=false"}
	for _, ip := range targetIPs {
		args = append(args, "--target", ip)
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	switch s.Type {
	case Delay:
		args = append(args, "delay", "--time", strconv.Itoa(s.DelayMs), "--jitter", strconv.Itoa(s.JitterMs), "--correlation", f(s.Correlation))
		if s.Distribution != "" {
			args = append(args, "--distribution", s.Distribution)
		}
	case Loss, Duplicate, Corrupt:
		args = append(args, s.Type, "--percent", f(s.Percent), "--correlation", f(s.Correlation))
	case Rate:
		args = append(args, "rate", "--rate", s.Rate)
	}
	return append(args, containers...)
}

// ensureImages makes Pumba's images present before a network fault is
// reserved: a pull may take minutes, and the fault's window starts after
// it. Pumba runs with --pull-image=false, so its nettools image is
// ensured too. A missing image fails the start with nothing created.
func (m *Manager) ensureImages(ctx context.Context, s Spec) error {
	if class(s.Type) != "network" || m.pumba.Image == "" {
		return nil
	}
	return m.rt.EnsureImages(ctx, m.pumba.Image, m.pumba.NettoolsImage)
}

// applyNetwork starts the Pumba job of a network fault.
func (m *Manager) applyNetwork(ctx context.Context, f *Fault, peer *docker.Container) error {
	if m.pumba.Image == "" {
		return fmt.Errorf("%w: network faults need PUMBA_IMAGE", ErrNotImplemented)
	}
	containers, ips := []string{f.Container}, []string(nil)
	if peer != nil {
		net, err := m.rt.ProjectNetwork(ctx, m.pumba.Network)
		if err != nil {
			return err
		}
		tIP, pIP := f.targetIPs[net], peer.IPs[net]
		if tIP == "" || pIP == "" {
			return fmt.Errorf("partition: %s and %s must both be on network %s (are they running?)", f.Container, peer.Name, net)
		}
		containers, ips = append(containers, peer.Name), []string{pIP + "/32", tIP + "/32"}
		f.sources = ips
	}
	args := m.pumbaArgs(f.spec, containers, ips)
	f.Command = "pumba " + strings.Join(args, " ")
	labels := markerLabels(f)
	labels[docker.LabelJobKind] = netemKind
	id, err := m.rt.CreateJob(ctx, docker.JobSpec{
		Name: "dsplab-netem-" + f.ID, Image: m.pumba.Image, Cmd: args, Labels: labels,
		Binds:       []string{m.pumba.DockerSocket + ":/var/run/docker.sock"},
		Images:      []string{m.pumba.NettoolsImage},
		StopTimeout: int(m.pumba.StopGrace.Seconds()),
	})
	if err != nil {
		return err
	}
	f.markerID = id
	if err := m.rt.Start(ctx, id); err != nil {
		m.rt.Remove(context.WithoutCancel(ctx), id)
		return err
	}
	go m.watchPumba(f)
	return nil
}

// watchPumba notices a Pumba job that exits with an error before its time
// (bad parameters, a missing tc image): the fault is marked failed with
// Pumba's last words instead of pretending to be active.
func (m *Manager) watchPumba(f *Fault) {
	ctx, cancel := context.WithTimeout(context.Background(), f.spec.Duration+m.pumba.StopGrace+time.Minute)
	defer cancel()
	code, err := m.rt.Wait(ctx, f.markerID)
	if err != nil || code == 0 {
		return // a clean end is the revert's to record
	}
	logs, _ := m.rt.Logs(ctx, f.markerID, 10)
	m.mu.Lock()
	active := f.State == StateActive
	if active {
		f.State = "reverting"
		if f.timer != nil {
			f.timer.Stop()
		}
	}
	m.mu.Unlock()
	if !active {
		return
	}
	m.rt.Remove(ctx, f.markerID)
	if err := m.cleanupNetwork(ctx, f); err != nil {
		m.log.Error("leftover network rules not removed", "fault", f.ID, "err", err)
	}
	m.finish(f, StateFailed, "pumba failed", fmt.Errorf("pumba exited %d: %s", code, strings.TrimSpace(logs)))
}

// revertNetwork stops the Pumba job (SIGTERM: Pumba removes its tc rules)
// and removes it.
func (m *Manager) revertNetwork(ctx context.Context, f *Fault) error {
	if err := m.rt.Stop(ctx, f.markerID, m.pumba.StopGrace); err != nil {
		return err
	}
	return nil
}

// partitionRule is the iptables rule Pumba's "iptables loss --probability
// 1.0" inserts (op -I) or deletes (op -D) for one source.
func partitionRule(op, source string) []string {
	return []string{op, "INPUT", "-i", "eth0", "-s", source, "-m", "statistic", "--mode", "random", "--probability", "1.00", "-j", "DROP"}
}
