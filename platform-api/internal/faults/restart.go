package faults

import (
	"context"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
)

// restart restarts the container (docker restart: stop, then start). It
// has no duration and nothing to revert: the fault is completed once the
// engine has restarted the container. While it is being applied (up to the
// stop timeout, for a process that ignores SIGTERM) it holds the container
// like any state fault.
type restart struct{}

// oneShot: a restart has nothing to revert.
func (restart) oneShot() {}

// class: a restart fault holds its container's state (see family).
func (restart) class() class { return classState }

// validate: a restart fault has no fields of its own.
func (restart) validate(*Spec, *apierr.Problems, int) {}

// params are a restart fault's fields as its record shows them.
func (restart) params(Spec) map[string]string { return map[string]string{} }

// command is the command line a learner would type for a restart fault.
func (restart) command(_ *Manager, f *Fault) string { return "docker restart " + f.Container }

// revert: a restart has nothing to undo.
func (restart) revert(context.Context, *Manager, *Fault) error { return nil }

// apply injects a restart fault (see family).
func (restart) apply(ctx context.Context, m *Manager, f *Fault) error {
	return m.rt.Restart(ctx, f.ContainerID, stopTimeout)
}
