package faults

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/docker"
)

// Errors the API maps to status codes.
var (
	ErrNotFound       = errors.New("not found")
	ErrConflict       = errors.New("conflicting fault")
	ErrInfra          = errors.New("infrastructure service")
	ErrTooMany        = errors.New("too many active faults")
	ErrNotImplemented = errors.New("not implemented")
)

// States of a fault.
const (
	StateActive    = "active"
	StateReverted  = "reverted"
	StateCompleted = "completed" // restart: nothing to revert
	StateFailed    = "failed"
)

// Fault is the record of one fault.
type Fault struct {
	ID          string            `json:"id"`
	Type        string            `json:"type"`
	Target      string            `json:"target"`
	Container   string            `json:"container"`
	ContainerID string            `json:"containerId"`
	Peer        string            `json:"peer,omitempty"`
	PeerID      string            `json:"peerId,omitempty"`
	Params      map[string]string `json:"params,omitempty"`
	State       string            `json:"state"`
	Command     string            `json:"command"`
	StartedAt   time.Time         `json:"startedAt"`
	EndsAt      *time.Time        `json:"endsAt,omitempty"`
	EndedAt     *time.Time        `json:"endedAt,omitempty"`
	EndReason   string            `json:"endReason,omitempty"`
	Error       string            `json:"error,omitempty"`
	// Cleanup is the state of the removal of rules a network fault may
	// have left behind (after a restart, or when Pumba failed): pending,
	// done, or failed with what could not be removed.
	Cleanup string `json:"cleanup,omitempty"`

	spec      Spec
	targetIPs map[string]string
	sources   []string // a partition's dropped sources (CIDRs), for the cleanup
	markerID  string   // the marker, or for a network fault the Pumba job
	revert    docker.Resources
	timer     *time.Timer
}

// Runtime is what the manager needs of Docker.
type Runtime interface {
	Find(ctx context.Context, name string) (docker.Container, error)
	Host() docker.Host
	Pause(ctx context.Context, id string) error
	Unpause(ctx context.Context, id string) error
	Stop(ctx context.Context, id string, timeout time.Duration) error
	Start(ctx context.Context, id string) error
	Kill(ctx context.Context, id, signal string) error
	Restart(ctx context.Context, id string, timeout time.Duration) error
	Resources(ctx context.Context, id string) (docker.Resources, error)
	SetCPUs(ctx context.Context, id string, nanoCPUs int64) error
	SetMemory(ctx context.Context, id string, memory, memorySwap int64) error
	CreateMarker(ctx context.Context, name, image string, labels map[string]string) (string, error)
	Jobs(ctx context.Context, kind string) ([]docker.Container, error)
	Remove(ctx context.Context, id string) error
	// Pumba jobs.
	ProjectNetwork(ctx context.Context, name string) (string, error)
	CreateJob(ctx context.Context, j docker.JobSpec) (string, error)
	Wait(ctx context.Context, id string) (int64, error)
	Logs(ctx context.Context, id string, lines int) (string, error)
	RunInNetns(ctx context.Context, target, image string, cmd []string) (int64, string, error)
	EnsureImages(ctx context.Context, refs ...string) error
}

// Observer hears of fault windows (metrics, Grafana annotations). Calls
// are best effort and must not block for long.
type Observer interface {
	FaultStarted(f Fault)
	FaultEnded(f Fault)
}

// Manager is safe for concurrent use.
type Manager struct {
	rt      Runtime
	lim     Limits
	pumba   Pumba
	obs     []Observer
	log     *slog.Logger
	mu      sync.Mutex
	faults  map[string]*Fault
	order   []string // ids, oldest first, for listing and trimming history
	revertT time.Duration
	// Background cleanups of expired network faults (see Reconcile):
	// cancelled and waited for by Close.
	bg     context.Context
	bgStop context.CancelFunc
	wg     sync.WaitGroup
}

// maxHistory bounds how many ended faults are remembered.
const maxHistory = 500

