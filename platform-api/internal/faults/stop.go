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

func (stop) class() class                          { return classState }
func (stop) validate(*Spec, *apierr.Problems, int) {}
func (stop) params(s Spec) map[string]string       { return durationParams(s) }
func (stop) command(_ *Manager, f *Fault) string   { return "docker stop " + f.Container }

func (stop) apply(ctx context.Context, m *Manager, f *Fault) error {
	if err := m.mark(ctx, f); err != nil {
		return err
	}
	return m.rt.Stop(ctx, f.ContainerID, stopTimeout)
}

func (stop) revert(ctx context.Context, m *Manager, f *Fault) error {
	return m.rt.Start(ctx, f.ContainerID)
}
