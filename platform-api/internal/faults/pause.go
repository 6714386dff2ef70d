package faults

import (
	"context"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
)

// pause freezes every process of the container (docker pause: the cgroup
// freezer); unpause thaws them. The container keeps its memory and
// sockets: peers see a host that accepts connections and never answers.
type pause struct{}

// class: a pause fault holds its container's state (see family).
func (pause) class() class { return classState }

// validate: a pause fault has no fields of its own.
func (pause) validate(*Spec, *apierr.Problems, int) {}

// params are a pause fault's fields as its record shows them.
func (pause) params(s Spec) map[string]string { return durationParams(s) }

// command is the command line a learner would type for a pause fault.
func (pause) command(_ *Manager, f *Fault) string { return "docker pause " + f.Container }

// apply injects a pause fault (see family).
func (pause) apply(ctx context.Context, m *Manager, f *Fault) error {
	if err := m.mark(ctx, f); err != nil {
		return err
	}
	return m.rt.Pause(ctx, f.ContainerID)
}

// revert undoes a pause fault (see family).
func (pause) revert(ctx context.Context, m *Manager, f *Fault) error {
	return m.rt.Unpause(ctx, f.ContainerID)
}
