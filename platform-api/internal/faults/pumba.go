package faults

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
	"github.com/dsplab/dsplab/platform-api/internal/docker"
)

// Pumba configures network faults: they run as Pumba job containers that
// reach the engine through its socket.
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

// network is a family run as a Pumba job. The job is its own marker: its
// labels record the fault. leftovers are the commands that remove what a
// Pumba killed before its end may leave on a container (run by a nettools
// sidecar in the container's namespace, see cleanup.go).
type network interface {
	family
	leftovers(f *Fault) [][]string
}

// netemJob is what the netem families (delay, loss, duplicate, corrupt,
// rate) share: their class, their revert (SIGTERM to Pumba, which then
// deletes its qdisc) and their leftover, a root qdisc.
type netemJob struct{}

// class: a netem fault holds its container's network (see family).
func (netemJob) class() class { return classNetwork }

// revert undoes a netem fault (see family).
func (netemJob) revert(ctx context.Context, m *Manager, f *Fault) error { return m.stopPumba(ctx, f) }

// leftovers remove what a netem fault's Pumba, killed early, may leave.
func (netemJob) leftovers(*Fault) [][]string {
	return [][]string{{"tc", "qdisc", "del", "dev", "eth0", "root"}}
}

// netemArgs is Pumba's netem command line for f: the command, its
// parameters (sub), and the target container.
func (m *Manager) netemArgs(f *Fault, sub ...string) []string {
	args := []string{"--log-level", "info", "netem", "--duration", f.spec.Duration.String(), "--tc-image", m.pumba.NettoolsImage, "--pull-image=false"}
	return append(append(args, sub...), f.Container)
}

// pumbaCommand is a Pumba command line, as a learner would type it.
func pumbaCommand(args []string) string { return "pumba " + strings.Join(args, " ") }

// ensureImages makes Pumba's images present before a network fault is
// reserved: a pull may take minutes, and the fault's window starts after
// it. Pumba runs with --pull-image=false, so its nettools image is
// ensured too. A missing image fails the start with nothing created.
func (m *Manager) ensureImages(ctx context.Context, f family) error {
	if f.class() != classNetwork || m.pumba.Image == "" {
		return nil
	}
	return m.rt.EnsureImages(ctx, m.pumba.Image, m.pumba.NettoolsImage)
}

// runPumba creates and starts the Pumba job of a network fault. The job
// is named after the fault, so f.marker is known before it exists.
func (m *Manager) runPumba(ctx context.Context, f *Fault, args []string) error {
	if m.pumba.Image == "" {
		return fmt.Errorf("%w: network faults need PUMBA_IMAGE", apierr.ErrNotImplemented)
	}
	labels := markerLabels(f)
	labels[docker.LabelJobKind] = netemKind
	name := "dsplab-netem-" + f.ID
	id, err := m.rt.CreateJob(ctx, docker.JobSpec{
		Name: name, Image: m.pumba.Image, Cmd: args, Labels: labels,
		Binds:       []string{m.pumba.DockerSocket + ":/var/run/docker.sock"},
		Images:      []string{m.pumba.NettoolsImage},
		StopTimeout: int(m.pumba.StopGrace.Seconds()),
	})
	if err != nil {
		return err
	}
	f.marker = id
	return m.rt.Start(ctx, id)
}

// stopPumba stops the Pumba job (SIGTERM: Pumba removes its rules and
// exits); the manager removes it afterwards.
func (m *Manager) stopPumba(ctx context.Context, f *Fault) error {
	return m.rt.Stop(ctx, f.marker, m.pumba.StopGrace)
}

// watchPumba notices a Pumba job that exits with an error before its time
// (bad parameters, a missing tc image): the fault is marked failed with
// Pumba's last words instead of pretending to be active. It is tracked by
// m.wg and ends with Close.
func (m *Manager) watchPumba(f *Fault) {
	defer m.wg.Done()
	ctx, cancel := context.WithTimeout(m.bg, f.spec.Duration+m.pumba.StopGrace+time.Minute)
	defer cancel()
	code, err := m.rt.Wait(ctx, f.marker)
	if err != nil || code == 0 {
		return // a clean end is the revert's to record
	}
	logs, _ := m.rt.Logs(ctx, f.marker, 10)
	m.mu.Lock()
	active := f.State == StateActive
	if active {
		f.State = StateReverting
		f.stopTimer()
	}
	m.mu.Unlock()
	if !active {
		return
	}
	failure := fmt.Errorf("pumba exited %d: %s", code, strings.TrimSpace(logs))
	var errs []error
	if err := m.cleanupNetwork(ctx, f); err != nil {
		m.log.Error("leftover network rules not removed", "fault", f.ID, "err", err)
		errs = append(errs, fmt.Errorf("leftover network rules not removed: %w", err))
	}
	if err := m.rt.Remove(ctx, f.marker); err != nil {
		errs = append(errs, err)
	}
	m.finish(f, StateFailed, "pumba failed", errors.Join(append([]error{failure}, errs...)...))
}
