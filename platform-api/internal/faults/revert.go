package faults

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/docker"
)

// A revert that fails (the engine unreachable, a daemon error) leaves the
// fault in effect: a paused container stays paused. So it is never given
// up: the fault stays reverting, holding its containers, with the attempt
// count and the last error in its record, and is tried again with growing
// waits until it succeeds. Stopping or resetting it tries again at once.
// Close cancels the retries; the marker stays, and the next start
// reconciles it.

// Backoff is the wait before each retry of a failed revert: Min after the
// first failure, doubling up to Max.
type Backoff struct{ Min, Max time.Duration }

// DefaultBackoff retries after 1 s, 2 s, 4 s, ... then every minute.
var DefaultBackoff = Backoff{Min: time.Second, Max: time.Minute}

// wait is the pause after the attempt-th failure.
func (b Backoff) wait(attempt int) time.Duration {
	d := b.Min
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// revert undoes f and records the end; it returns the error of an attempt
// that failed (ErrRevertFailed). It is idempotent: a fault already ended,
// or being handled by a network cleanup, is left alone, and a caller that
// comes while an attempt is under way waits for it and tries again only
// if it failed.
func (m *Manager) revert(f *Fault, reason string) error {
	m.mu.Lock()
	for f.attempt != nil {
		done := f.attempt
		m.mu.Unlock()
		<-done
		m.mu.Lock()
	}
	switch {
	case f.State == StateActive:
		f.State, f.reason = StateReverting, reason
	case f.State == StateReverting && f.RevertAttempts > 0 && f.Cleanup != "pending":
		// A failed revert: try again now.
	default:
		m.mu.Unlock()
		return nil
	}
	f.stopTimer()
	f.NextRevertAt = nil
	f.RevertAttempts++
	n, why := f.RevertAttempts, f.reason
	done := make(chan struct{})
	f.attempt = done
	m.mu.Unlock()

	err := m.attemptRevert(f)

	m.mu.Lock()
	f.attempt = nil
	close(done)
	if err == nil {
		m.mu.Unlock()
		m.log.Info("fault reverted", "id", f.ID, "type", f.Type, "target", f.Container, "reason", why, "attempts", n)
		m.finish(f, StateReverted, why, nil)
		return nil
	}
	f.Error = err.Error()
	var next time.Time
	if !m.closed {
		wait := m.retry.wait(n)
		next = time.Now().Add(wait).UTC()
		f.NextRevertAt = &next
		m.schedule(f, wait, why)
	}
	m.mu.Unlock()
	m.log.Error("revert fault; retrying", "id", f.ID, "type", f.Type, "target", f.Container, "attempt", n, "next", next, "err", err)
	return fmt.Errorf("%w: %s on %s, attempt %d: %w; the fault stays %s and is retried (GET /api/faults/%s)",
		ErrRevertFailed, f.Type, f.Container, n, err, StateReverting, f.ID)
}

// attemptRevert runs the family's revert, then removes the marker, on a
// context of its own: bounded, and cancelled only by Close.
func (m *Manager) attemptRevert(f *Fault) error {
	ctx, cancel := context.WithTimeout(m.bg, m.revertT)
	defer cancel()
	err := f.fam.revert(ctx, m, f)
	if errors.Is(err, docker.ErrNotFound) {
		err = nil // the target is gone: nothing left to revert
	}
	if err == nil && f.marker != "" {
		err = m.rt.Remove(ctx, f.marker)
	}
	return err
}
