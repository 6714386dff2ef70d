package experiments

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
	"github.com/dsplab/dsplab/platform-api/internal/ids"
)

// Manager runs experiments, one at a time, and remembers the last
// MaxFinished that ended. It is safe for concurrent use.
//
// One at a time: an experiment's verdict is judged on the whole stack's
// metrics, its ledger counts every packet, and its config changes replace
// the distributor's one overlay and put back the one from before at the
// end. Two at once would judge each other's faults, count each other's
// traffic, and restore each other's overlays out of order (the second to
// end putting back the first one's overlay for good).
type Manager struct {
	deps      // handed to each run
	presets   map[string]Definition
	maxFault  float64
	log       *slog.Logger
	onVerdict func(verdict State)
	// store keeps every experiment across restarts (nil: memory only);
	// saveFailing says the last save failed (logged once).
	store       Store
	saveFailing atomic.Bool
	saves       map[string]saved // by experiment id (m.mu)

	mu    sync.Mutex
	exps  map[string]*Experiment
	stops map[string]*stopper
	wg    sync.WaitGroup
}

// stopper ends a running experiment. The first Stop cancels its run: the
// cleanup and the end (the last counts, the exact ledger) still happen.
// The second closes hurry: the end stops waiting for the last counts and
// the analyzers' backlog and reports what it has.
type stopper struct {
	cancel context.CancelFunc
	hurry  chan struct{}
	asked  int
}

// Options are the manager's collaborators.
type Options struct {
	Querier Querier
	Faults  FaultStarter
	Traffic TrafficRunner
	Alerts  AlertSource
	Presets map[string]Definition
	// Distributor takes configuration overlays (config changes).
	Distributor DistributorConfig
	// MaxFaultSeconds bounds fault durations (the fault manager's cap).
	MaxFaultSeconds float64
	Logger          *slog.Logger
	// OnVerdict is called when an experiment ends (metrics).
	OnVerdict func(verdict State)
	// Store keeps experiments across restarts (optional; see Restore).
	Store Store
	// Ledger reads the exact delivery ledger at the end (optional: without
	// it an experiment has only the metric ledger, and ledger expectations
	// are not judged, so they fail).
	Ledger LedgerChecker
	// Delivery sets analyzers' delivery modes (the definition's delivery).
	Delivery DeliverySwitch
}

// NewManager returns a manager.
func NewManager(o Options) *Manager {
	d := deps{q: o.Querier, faults: o.Faults, traffic: o.Traffic, alerts: o.Alerts, dist: o.Distributor, ledger: o.Ledger, delivery: o.Delivery}
	return &Manager{deps: d, presets: o.Presets, maxFault: o.MaxFaultSeconds, log: o.Logger, onVerdict: o.OnVerdict,
		store: o.Store, saves: map[string]saved{}, exps: map[string]*Experiment{}, stops: map[string]*stopper{}}
}

// Presets returns the shipped experiments, sorted by name.
func (m *Manager) Presets() []Definition {
	out := make([]Definition, 0, len(m.presets))
	for _, d := range m.presets {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Preset returns one shipped experiment.
func (m *Manager) Preset(name string) (Definition, error) {
	d, ok := m.presets[name]
	if !ok {
		return Definition{}, fmt.Errorf("%w: no preset %q (GET /api/experiments/presets lists them)", apierr.ErrNotFound, name)
	}
	return d, nil
}

// MaxFinished is how many ended experiments are remembered (with their
// reports); older ones are forgotten.
const MaxFinished = 100

// Start validates d and runs it in the background, under the platform's
// own context: it outlives the request that started it. While another
// experiment runs it is refused (apierr.ErrTooMany).
func (m *Manager) Start(d Definition) (Experiment, error) {
	if err := d.Validate(m.maxFault); err != nil {
		return Experiment{}, err
	}
	e := &Experiment{ID: ids.New(ids.Experiment), Name: d.Name, State: StateRunning, StartedAt: time.Now().UTC(), Definition: d,
		Timeline: []Event{}, FaultIDs: []string{}, Alerts: nil}
	for _, c := range d.Checks {
		e.Checks = append(e.Checks, CheckResult{Check: c, Samples: []Sample{}})
	}
	e.LedgerChecks = d.Ledger.parse(&apierr.Problems{}) // valid: Validate said so
	r := newRunner(m.deps, managed{m, e}, *e)
	ctx, cancel := context.WithCancel(context.Background())
	stop := &stopper{cancel: cancel, hurry: make(chan struct{})}
	r.hurry = stop.hurry
	m.mu.Lock()
	for _, x := range m.exps {
		if x.State == StateRunning {
			m.mu.Unlock()
			cancel()
			return Experiment{}, fmt.Errorf("%w: experiment %s (%s) is running, and experiments run one at a time (their faults, traffic and config overlays would interfere); stop it or wait for its verdict",
				apierr.ErrTooMany, x.ID, x.Name)
		}
	}
	m.exps[e.ID], m.stops[e.ID] = e, stop
	m.trim()
	out := *e
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel()
		m.finished(r.run(ctx))
	}()
	m.log.Info("experiment started", "id", e.ID, "name", d.Name)
	return out, nil
}

// Stop aborts a running experiment: its faults are reverted, its traffic
// stopped, and the verdict is aborted. The end still waits for the last
// counts and the exact ledger (up to settle and the ledger's timeout); a
// second Stop ends that wait, and the report has what was read by then.
func (m *Manager) Stop(id string) (Experiment, error) {
	m.mu.Lock()
	st, ok := m.stops[id]
	if ok {
		st.asked++
	}
	m.mu.Unlock()
	if !ok {
		return Experiment{}, fmt.Errorf("%w: experiment %s", apierr.ErrNotFound, id)
	}
	switch st.asked {
	case 1:
		st.cancel()
	case 2:
		close(st.hurry)
		m.log.Info("experiment stopped again: its end no longer waits", "id", id)
	}
	return m.Get(id)
}

// Get returns a copy of one experiment.
func (m *Manager) Get(id string) (Experiment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.exps[id]
	if !ok {
		return Experiment{}, fmt.Errorf("%w: experiment %s", apierr.ErrNotFound, id)
	}
	return copyOf(e), nil
}

// List returns every experiment, newest first.
func (m *Manager) List() []Experiment {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Experiment, 0, len(m.exps))
	for _, e := range m.exps {
		out = append(out, copyOf(e))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt.After(out[j].StartedAt) })
	return out
}

