package faults

import (
	"context"
	"fmt"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
)

// cpu limits the container's CPUs (docker update --cpus). The limit it
// had is saved in the marker, and only the CPU limit is put back: a memory
// fault on the same container keeps its own.
type cpu struct{}

// class: a CPU fault holds its container's CPU (see family).
func (cpu) class() class { return classCPU }

// validate checks a CPU fault's own fields (see family).
func (cpu) validate(s *Spec, p *apierr.Problems, hostCPUs int) {
	if s.CPUs < 0.01 || s.CPUs > float64(hostCPUs) {
		p.Add("cpus", "must be from 0.01 to %d (the host's CPUs)", hostCPUs)
	}
}

// params are a CPU fault's fields as its record shows them.
func (cpu) params(s Spec) map[string]string {
	p := durationParams(s)
	p["cpus"] = formatFloat(s.CPUs)
	return p
}

// command is the command line a learner would type for a CPU fault.
func (cpu) command(_ *Manager, f *Fault) string {
	return fmt.Sprintf("docker update --cpus %g %s", f.spec.CPUs, f.Container)
}

// apply injects a CPU fault (see family).
func (cpu) apply(ctx context.Context, m *Manager, f *Fault) error {
	if err := m.save(ctx, f); err != nil {
		return err
	}
	if err := m.mark(ctx, f); err != nil {
		return err
	}
	return m.rt.SetCPUs(ctx, f.ContainerID, int64(f.spec.CPUs*1e9))
}

// revert undoes a CPU fault (see family).
func (cpu) revert(ctx context.Context, m *Manager, f *Fault) error {
	return m.rt.SetCPUs(ctx, f.ContainerID, f.saved.NanoCPUs)
}
