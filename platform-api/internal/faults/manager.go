package faults

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
	"github.com/dsplab/dsplab/platform-api/internal/docker"
	"github.com/dsplab/dsplab/platform-api/internal/ids"
)

// The errors the manager returns (the API maps them with apierr.Status).
var (
	ErrNotFound       = apierr.ErrNotFound
	ErrConflict       = apierr.ErrConflict
	ErrInfra          = apierr.ErrInfra
	ErrTooMany        = apierr.ErrTooMany
	ErrNotImplemented = apierr.ErrNotImplemented
	ErrRevertFailed   = apierr.ErrRevertFailed
)

// Manager is safe for concurrent use.
//
// A fault is built privately: reserve takes its place (caps, conflicts)
// under the lock without publishing it, apply runs outside the lock, and
// publish makes the finished record visible. Every goroutine and timer it
// starts (revert timers and retries, Pumba watchers, network cleanups) is
// tracked by wg; Close stops the timers, cancels bg and waits for them.
type Manager struct {
	rt      Runtime
	lim     Limits
	pumba   Pumba
	obs     []Observer
	log     *slog.Logger
	revertT time.Duration // bounds one revert attempt
	retry   Backoff
	// netemSeen: the engine's kernel accepted a netem qdisc (checkNetem).
	netemSeen atomic.Bool
	netemMu   sync.Mutex
	netemCall *netemCall // the check under way, if any

	mu      sync.Mutex
	faults  map[string]*Fault // published
	order   []string          // published ids, oldest first, for listing and trimming history
	pending map[string]*Fault // reserved, being applied: they hold their containers
	closed  bool

	bg     context.Context
	bgStop context.CancelFunc
	wg     sync.WaitGroup
}

// maxHistory bounds how many ended faults are remembered.
const maxHistory = 500

// New returns a manager. Network faults need pumba.Image.
func New(rt Runtime, lim Limits, pumba Pumba, log *slog.Logger, obs ...Observer) *Manager {
	if pumba.StopGrace < 45*time.Second {
		pumba.StopGrace = 45 * time.Second
	}
	if pumba.CleanupTimeout <= 0 {
		pumba.CleanupTimeout = 30 * time.Second
	}
	bg, stop := context.WithCancel(context.Background())
	return &Manager{rt: rt, lim: lim, pumba: pumba, obs: obs, log: log, revertT: pumba.StopGrace + 30*time.Second, retry: DefaultBackoff,
		faults: map[string]*Fault{}, pending: map[string]*Fault{}, bg: bg, bgStop: stop}
}

// Start validates, applies and schedules the revert of a fault.
func (m *Manager) Start(ctx context.Context, s Spec) (Fault, error) {
	if err := s.Validate(m.lim, m.rt.Host().NCPU); err != nil {
		return Fault{}, err
	}
	fam := families[s.Type]
	target, err := m.find(ctx, s.Target, s.AllowInfra)
	if err != nil {
		return Fault{}, err
	}
	f := newFault(s, fam, target)
	if _, ok := fam.(twoSided); ok {
		peer, err := m.find(ctx, s.Peer, s.AllowInfra)
		if err != nil {
			return Fault{}, err
		}
		f.peer, f.Peer, f.PeerID = &peer, peer.Service, peer.ID
	}
	if err := m.ensureImages(ctx, fam); err != nil {
		return Fault{}, err
	}
	if err := m.reserve(f); err != nil {
		return Fault{}, err
	}
	if _, ok := fam.(needsNetem); ok {
		// Checked once the place is taken (a conflict answers first), and
		// the window starts after the check, which may take seconds.
		if err := m.checkNetem(ctx); err != nil {
			m.release(f)
			return Fault{}, err
		}
		f.StartedAt = time.Now().UTC()
		ends := f.StartedAt.Add(s.Duration)
		f.EndsAt = &ends
	}
	if err := m.apply(ctx, f); err != nil {
		m.release(f)
		return Fault{}, err
	}
	out := m.publish(f)
	m.log.InfoContext(ctx, "fault started", "id", f.ID, "type", f.Type, "target", f.Container, "until", f.EndsAt)
	for _, o := range m.obs {
		o.FaultStarted(out)
	}
	if _, once := fam.(oneShot); once {
		out = m.finish(f, StateCompleted, "done", nil)
	}
	return out, nil
}

