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

func (restart) oneShot()                                       {}
func (restart) class() class                                   { return classState }
func (restart) validate(*Spec, *apierr.Problems, int)          {}
func (restart) params(Spec) map[string]string                  { return map[string]string{} }
func (restart) command(_ *Manager, f *Fault) string            { return "docker restart " + f.Container }
func (restart) revert(context.Context, *Manager, *Fault) error { return nil }

func (restart) apply(ctx context.Context, m *Manager, f *Fault) error {
	return m.rt.Restart(ctx, f.ContainerID, stopTimeout)
}
