package faults

import (
	"context"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
)

// pause freezes every process of the container (docker pause: the cgroup
// freezer); unpause thaws them. The container keeps its memory and
// sockets: peers see a host that accepts connections and never answers.
type pause struct{}

func (pause) class() class                          { return classState }
func (pause) validate(*Spec, *apierr.Problems, int) {}
func (pause) params(s Spec) map[string]string       { return durationParams(s) }
func (pause) command(_ *Manager, f *Fault) string   { return "docker pause " + f.Container }

func (pause) apply(ctx context.Context, m *Manager, f *Fault) error {
	if err := m.mark(ctx, f); err != nil {
		return err
	}
	return m.rt.Pause(ctx, f.ContainerID)
}

func (pause) revert(ctx context.Context, m *Manager, f *Fault) error {
	return m.rt.Unpause(ctx, f.ContainerID)
}