// newFault is the record of s on target, complete but for what apply
// fills in (marker, saved limits, a partition's sources).
func newFault(s Spec, fam family, target docker.Container) *Fault {
	now := time.Now().UTC()
	f := &Fault{ID: ids.New(ids.Fault), Type: s.Type, Target: target.Service, Container: target.Name, ContainerID: target.ID,
		State: StateActive, StartedAt: now, Params: fam.params(s), spec: s, fam: fam, image: target.Image, targetIPs: target.IPs}
	if _, once := fam.(oneShot); !once {
		ends := now.Add(s.Duration)
		f.EndsAt = &ends
	}
	return f
}

// find resolves a target and refuses infra services unless allowed.
func (m *Manager) find(ctx context.Context, name string, allowInfra bool) (docker.Container, error) {
	c, err := m.rt.Find(ctx, name)
	if err != nil {
		if errors.Is(err, docker.ErrNotFound) {
			return c, fmt.Errorf("%w: %v", ErrNotFound, err)
		}
		return c, err
	}
	if c.Role == "infra" && !allowInfra {
		return c, fmt.Errorf("%w: %s is labelled dsplab.role=infra; set allowInfra to target it", ErrInfra, c.Service)
	}
	return c, nil
}

// reserve checks the caps and conflicts and takes f's place (not visible
// yet: see publish).
func (m *Manager) reserve(f *Fault) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("the fault manager is shutting down")
	}
	active := len(m.pending)
	for _, g := range m.faults {
		if g.State == StateActive {
			active++
		}
	}
	for _, g := range append(m.values(), valuesOf(m.pending)...) {
		if holds(g) && g.fam.class() == f.fam.class() && overlaps(g, f) {
			return fmt.Errorf("%w: %s", ErrConflict, m.describeHold(g, f))
		}
	}
	if active >= m.lim.MaxConcurrent {
		return fmt.Errorf("%w: %d active faults, the cap is %d", ErrTooMany, active, m.lim.MaxConcurrent)
	}
	m.pending[f.ID] = f
	return nil
}

// describeHold says why g keeps f off its container (m.mu held).
func (m *Manager) describeHold(g, f *Fault) string {
	switch {
	case m.pending[g.ID] != nil:
		return fmt.Sprintf("%s has a %s fault (%s) being applied; try again once it is", f.Container, g.Type, g.ID)
	case g.State == StateReverting && g.Cleanup == "pending":
		return fmt.Sprintf("%s still has the leftover rules of %s fault %s being removed; try again shortly", f.Container, g.Type, g.ID)
	case g.State == StateReverting:
		return fmt.Sprintf("%s fault %s on %s is being reverted (%d attempts, last error: %s); try again once it is reverted", g.Type, g.ID, f.Container, g.RevertAttempts, g.Error)
	case g.EndsAt == nil:
		return fmt.Sprintf("%s already has an active %s fault (%s)", f.Container, g.Type, g.ID)
	}
	return fmt.Sprintf("%s already has an active %s fault (%s) until %s; stop it first", f.Container, g.Type, g.ID, g.EndsAt.Format(time.RFC3339))
}

// values are the faults, in no order (m.mu held).
func (m *Manager) values() []*Fault { return valuesOf(m.faults) }

// valuesOf are the faults of fs, in no order.
func valuesOf(fs map[string]*Fault) []*Fault {
	out := make([]*Fault, 0, len(fs))
	for _, f := range fs {
		out = append(out, f)
	}
	return out
}

// overlaps says whether two faults touch a common container (a partition
// touches both of its sides).
func overlaps(a, b *Fault) bool {
	for _, x := range []string{a.ContainerID, a.PeerID} {
		for _, y := range []string{b.ContainerID, b.PeerID} {
			if x != "" && x == y {
				return true
			}
		}
	}
	return false
}

// apply runs the family's apply on the private f and fills in its command;
// a marker left by a failed apply is removed.
func (m *Manager) apply(ctx context.Context, f *Fault) error {
	if err := f.fam.apply(ctx, m, f); err != nil {
		if f.marker != "" {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), listTimeout)
			defer cancel()
			if rerr := m.rt.Remove(rctx, f.marker); rerr != nil {
				m.log.Error("remove the marker of a fault that was not applied", "id", f.ID, "err", rerr)
			}
		}
		return fmt.Errorf("apply %s to %s: %w", f.Type, f.Container, err)
	}
	f.Command = f.fam.command(m, f)
	return nil
}

// release gives up the place of a fault that was not applied.
func (m *Manager) release(f *Fault) {
	m.mu.Lock()
	delete(m.pending, f.ID)
	m.mu.Unlock()
}