// markerKind is the dsplab.job.kind of fault markers.
const markerKind = "fault"

// Label keys of a fault marker.
const (
	labelType      = "dsplab.job.type"
	labelTarget    = "dsplab.job.target"
	labelContainer = "dsplab.job.container"
	labelTargetID  = "dsplab.job.target_id"
	labelStarted   = "dsplab.job.started_at"
	labelExpires   = "dsplab.job.expires_at"
	labelSpec      = "dsplab.job.spec"
	labelRevert    = "dsplab.job.revert"
	labelPeer      = "dsplab.job.peer"
	labelPeerID    = "dsplab.job.peer_id"
	labelSources   = "dsplab.job.sources"
)

// New returns a manager. Network faults need pumba.Image.
func New(rt Runtime, lim Limits, pumba Pumba, log *slog.Logger, obs ...Observer) *Manager {
	if pumba.StopGrace < 45*time.Second {
		pumba.StopGrace = 45 * time.Second
	}
	if pumba.CleanupTimeout <= 0 {
		pumba.CleanupTimeout = 30 * time.Second
	}
	bg, stop := context.WithCancel(context.Background())
	return &Manager{rt: rt, lim: lim, pumba: pumba, obs: obs, log: log, faults: map[string]*Fault{}, revertT: pumba.StopGrace + 30*time.Second,
		bg: bg, bgStop: stop}
}

func newID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "f-" + hex.EncodeToString(b)
}

