package faults

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/docker"
)

// A network fault can leave rules behind when its Pumba job was killed
// before it could remove them (a platform crash, a failed Pumba): a netem
// root qdisc, or a partition's iptables rules. They are removed the way
// Pumba adds them, by a nettools sidecar in the container's namespace
// (docker.Runtime.RunInNetns), each step bounded by CleanupTimeout and
// retried when Docker or the sidecar fails. A tool that answers, even
// non-zero (tc: "Cannot delete qdisc with handle of zero", iptables:
// "Bad rule"), has nothing left to remove: only the steps that never got
// an answer are reported.

// cleanupTries is how many times a cleanup step is tried.
const cleanupTries = 3

// reconcileNetwork ends an expired network fault found at start-up, in the
// background: Pumba is stopped, the leftover rules removed, then the
// marker. Meanwhile the fault is "reverting" (a stop or reset leaves it
// alone) and still conflicts with new network faults on its containers.
// If a rule could not be removed, the fault is marked failed with what is
// left, and its marker (the Pumba job) is kept, so the next start tries
// again; so it is when Close cuts the cleanup short.
func (m *Manager) reconcileNetwork(f *Fault) {
	defer m.wg.Done()
	const reason = "expired while the platform was down"
	ctx, cancel := context.WithTimeout(m.bg, m.revertT)
	defer cancel()
	if err := m.stopPumba(ctx, f); err != nil && !errors.Is(err, docker.ErrNotFound) {
		m.log.Warn("stop expired pumba job", "fault", f.ID, "err", err)
	}
	if err := m.cleanupNetwork(m.bg, f); err != nil {
		m.log.Error("leftover network rules not removed; the next start retries", "fault", f.ID, "target", f.Container, "err", err)
		m.finish(f, StateFailed, reason, fmt.Errorf("leftover network rules not removed: %w", err))
		return
	}
	rctx, rcancel := context.WithTimeout(m.bg, m.revertT)
	defer rcancel()
	if err := m.rt.Remove(rctx, f.marker); err != nil {
		m.finish(f, StateFailed, reason, err)
		return
	}
	m.log.Info("fault reverted", "id", f.ID, "type", f.Type, "target", f.Container, "reason", reason)
	m.finish(f, StateReverted, reason, nil)
}

// cleanupNetwork removes whatever a network fault may have left on its
// containers, records the outcome in f.Cleanup and returns what could not
// be removed. For netem faults that is the root qdisc; for a partition,
// the iptables rules Pumba inserted (the same rules, deleted with -D).
func (m *Manager) cleanupNetwork(ctx context.Context, f *Fault) error {
	if m.pumba.NettoolsImage == "" {
		return nil
	}
	n, ok := f.fam.(network)
	if !ok {
		return nil
	}
	m.setCleanup(f, "pending")
	cmds := n.leftovers(f)
	var errs []error
	for _, id := range []string{f.ContainerID, f.PeerID} {
		if id == "" {
			continue
		}
		for _, cmd := range cmds {
			if err := m.cleanupStep(ctx, f, id, cmd); err != nil {
				errs = append(errs, err)
			}
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		m.setCleanup(f, "failed: "+strings.ReplaceAll(err.Error(), "\n", "; "))
	} else {
		m.setCleanup(f, "done")
	}
	return err
}

// cleanupStep runs one command in a sidecar, retried while it gets no
// answer. A target that is gone has nothing to clean.
func (m *Manager) cleanupStep(ctx context.Context, f *Fault, id string, cmd []string) error {
	var err error
	for try := 1; try <= cleanupTries; try++ {
		sctx, cancel := context.WithTimeout(ctx, m.pumba.CleanupTimeout)
		var code int64
		var out string
		code, out, err = m.rt.RunInNetns(sctx, id, m.pumba.NettoolsImage, cmd)
		cancel()
		if err == nil || strings.Contains(err.Error(), "No such container") { // (a missing image is a failure)
			m.log.Info("leftover network fault rules cleaned", "fault", f.ID, "container", id[:min(12, len(id))], "cmd", strings.Join(cmd, " "), "exit", code, "output", out)
			return nil
		}
		m.log.Warn("network cleanup step failed", "fault", f.ID, "container", id[:min(12, len(id))], "cmd", strings.Join(cmd, " "), "try", try, "err", err)
		if try < cleanupTries {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s in %s: %w", strings.Join(cmd, " "), id[:min(12, len(id))], ctx.Err())
			case <-time.After(time.Duration(try) * time.Second):
			}
		}
	}
	return fmt.Errorf("%s in %s (%d tries): %w", strings.Join(cmd, " "), id[:min(12, len(id))], cleanupTries, err)
}

// setCleanup records the cleanup's state in the fault record.
func (m *Manager) setCleanup(f *Fault, state string) {
	m.mu.Lock()
	f.Cleanup = state
	m.mu.Unlock()
}
