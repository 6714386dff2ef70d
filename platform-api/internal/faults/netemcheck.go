package faults

import (
	"context"
	"fmt"
	"strings"

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

// checkNetem returns ErrNetemMissing when tc says the engine's kernel has
// no netem, else nil (a kernel seen with netem is remembered).
func (m *Manager) checkNetem(ctx context.Context) error {
	if m.pumba.NettoolsImage == "" || m.netemSeen.Load() {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, m.pumba.CleanupTimeout)
	defer cancel()
	code, out, err := m.rt.RunInNetns(cctx, docker.OwnNetns, m.pumba.NettoolsImage, netemProbe)
	if err != nil {
		m.log.WarnContext(ctx, "netem check got no answer; the fault goes on", "cmd", strings.Join(netemProbe, " "), "err", err)
		return nil
	}
	if code == 0 {
		m.netemSeen.Store(true)
		return nil
	}
	for _, w := range netemMissingWords {
		if strings.Contains(out, w) {
			return fmt.Errorf("%w (%s answered %q, exit %d): delay, loss, duplicate, corrupt and rate need the sch_netem qdisc, "+
				"which Docker Desktop on Apple silicon, WSL2 and some minikube or Podman machines lack; "+
				"run them against the netem VM target instead: make e2e-netem (test/e2e/README.md)",
				ErrNetemMissing, strings.Join(netemProbe, " "), out, code)
		}
	}
	m.log.WarnContext(ctx, "netem check answered otherwise; the fault goes on", "cmd", strings.Join(netemProbe, " "), "exit", code, "output", out)
	return nil
}