// publish makes the applied f visible and arms its end (and, for a
// network fault, its Pumba watcher). After Close nothing is armed: the
// marker stays, and the next start reconciles it.
func (m *Manager) publish(f *Fault) Fault {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pending, f.ID)
	m.faults[f.ID] = f
	m.order = append(m.order, f.ID)
	m.track(f)
	m.trim()
	return *f
}

// track arms f's end and watches its Pumba job (m.mu held).
func (m *Manager) track(f *Fault) {
	if m.closed || f.State != StateActive {
		return
	}
	if f.EndsAt != nil {
		m.schedule(f, time.Until(*f.EndsAt), "duration elapsed")
	}
	if _, ok := f.fam.(network); ok {
		m.wg.Add(1)
		go m.watchPumba(f)
	}
}

// schedule reverts f after d, in a goroutine tracked by wg (m.mu held).
// A timer that fires after Close does nothing.
func (m *Manager) schedule(f *Fault, d time.Duration, reason string) {
	f.stopTimer()
	f.timer = time.AfterFunc(max(d, 0), func() {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return
		}
		m.wg.Add(1) // under the lock, before Close can Wait
		m.mu.Unlock()
		defer m.wg.Done()
		m.revert(f, reason)
	})
}

// finish records the end of f and tells the observers.
func (m *Manager) finish(f *Fault, state, reason string, err error) Fault {
	m.mu.Lock()
	now := time.Now().UTC()
	f.State, f.EndedAt, f.EndReason, f.NextRevertAt = state, &now, reason, nil
	f.stopTimer()
	f.Error = ""
	if err != nil {
		f.Error = err.Error()
	}
	out := *f
	m.trim()
	m.mu.Unlock()
	for _, o := range m.obs {
		o.FaultEnded(out)
	}
	return out
}

// trim forgets the oldest ended faults beyond maxHistory (m.mu held).
func (m *Manager) trim() {
	for len(m.order) > maxHistory {
		id := m.order[0]
		if f := m.faults[id]; f != nil && holds(f) {
			return
		}
		delete(m.faults, id)
		m.order = m.order[1:]
	}
}

// StopFault reverts a fault now. One whose revert is being retried is
// tried again at once. The record is returned with the error of a revert
// that failed (ErrRevertFailed: the fault stays reverting and is retried).
func (m *Manager) StopFault(ctx context.Context, id string) (Fault, error) {
	m.mu.Lock()
	f, ok := m.faults[id]
	m.mu.Unlock()
	if !ok {
		return Fault{}, fmt.Errorf("%w: fault %s", ErrNotFound, id)
	}
	err := m.revert(f, "stopped")
	m.mu.Lock()
	defer m.mu.Unlock()
	return *f, err
}

// Reset reverts every active fault, and tries again at once those whose
// revert is being retried, while ctx lasts. It returns them.
func (m *Manager) Reset(ctx context.Context) ([]Fault, error) {
	m.mu.Lock()
	var todo []*Fault
	for _, id := range m.order {
		if f := m.faults[id]; holds(f) && f.Cleanup != "pending" {
			todo = append(todo, f)
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, f := range todo {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("reset cut short: %w", err))
			break
		}
		errs = append(errs, m.revert(f, "reset"))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Fault, len(todo))
	for i, f := range todo {
		out[i] = *f
	}
	return out, errors.Join(errs...)
}

// Get returns one fault.
func (m *Manager) Get(id string) (Fault, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.faults[id]
	if !ok {
		return Fault{}, fmt.Errorf("%w: fault %s", ErrNotFound, id)
	}
	return *f, nil
}

// List returns every remembered fault, newest first.
func (m *Manager) List() []Fault {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Fault, 0, len(m.order))
	for i := len(m.order) - 1; i >= 0; i-- {
		out = append(out, *m.faults[m.order[i]])
	}
	return out
}

// Active counts active faults by type and target (for metrics).
func (m *Manager) Active() map[[2]string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[[2]string]int{}
	for _, f := range m.faults {
		if f.State == StateActive {
			out[[2]string{string(f.Type), f.Target}]++
		}
	}
	return out
}

// Close stops the revert timers without reverting: active faults stay
// recorded in their markers, and the next start reconciles them. (A
// graceful shutdown that should revert everything calls Reset first.) It
// cancels the Pumba watchers, revert retries and network cleanups, and
// waits for every goroutine the manager started: a cleanup or revert cut
// short keeps its marker, and the next start tries again.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	for _, f := range m.faults {
		f.stopTimer()
	}
	m.mu.Unlock()
	m.bgStop()
	m.wg.Wait()
}
