package experiments

import (
	"encoding/json"
	"fmt"
	"time"
)

// KeepFinished is how many ended experiments the state directory keeps
// (with their reports); older ones are deleted. The same number as in
// memory (MaxFinished): what a restart brings back is what was listed.
const KeepFinished = MaxFinished

// Store keeps experiment records across restarts (records.Store).
type Store interface {
	// Put writes v under key and returns once it is on disk; final
	// records count against the store's bound.
	Put(key string, final bool, v any) error
	// Each hands out the records read at start, oldest first; one fn
	// refuses is skipped, logged and counted by the store.
	Each(fn func(key string, data []byte) error)
}

// record is what is persisted of an experiment: the experiment itself
// (its report) and what a restarted platform needs to undo it.
type record struct {
	Experiment Experiment `json:"experiment"`
	Undo       undo       `json:"undo"`
}

// undo is what the runner changed outside the platform's own records, as
// far as faults' markers and traffic jobs' labels do not say it. Every
// field is persisted before the change it allows to undo is made.
type undo struct {
	// OverlaySaved says the distributor's overlay was read (Overlay,
	// "" for none) before the first config change was sent;
	// OverlayRestored that the runner put it back itself.
	OverlaySaved    bool   `json:"overlaySaved,omitempty"`
	Overlay         string `json:"overlay,omitempty"`
	OverlayRestored bool   `json:"overlayRestored,omitempty"`
	// FaultsStarting are faults asked of the fault manager whose id is
	// not known yet; TrafficStarting is when the traffic job was asked
	// for, until its id is known.
	FaultsStarting  []starting `json:"faultsStarting,omitempty"`
	TrafficStarting *time.Time `json:"trafficStarting,omitempty"`
	// DeliveryBefore are the analyzers' delivery modes read before the
	// experiment changed them; DeliveryRestored says the runner put them
	// back itself.
	DeliveryBefore   map[string]string `json:"deliveryBefore,omitempty"`
	DeliveryRestored bool              `json:"deliveryRestored,omitempty"`
	// DelayBefore are the analyzers' processing delays (ms) read before
	// the experiment changed them; DelayRestored says the runner put them
	// back itself.
	DelayBefore   map[string]float64 `json:"delayBefore,omitempty"`
	DelayRestored bool               `json:"delayRestored,omitempty"`
	// Judged lists the phases whose checks were decided.
	Judged []Phase `json:"judged,omitempty"`
}

// starting is a fault asked for whose id is not known yet.
type starting struct {
	Type   string    `json:"type"`
	Target string    `json:"target"`
	At     time.Time `json:"at"`
}

// notJudged is the error of a check an interruption left undecided.
const notJudged = "not judged: the experiment was interrupted"

// saveEvery spaces the saves of a running experiment's samples and
// events: a kill loses at most the last second of them (the runner
// flushes at every tick). What allows to undo its changes, its ids and
// its end are saved at once (updateDurable).
const saveEvery = time.Second

// saved is when an experiment was last saved, and whether it changed
// since.
type saved struct {
	at    time.Time
	dirty bool
}

// saveSoon runs after every update: with a store, e is saved unless the
// last save of the running experiment is under saveEvery old (then the
// next update or flush saves it). Only the goroutine running or
// concluding e updates it, so e's saves are in order.
func (m *Manager) saveSoon(e *Experiment) {
	if m.store == nil {
		return
	}
	m.mu.Lock()
	if s := m.saves[e.ID]; e.State == StateRunning && time.Since(s.at) < saveEvery {
		m.saves[e.ID] = saved{at: s.at, dirty: true}
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	m.save(e)
}

// flush saves e if an update was held back.
func (m *Manager) flush(e *Experiment) {
	m.mu.Lock()
	dirty := m.saves[e.ID].dirty
	m.mu.Unlock()
	if dirty {
		m.save(e)
	}
}

// updateDurable applies fn and, with a store, returns once the result is
// on disk (or writing it failed).
func (m *Manager) updateDurable(e *Experiment, fn func(*Experiment)) error {
	m.mu.Lock()
	fn(e)
	m.mu.Unlock()
	return m.save(e)
}

// save writes e (and what undoes it) to the store.
func (m *Manager) save(e *Experiment) error {
	if m.store == nil {
		return nil
	}
	m.mu.Lock()
	c := copyOf(e)
	rec := record{Experiment: c, Undo: c.undo}
	if e.State == StateRunning {
		m.saves[e.ID] = saved{at: time.Now()}
	} else {
		delete(m.saves, e.ID)
	}
	m.mu.Unlock()
	// A running experiment's alerts are collected at its end; until then
	// they are saved with it, so an interrupted report still has them.
	if rec.Experiment.State == StateRunning && m.alerts != nil {
		rec.Experiment.Alerts = m.alerts.Since(rec.Experiment.StartedAt)
	}
	err := m.store.Put(rec.Experiment.ID, rec.Experiment.State != StateRunning, rec)
	if err != nil && !m.saveFailing.Swap(true) {
		m.log.Error("experiment not saved; later saves are retried, this is logged once until one succeeds", "id", rec.Experiment.ID, "err", err)
	} else if err == nil && m.saveFailing.Swap(false) {
		m.log.Info("experiments are saved again", "id", rec.Experiment.ID)
	}
	return err
}

// Restore reads the experiments an earlier run of the platform saved.
// Ended ones are listed again with their reports. One that was running is
// concluded in the background, not resumed: its faults are reverted, the
// distributor's overlay from before it is put back, its traffic job is
// stopped, and it ends interrupted with the report it had (see conclude).
// Call it once before serving, after the fault and traffic managers have
// reconciled what they left (so its fault and job ids are known).
func (m *Manager) Restore() {
	if m.store == nil {
		return
	}
	var running []*Experiment
	m.store.Each(func(key string, data []byte) error {
		var rec record
		if err := json.Unmarshal(data, &rec); err != nil {
			return fmt.Errorf("not an experiment record: %w", err)
		}
		e := new(Experiment)
		*e = rec.Experiment
		if e.ID != key || e.State == "" || e.StartedAt.IsZero() {
			return fmt.Errorf("not an experiment record: id %q, state %q", e.ID, e.State)
		}
		e.undo = rec.Undo
		if e.Timeline == nil {
			e.Timeline = []Event{}
		}
		if e.FaultIDs == nil {
			e.FaultIDs = []string{}
		}
		m.mu.Lock()
		m.exps[e.ID] = e
		// Stop has nothing to cancel, as for an experiment that ended
		// before the restart; a running one is being concluded.
		m.stops[e.ID] = &stopper{cancel: func() {}, hurry: make(chan struct{})}
		if e.State == StateRunning {
			running = append(running, e)
		}
		m.mu.Unlock()
		return nil
	})
	for _, e := range running {
		m.log.Warn("experiment was running when the platform stopped; concluding it as interrupted", "id", e.ID, "name", e.Name)
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.conclude(e)
		}()
	}
}
