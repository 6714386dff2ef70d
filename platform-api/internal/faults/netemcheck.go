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

// Delay, loss, duplicate, corrupt and rate need the kernel's netem qdisc
// (sch_netem), which some kernels lack: Docker Desktop on Apple silicon,
// WSL2, some minikube and Podman machines, this project's CI machine. On
// such a kernel Pumba's "tc qdisc add dev eth0 root netem ..." fails and
// Pumba exits 1 with only tc's exit code (it drains tc's words): the fault
// would be reported failed a few seconds after a 201. So before the first
// netem fault the platform asks the kernel itself, the way Pumba would
// apply the fault: tc in a nettools sidecar, in a network namespace of its
// own (only lo, gone with the sidecar: no container's network is touched),
// adds a netem qdisc. A kernel that refuses it answers the start with
// ErrNetemMissing (501) naming tc's words and the way out. A kernel that
// accepted it is not asked again. A check that gets no answer (a wedged
// tool, a busy engine) or another one refuses nothing: it is logged, and
// the fault goes on as before the check existed (Pumba's watcher reports a
// Pumba that fails).

// ErrNetemMissing is a start refused because the engine's kernel has no
// netem qdisc.
var ErrNetemMissing = fmt.Errorf("%w: netem is missing in this kernel", apierr.ErrNotImplemented)

// netemProbe is the tc command of the check.
var netemProbe = []string{"tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"}

// netemMissingWords are what tc (iproute2) says when the kernel has no
// netem qdisc: "Error: Specified qdisc kind is unknown." (extended ack,
// iproute2 4.16 on), "RTNETLINK answers: No such file or directory"
// (older), "Operation not supported" (reported on WSL2 and Docker Desktop
// VMs).
var netemMissingWords = []string{"qdisc kind is unknown", "Unknown qdisc", "Operation not supported", "RTNETLINK answers: No such file or directory"}

// needsNetem is a family applied with a netem qdisc.
type needsNetem interface{ needsNetem() }

// needsNetem: a netem fault needs the kernel's netem.
func (netemJob) needsNetem() {}

// netemCall is one netem check under way; a fault start that comes while
// it runs waits for it instead of starting a second one.
type netemCall struct {
	done chan struct{}
	err  error // set before done is closed
	code int64 // tc's exit code (-1: no answer)
}

// netemCheckBudget bounds the check's sidecar itself: it goes on after a
// fault start stopped waiting for it (after CleanupTimeout), so a slow
// engine (a first start of the image, an emulated machine) still gets its
// answer, and the next start uses it.
const netemCheckBudget = 3 * time.Minute

// checkNetem returns ErrNetemMissing when tc says the engine's kernel has
// no netem, else nil (a kernel seen with netem is remembered). It waits for
// the check at most CleanupTimeout, then lets the fault go on (logged)
// while the check goes on in the background for the next start.
func (m *Manager) checkNetem(ctx context.Context) error {
	if m.pumba.NettoolsImage == "" || m.netemSeen.Load() {
		return nil
	}
	c := m.netemCheck()
	wait := time.NewTimer(m.pumba.CleanupTimeout)
	defer wait.Stop()
	select {
	case <-c.done:
	case <-wait.C:
		m.log.WarnContext(ctx, "netem check got no answer in time; the fault goes on, the check goes on for the next one", "cmd", strings.Join(netemProbe, " "), "waited", m.pumba.CleanupTimeout)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	if c.err != nil && !errors.Is(c.err, ErrNetemMissing) {
		// No answer (exit -1), or tc refused for another reason.
		m.log.WarnContext(ctx, "netem check did not say netem is missing; the fault goes on", "cmd", strings.Join(netemProbe, " "), "exit", c.code, "err", c.err)
		return nil
	}
	return c.err
}

// netemCheck returns the check under way, or starts one. A check that
// ended is forgotten (but for netemSeen): the next start asks again, as a
// kernel without netem may be swapped for one with it (another engine).
func (m *Manager) netemCheck() *netemCall {
	m.netemMu.Lock()
	defer m.netemMu.Unlock()
	if m.netemCall != nil {
		return m.netemCall
	}
	c := &netemCall{done: make(chan struct{})}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		c.code, c.err = -1, errClosed
		close(c.done)
		return c
	}
	m.wg.Add(1) // under the lock, before Close can Wait
	m.mu.Unlock()
	m.netemCall = c
	go func() {
		defer m.wg.Done()
		cctx, cancel := context.WithTimeout(m.bg, netemCheckBudget)
		defer cancel()
		t0 := time.Now()
		c.code, c.err = m.askNetem(cctx)
		m.log.Info("netem check", "cmd", strings.Join(netemProbe, " "), "exit", c.code, "err", c.err, "took", time.Since(t0).Round(time.Millisecond))
		m.netemMu.Lock()
		m.netemCall = nil
		m.netemMu.Unlock()
		close(c.done)
	}()
	return c
}