// copyOf copies an experiment deep enough that readers never share slices
// the runner appends to (m.mu held).
func copyOf(e *Experiment) Experiment {
	c := *e
	c.Timeline = append([]Event(nil), e.Timeline...)
	c.FaultIDs = append([]string(nil), e.FaultIDs...)
	c.LedgerChecks = slices.Clone(e.LedgerChecks)
	c.CleanupErrors = slices.Clone(e.CleanupErrors)
	c.undo.FaultsStarting = slices.Clone(e.undo.FaultsStarting)
	c.undo.Judged = slices.Clone(e.undo.Judged)
	c.undo.DeliveryBefore = maps.Clone(e.undo.DeliveryBefore)
	c.undo.DelayBefore = maps.Clone(e.undo.DelayBefore)
	c.Checks = make([]CheckResult, len(e.Checks))
	for i, cr := range e.Checks {
		cr.Samples = append([]Sample(nil), cr.Samples...)
		c.Checks[i] = cr
	}
	return c
}

// update applies fn to e under the lock, and saves e soon.
func (m *Manager) update(e *Experiment, fn func(*Experiment)) {
	defer m.saveSoon(e) // after the unlock (persist.go)
	m.mu.Lock()
	defer m.mu.Unlock()
	fn(e)
}

// trim forgets the oldest ended experiments beyond MaxFinished (m.mu
// held).
func (m *Manager) trim() {
	var ended []*Experiment
	for _, e := range m.exps {
		if e.State != StateRunning {
			ended = append(ended, e)
		}
	}
	if len(ended) <= MaxFinished {
		return
	}
	sort.Slice(ended, func(i, j int) bool { return ended[i].StartedAt.Before(ended[j].StartedAt) })
	for _, e := range ended[:len(ended)-MaxFinished] {
		delete(m.exps, e.ID)
		delete(m.stops, e.ID)
	}
}

// finished counts an experiment that ended with verdict, and forgets
// the oldest beyond MaxFinished.
func (m *Manager) finished(verdict State) {
	m.mu.Lock()
	m.trim()
	m.mu.Unlock()
	if m.onVerdict != nil {
		m.onVerdict(verdict)
	}
}

// managed is one experiment's record kept by the manager: the recorder
// its runner reports to.
type managed struct {
	m *Manager
	e *Experiment
}

// update changes the record under the manager's lock; it is saved soon.
func (r managed) update(fn func(*Experiment)) { r.m.update(r.e, fn) }

// updateDurable changes the record and returns once it is saved.
func (r managed) updateDurable(fn func(*Experiment)) error { return r.m.updateDurable(r.e, fn) }

// flush saves an update held back.
func (r managed) flush() { r.m.flush(r.e) }

// snapshot is a copy of the record.
func (r managed) snapshot() Experiment {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	return copyOf(r.e)
}

// Wait waits for running experiments (tests, shutdown).
func (m *Manager) Wait() { m.wg.Wait() }
