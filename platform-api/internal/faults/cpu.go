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

func (cpu) class() class { return classCPU }

func (cpu) validate(s *Spec, p *apierr.Problems, hostCPUs int) {
	if s.CPUs < 0.01 || s.CPUs > float64(hostCPUs) {
		p.Add("cpus", "must be from 0.01 to %d (the host's CPUs)", hostCPUs)
	}
}

func (cpu) params(s Spec) map[string]string {
	p := durationParams(s)
	p["cpus"] = formatFloat(s.CPUs)
	return p
}

func (cpu) command(_ *Manager, f *Fault) string {
	return fmt.Sprintf("docker update --cpus %g %s", f.spec.CPUs, f.Container)
}

func (cpu) apply(ctx context.Context, m *Manager, f *Fault) error {
	if err := m.save(ctx, f); err != nil {
		return err
	}
	if err := m.mark(ctx, f); err != nil {
		return err
	}
	return m.rt.SetCPUs(ctx, f.ContainerID, int64(f.spec.CPUs*1e9))
}

func (cpu) revert(ctx context.Context, m *Manager, f *Fault) error {
	return m.rt.SetCPUs(ctx, f.ContainerID, f.saved.NanoCPUs)
}