// errClosed is a check asked of a manager that is shutting down.
var errClosed = errors.New("the fault manager is shutting down")

// errNetemOther is a check whose tc answered neither yes nor "missing".
var errNetemOther = errors.New("netem check answered otherwise")

// askNetem runs the check's tc and reads its answer: nil (netem is there,
// remembered), ErrNetemMissing (tc's words say so), or another error (no
// answer, or another one: the fault goes on).
func (m *Manager) askNetem(ctx context.Context) (int64, error) {
	code, out, err := m.rt.RunInNetns(ctx, docker.OwnNetns, m.pumba.NettoolsImage, netemProbe)
	if err != nil {
		return -1, err
	}
	if code == 0 {
		m.netemSeen.Store(true)
		return 0, nil
	}
	for _, w := range netemMissingWords {
		if strings.Contains(out, w) {
			return code, fmt.Errorf("%w (%s answered %q, exit %d): delay, loss, duplicate, corrupt and rate need the sch_netem qdisc, "+
				"which Docker Desktop on Apple silicon, WSL2 and some minikube or Podman machines lack; "+
				"run them against the netem VM target instead: make e2e-netem (test/e2e/README.md)",
				ErrNetemMissing, strings.Join(netemProbe, " "), out, code)
		}
	}
	return code, fmt.Errorf("%w: %q", errNetemOther, out)
}

// Prepare readies what faults of these types will need, so that their
// starts, at their offsets in an experiment, do not pay for it: Pumba's and
// the nettools images (a pull on a laptop takes minutes) and, for a netem
// type, the kernel's netem check (a sidecar: seconds on a busy engine,
// minutes under emulation). An experiment calls it at its start, in the
// background. It says what it readied ("" for nothing: no network fault)
// and returns what was not ready; a fault's start still checks and
// answers for itself.
func (m *Manager) Prepare(ctx context.Context, types []Type) (string, error) {
	var network, netem bool
	for _, t := range types {
		fam, ok := families[t]
		if !ok {
			continue
		}
		network = network || fam.class() == classNetwork
		if _, ok := fam.(needsNetem); ok {
			netem = true
		}
	}
	if !network || m.pumba.Image == "" {
		return "", nil
	}
	if err := m.rt.EnsureImages(ctx, m.pumba.Image, m.pumba.NettoolsImage); err != nil {
		return "", err
	}
	if !netem || m.pumba.NettoolsImage == "" {
		return "Pumba's images", nil
	}
	if m.netemSeen.Load() {
		return "Pumba's images; the kernel's netem (seen before)", nil
	}
	c := m.netemCheck()
	select {
	case <-c.done:
		if c.err != nil {
			return "Pumba's images", c.err
		}
		return "Pumba's images; the kernel's netem (checked)", nil
	case <-ctx.Done():
		return "Pumba's images", ctx.Err()
	}
}
