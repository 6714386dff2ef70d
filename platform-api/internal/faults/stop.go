package faults

import (
	"context"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
)

// stop stops the container gracefully (SIGTERM, then SIGKILL after 10 s);
// the revert starts it again.
type stop struct{}

// stopTimeout is how long a stop (and a restart) waits after SIGTERM.
const stopTimeout = 10 * time.Second

// class: a stop fault holds its container's state (see family).
func (stop) class() class { return classState }

// validate: a stop fault has no fields of its own.
func (stop) validate(*Spec, *apierr.Problems, int) {}

// params are a stop fault's fields as its record shows them.
func (stop) params(s Spec) map[string]string { return durationParams(s) }

// command is the command line a learner would type for a stop fault.
func (stop) command(_ *Manager, f *Fault) string { return "docker stop " + f.Container }

// apply injects a stop fault (see family).
func (stop) apply(ctx context.Context, m *Manager, f *Fault) error {
	if err := m.mark(ctx, f); err != nil {
		return err
	}
	return m.rt.Stop(ctx, f.ContainerID, stopTimeout)
}

// revert undoes a stop fault (see family).
func (stop) revert(ctx context.Context, m *Manager, f *Fault) error {
	return m.rt.Start(ctx, f.ContainerID)
}
