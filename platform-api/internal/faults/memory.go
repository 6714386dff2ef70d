package faults

import (
	"context"
	"fmt"
	"strconv"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
)

// memory limits the container's memory and memory+swap (docker update
// --memory --memory-swap): past it the kernel reclaims, then the OOM
// killer ends the process. The limits it had are saved in the marker and
// put back, and only those.
type memory struct{}

// class: a memory fault holds its container's memory (see family).
func (memory) class() class { return classMemory }

// validate checks a memory fault's own fields (see family).
func (memory) validate(s *Spec, p *apierr.Problems, _ int) {
	if s.MemoryMB < 6 || s.MemoryMB > 1<<20 {
		p.Add("memoryMB", "must be at least 6 (Docker's minimum)")
	}
}

// params are a memory fault's fields as its record shows them.
func (memory) params(s Spec) map[string]string {
	p := durationParams(s)
	p["memoryMB"] = strconv.Itoa(s.MemoryMB)
	return p
}

// command is the command line a learner would type for a memory fault.
func (memory) command(_ *Manager, f *Fault) string {
	return fmt.Sprintf("docker update --memory %dm --memory-swap %dm %s", f.spec.MemoryMB, f.spec.MemoryMB, f.Container)
}

// apply injects a memory fault (see family).
func (memory) apply(ctx context.Context, m *Manager, f *Fault) error {
	if err := m.save(ctx, f); err != nil {
		return err
	}
	if err := m.mark(ctx, f); err != nil {
		return err
	}
	limit := int64(f.spec.MemoryMB) << 20
	return m.rt.SetMemory(ctx, f.ContainerID, limit, limit)
}

// revert undoes a memory fault (see family).
func (memory) revert(ctx context.Context, m *Manager, f *Fault) error {
	return m.rt.SetMemory(ctx, f.ContainerID, f.saved.Memory, f.saved.MemorySwap)
}