// Start validates, applies and schedules the revert of a fault.
func (m *Manager) Start(ctx context.Context, s Spec) (Fault, error) {
	if err := s.Validate(m.lim, m.rt.Host().NCPU); err != nil {
		return Fault{}, err
	}
	target, err := m.find(ctx, s.Target, s.AllowInfra)
	if err != nil {
		return Fault{}, err
	}
	var peer *docker.Container
	if s.Type == Partition {
		p, err := m.find(ctx, s.Peer, s.AllowInfra)
		if err != nil {
			return Fault{}, err
		}
		peer = &p
	}
	if err := m.ensureImages(ctx, s); err != nil {
		return Fault{}, err
	}
	now := time.Now().UTC()
	f := &Fault{ID: newID(), Type: s.Type, Target: target.Service, Container: target.Name, ContainerID: target.ID,
		State: StateActive, Command: s.Command(target.Name), StartedAt: now, spec: s, Params: params(s), targetIPs: target.IPs}
	if peer != nil {
		f.Peer, f.PeerID = peer.Service, peer.ID
	}
	if s.Type != Restart {
		ends := now.Add(s.Duration)
		f.EndsAt = &ends
	}
	if err := m.reserve(f); err != nil {
		return Fault{}, err
	}
	if err := m.apply(ctx, f, target.Image, peer); err != nil {
		m.mu.Lock()
		delete(m.faults, f.ID)
		m.order = slices.DeleteFunc(m.order, func(id string) bool { return id == f.ID })
		m.mu.Unlock()
		return Fault{}, err
	}
	m.log.InfoContext(ctx, "fault started", "id", f.ID, "type", f.Type, "target", f.Container, "until", f.EndsAt)
	m.mu.Lock()
	out := *f
	m.mu.Unlock()
	for _, o := range m.obs {
		o.FaultStarted(out)
	}
	if s.Type == Restart {
		m.finish(f, StateCompleted, "done", nil)
	}
	return out, nil
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

// reserve checks the caps and conflicts and registers f as active.
func (m *Manager) reserve(f *Fault) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	active := 0
	for _, g := range m.faults {
		// A fault whose leftover rules are being removed still holds its
		// containers: the cleanup would delete a new fault's qdisc.
		if g.State != StateActive && g.Cleanup != "pending" {
			continue
		}
		if g.State == StateActive {
			active++
		}
		if class(g.Type) == class(f.Type) && overlaps(g, f) {
			if g.State != StateActive {
				return fmt.Errorf("%w: %s still has the leftover rules of %s fault %s being removed; try again shortly", ErrConflict, f.Container, g.Type, g.ID)
			}
			return fmt.Errorf("%w: %s already has an active %s fault (%s) until %s; stop it first", ErrConflict, f.Container, g.Type, g.ID, g.EndsAt.Format(time.RFC3339))
		}
	}
	if active >= m.lim.MaxConcurrent {
		return fmt.Errorf("%w: %d active, the cap is %d", ErrTooMany, active, m.lim.MaxConcurrent)
	}
	m.faults[f.ID] = f
	m.order = append(m.order, f.ID)
	return nil
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

// apply records the fault in a marker, then applies it. The marker comes
// first: if the platform dies in between, reconciliation reverts a fault
// that may or may not have been applied, which is harmless.
func (m *Manager) apply(ctx context.Context, f *Fault, image string, peer *docker.Container) error {
	s := f.spec
	if class(s.Type) == "network" {
		// The Pumba job is its own record: its labels are the marker.
		if err := m.applyNetwork(ctx, f, peer); err != nil {
			return fmt.Errorf("apply %s to %s: %w", s.Type, f.Container, err)
		}
		m.arm(f, time.Until(*f.EndsAt))
		return nil
	}
	if s.Type == CPU || s.Type == Memory {
		cur, err := m.rt.Resources(ctx, f.ContainerID)
		if err != nil {
			return err
		}
		f.revert = cur
	}
	if s.Type != Restart {
		id, err := m.rt.CreateMarker(ctx, "dsplab-fault-"+f.ID, image, markerLabels(f))
		if err != nil {
			return err
		}
		f.markerID = id
	}
	var err error
	switch s.Type {
	case Pause:
		err = m.rt.Pause(ctx, f.ContainerID)
	case Stop:
		err = m.rt.Stop(ctx, f.ContainerID, 10*time.Second)
	case Kill:
		err = m.rt.Kill(ctx, f.ContainerID, s.Signal)
	case Restart:
		err = m.rt.Restart(ctx, f.ContainerID, 10*time.Second)
	case CPU:
		err = m.rt.SetCPUs(ctx, f.ContainerID, int64(s.CPUs*1e9))
	case Memory:
		err = m.rt.SetMemory(ctx, f.ContainerID, int64(s.MemoryMB)<<20, int64(s.MemoryMB)<<20)
	}
	if err != nil {
		if f.markerID != "" {
			m.rt.Remove(context.WithoutCancel(ctx), f.markerID)
		}
		return fmt.Errorf("apply %s to %s: %w", s.Type, f.Container, err)
	}
	if f.EndsAt != nil {
		m.arm(f, time.Until(*f.EndsAt))
	}
	return nil
}

func (m *Manager) arm(f *Fault, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f.timer = time.AfterFunc(max(d, 0), func() { m.revert(f, "duration elapsed") })
}

func params(s Spec) map[string]string {
	p := map[string]string{}
	if s.Duration > 0 {
		p["durationSeconds"] = strconv.FormatFloat(s.Duration.Seconds(), 'f', -1, 64)
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	switch s.Type {
	case Kill:
		p["signal"] = s.Signal
	case CPU:
		p["cpus"] = f(s.CPUs)
	case Memory:
		p["memoryMB"] = strconv.Itoa(s.MemoryMB)
	case Delay:
		p["delayMs"], p["jitterMs"], p["correlation"] = strconv.Itoa(s.DelayMs), strconv.Itoa(s.JitterMs), f(s.Correlation)
		if s.Distribution != "" {
			p["distribution"] = s.Distribution
		}
	case Loss, Duplicate, Corrupt:
		p["percent"], p["correlation"] = f(s.Percent), f(s.Correlation)
	case Rate:
		p["rate"] = s.Rate
	case Partition:
		p["peer"] = s.Peer
	}
	return p
}

func markerLabels(f *Fault) map[string]string {
	spec, _ := json.Marshal(f.spec)
	revert, _ := json.Marshal(f.revert)
	return map[string]string{
		docker.LabelJobID: f.ID, docker.LabelJobKind: markerKind,
		labelType: f.Type, labelTarget: f.Target, labelContainer: f.Container, labelTargetID: f.ContainerID,
		labelPeer: f.Peer, labelPeerID: f.PeerID,
		labelStarted: f.StartedAt.Format(time.RFC3339Nano), labelExpires: f.EndsAt.Format(time.RFC3339Nano),
		labelSpec: string(spec), labelRevert: string(revert), labelSources: strings.Join(f.sources, ","),
	}
}

// revert undoes f (idempotently), removes its marker and records the end.
func (m *Manager) revert(f *Fault, reason string) error {
	m.mu.Lock()
	if f.State != StateActive {
		m.mu.Unlock()
		return nil
	}
	if f.timer != nil {
		f.timer.Stop()
	}
	f.State = "reverting"
	m.mu.Unlock()
	// Reverting must finish even if the request that asked for it is gone.
	ctx, cancel := context.WithTimeout(context.Background(), m.revertT)
	defer cancel()
	var err error
	switch f.Type {
	case Pause:
		err = m.rt.Unpause(ctx, f.ContainerID)
	case Stop, Kill:
		err = m.rt.Start(ctx, f.ContainerID)
	case CPU: // each resource fault restores only its own resource
		err = m.rt.SetCPUs(ctx, f.ContainerID, f.revert.NanoCPUs)
	case Memory:
		err = m.rt.SetMemory(ctx, f.ContainerID, f.revert.Memory, f.revert.MemorySwap)
	default: // network
		err = m.revertNetwork(ctx, f)
	}
	if err != nil && errors.Is(err, docker.ErrNotFound) {
		err = nil // the target is gone: nothing left to revert
	}
	if err == nil && f.markerID != "" {
		err = m.rt.Remove(ctx, f.markerID)
	}
	state := StateReverted
	if err != nil {
		state = StateFailed
		m.log.Error("revert fault", "id", f.ID, "type", f.Type, "target", f.Container, "err", err)
	} else {
		m.log.Info("fault reverted", "id", f.ID, "type", f.Type, "target", f.Container, "reason", reason)
	}
	m.finish(f, state, reason, err)
	return err
}

func (m *Manager) finish(f *Fault, state, reason string, err error) {
	m.mu.Lock()
	now := time.Now().UTC()
	f.State, f.EndedAt, f.EndReason = state, &now, reason
	if err != nil {
		f.Error = err.Error()
	}
	out := *f
	m.trim()
	m.mu.Unlock()
	for _, o := range m.obs {
		o.FaultEnded(out)
	}
}

// trim forgets the oldest ended faults beyond maxHistory (m.mu held).
func (m *Manager) trim() {
	for len(m.order) > maxHistory {
		id := m.order[0]
		if f := m.faults[id]; f != nil && f.State == StateActive {
			return
		}
		delete(m.faults, id)
		m.order = m.order[1:]
	}
}

// StopFault reverts an active fault now.
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

// Reset reverts every active fault and returns them.
func (m *Manager) Reset(ctx context.Context) ([]Fault, error) {
	m.mu.Lock()
	var active []*Fault
	for _, id := range m.order {
		if f := m.faults[id]; f.State == StateActive {
			active = append(active, f)
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, f := range active {
		errs = append(errs, m.revert(f, "reset"))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Fault, len(active))
	for i, f := range active {
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
			out[[2]string{f.Type, f.Target}]++
		}
	}
	return out
}

// Reconcile runs at start-up: every fault marker left by an earlier run
// is reverted if its time is up, or taken over and re-armed if not. It is
// bounded by listTimeout for the listing and revertT per container fault.
// An expired network fault is handed to a background cleanup (Pumba
// stopped, its leftover rules removed by sidecars, with retries) and
// shows cleanup "pending" meanwhile: a sidecar that hangs must not keep
// the platform from serving. Close cancels and waits for it.
func (m *Manager) Reconcile(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	markers, err := m.rt.Jobs(lctx, markerKind)
	if err != nil {
		return err
	}
	pumbas, err := m.rt.Jobs(lctx, netemKind)
	if err != nil {
		return err
	}
	markers = append(markers, pumbas...)
	sort.Slice(markers, func(i, j int) bool { return markers[i].Labels[labelStarted] < markers[j].Labels[labelStarted] })
	var errs []error
	for _, mk := range markers {
		f, err := fromMarker(mk)
		if err != nil {
			m.log.Warn("unreadable fault marker; removing it", "marker", mk.Name, "err", err)
			rctx, cancel := context.WithTimeout(ctx, listTimeout)
			errs = append(errs, m.rt.Remove(rctx, mk.ID))
			cancel()
			continue
		}
		network := class(f.Type) == "network"
		m.mu.Lock()
		_, known := m.faults[f.ID]
		if !known {
			m.faults[f.ID] = f
			m.order = append(m.order, f.ID)
		}
		m.mu.Unlock()
		if known {
			continue
		}
		if left := time.Until(*f.EndsAt); left > 0 && (!network || mk.State == "running") {
			m.log.Info("fault taken over after restart", "id", f.ID, "type", f.Type, "target", f.Container, "left", left.Round(time.Second))
			if network {
				go m.watchPumba(f)
			}
			m.arm(f, left)
			continue
		}
		m.log.Info("expired fault found after restart; reverting", "id", f.ID, "type", f.Type, "target", f.Container)
		if network {
			m.mu.Lock()
			f.State, f.Cleanup = "reverting", "pending"
			m.mu.Unlock()
			m.wg.Add(1)
			go m.reconcileNetwork(f)
			continue
		}
		errs = append(errs, m.revert(f, "expired while the platform was down"))
	}
	return errors.Join(errs...)
}

// listTimeout bounds the Docker listings of Reconcile.
const listTimeout = 10 * time.Second

func fromMarker(mk docker.Container) (*Fault, error) {
	l := mk.Labels
	var s Spec
	if err := json.Unmarshal([]byte(l[labelSpec]), &s); err != nil {
		return nil, fmt.Errorf("spec label: %w", err)
	}
	f := &Fault{ID: l[docker.LabelJobID], Type: l[labelType], Target: l[labelTarget], Container: l[labelContainer],
		ContainerID: l[labelTargetID], Peer: l[labelPeer], PeerID: l[labelPeerID], State: StateActive, markerID: mk.ID, spec: s}
	if l[labelSources] != "" {
		f.sources = strings.Split(l[labelSources], ",")
	}
	if err := json.Unmarshal([]byte(l[labelRevert]), &f.revert); err != nil {
		return nil, fmt.Errorf("revert label: %w", err)
	}
	started, err1 := time.Parse(time.RFC3339Nano, l[labelStarted])
	ends, err2 := time.Parse(time.RFC3339Nano, l[labelExpires])
	if err := errors.Join(err1, err2); err != nil || f.ID == "" || f.ContainerID == "" {
		return nil, fmt.Errorf("incomplete labels: %v", err)
	}
	f.StartedAt, f.EndsAt = started, &ends
	f.Command, f.Params = f.spec.Command(f.Container), params(f.spec)
	if class(f.Type) == "network" {
		f.Command = "pumba (job container " + mk.Name + ")"
	}
	return f, nil
}

// Close stops the revert timers without reverting: active faults stay
// recorded in their markers, and the next start reconciles them. (A
// graceful shutdown that should revert everything calls Reset first.)
func (m *Manager) Close() {
	m.mu.Lock()
	for _, f := range m.faults {
		if f.timer != nil {
			f.timer.Stop()
		}
	}
	m.mu.Unlock()
	// A cleanup cut short keeps its marker: the next start retries it.
	m.bgStop()
	m.wg.Wait()
}
