package faults

import (
	"context"
	"slices"
	"strings"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
)

// kill sends a signal to the container's main process (docker kill
// --signal, SIGKILL by default). The revert depends on what the signal
// did: SIGSTOP stops the process and leaves the container running, so
// docker start would do nothing; it is reverted with SIGCONT. Every other
// signal is reverted with docker start, which restarts a container the
// signal ended and leaves one that survived it alone.
type kill struct{}

// signals are the signals a kill fault may send.
var signals = []string{"SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGSTOP", "SIGCONT"}

// class: a kill fault holds its container's state (see family).
func (kill) class() class { return classState }

// validate checks a kill fault's own fields (see family).
func (kill) validate(s *Spec, p *apierr.Problems, _ int) {
	if s.Signal == "" {
		s.Signal = "SIGKILL"
	}
	s.Signal = strings.ToUpper(s.Signal)
	if !strings.HasPrefix(s.Signal, "SIG") {
		s.Signal = "SIG" + s.Signal
	}
	p.Check(slices.Contains(signals, s.Signal), "signal", "%q is not one of %s", s.Signal, strings.Join(signals, ", "))
}

// params are a kill fault's fields as its record shows them.
func (kill) params(s Spec) map[string]string {
	p := durationParams(s)
	p["signal"] = s.Signal
	return p
}

// command is the command line a learner would type for a kill fault.
func (kill) command(_ *Manager, f *Fault) string {
	return "docker kill --signal " + f.spec.Signal + " " + f.Container
}

// apply injects a kill fault (see family).
func (kill) apply(ctx context.Context, m *Manager, f *Fault) error {
	if err := m.mark(ctx, f); err != nil {
		return err
	}
	return m.rt.Kill(ctx, f.ContainerID, f.spec.Signal)
}

// revert undoes a kill fault (see family).
func (kill) revert(ctx context.Context, m *Manager, f *Fault) error {
	if f.spec.Signal == "SIGSTOP" {
		return m.rt.Kill(ctx, f.ContainerID, "SIGCONT")
	}
	return m.rt.Start(ctx, f.ContainerID)
}
