package experiments

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/alerts"
	"github.com/dsplab/dsplab/platform-api/internal/faults"
	"github.com/dsplab/dsplab/platform-api/internal/traffic"
)

// Interrupted is the state of an experiment that was running when the
// platform stopped without aborting it (kill -9, a crash, a stop with no
// time left): the next start concludes it (see Manager.Restore).
const Interrupted = "interrupted"

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
	// Judged lists the phases whose checks were decided.
	Judged []string `json:"judged,omitempty"`
}

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
	rec := record{Experiment: copyOf(e), Undo: e.undo}
	rec.Undo.FaultsStarting = slices.Clone(e.undo.FaultsStarting)
	rec.Undo.Judged = slices.Clone(e.undo.Judged)
	rec.Undo.DeliveryBefore = maps.Clone(e.undo.DeliveryBefore)
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
		m.cancels[e.ID] = func() {}
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

// conclude ends an experiment a stopped platform left running, on a
// detached bounded context: everything it changed is undone, and the
// report it had is kept, marked interrupted.
func (m *Manager) conclude(e *Experiment) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := &runner{m: m, e: e, def: e.Definition, start: e.StartedAt}
	r.event("interrupted", "the platform stopped while this experiment ran; it is concluded at the restart, not resumed")
	m.mu.Lock()
	snap, u := copyOf(e), e.undo
	m.mu.Unlock()
	var done []string
	done = append(done, r.concludeFaults(ctx, snap, u)...)
	if u.OverlaySaved && !u.OverlayRestored && m.dist != nil {
		if err := r.restoreOverlay(ctx, u.Overlay); err != nil {
			r.event("config-failed", "putting the distributor's overlay back: %v", err)
			done = append(done, "the distributor's overlay NOT restored: "+err.Error())
		} else {
			m.updateDurable(e, func(e *Experiment) { e.undo.OverlayRestored = true })
			r.event("config-restored", "the distributor's overlay from before the experiment is back")
			done = append(done, "the distributor's overlay from before restored")
		}
	}
	done = append(done, r.concludeDelivery(ctx, u)...)
	done = append(done, r.concludeTraffic(ctx, snap, u)...)
	l := r.ledgerNow(ctx)
	var job *traffic.Job
	if id := r.snapshot().TrafficJobID; id != "" {
		if j, err := r.m.traffic.Get(id); err == nil {
			job = &j
		}
	}
	exact, note := r.exactLedger(ctx, job)
	checks := judgeLedger(r.snapshot().LedgerChecks, exact, note)
	now := time.Now().UTC()
	fws, charts := m.faultWindows(r.snapshot(), now), m.captureCharts(ctx, r.snapshot(), now)
	reason := "the platform stopped while it ran"
	if len(done) > 0 {
		reason += "; at the restart: " + strings.Join(done, ", ")
	}
	m.update(e, func(e *Experiment) {
		e.ExactLedger, e.LedgerNote, e.LedgerChecks = exact, note, checks
		e.Ledger, e.State, e.Reason, e.EndedAt = l, Interrupted, reason, &now
		e.Faults, e.Charts = fws, charts
		if e.Alerts == nil {
			e.Alerts = []alerts.Alert{}
		}
		for i := range e.Checks {
			if c := &e.Checks[i]; !slices.Contains(e.undo.Judged, c.Phase) {
				c.Passed, c.Error = false, notJudged
			}
		}
	})
	r.event("verdict", "%s %s", Interrupted, reason)
	m.log.Info("interrupted experiment concluded", "id", e.ID, "reason", reason)
	m.finished(Interrupted)
}

// concludeFaults reverts the experiment's faults that are still active:
// those it recorded by id, and those it had asked for without learning
// their id (found among the faults taken over at start-up by type, target
// and start time).
func (r *runner) concludeFaults(ctx context.Context, e Experiment, u undo) []string {
	ids := slices.Clone(e.FaultIDs)
	if l, ok := r.m.faults.(interface{ List() []faults.Fault }); ok && len(u.FaultsStarting) > 0 {
		for _, f := range l.List() {
			for _, s := range u.FaultsStarting {
				if string(f.Type) == s.Type && (f.Target == s.Target || f.Container == s.Target) &&
					!f.StartedAt.Before(s.At.Add(-time.Second)) && !slices.Contains(ids, f.ID) {
					ids = append(ids, f.ID)
					r.m.updateDurable(r.e, func(e *Experiment) { e.FaultIDs = append(e.FaultIDs, f.ID) })
				}
			}
		}
	}
	var done []string
	for _, id := range ids {
		got, err := r.m.faults.Get(id)
		if err != nil || (got.State != faults.StateActive && got.State != "reverting") {
			continue // reverted already, at its end or at start-up
		}
		if _, err := r.m.faults.StopFault(ctx, id); err != nil {
			r.event("fault-stop-failed", "%s on %s (%s) not reverted: %v", got.Type, got.Target, id, err)
			done = append(done, fmt.Sprintf("fault %s NOT reverted: %v", id, err))
			continue
		}
		r.event("fault-stopped", "%s on %s (%s) reverted after the restart", got.Type, got.Target, id)
		done = append(done, "fault "+id+" reverted")
	}
	return done
}

// restoreOverlay puts the overlay back, retrying for a minute: after a
// restart of the whole stack the distributor may come up after the
// platform.
func (r *runner) restoreOverlay(ctx context.Context, overlay string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	wait := time.Second
	for {
		err := r.m.dist.SetOverlay(ctx, []byte(overlay))
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// concludeTraffic stops the experiment's traffic job if it still runs
// (recorded by id, or asked for and found among the jobs watched again at
// start-up by target and start time).
func (r *runner) concludeTraffic(ctx context.Context, e Experiment, u undo) []string {
	id := e.TrafficJobID
	if l, ok := r.m.traffic.(interface{ List() []traffic.Job }); ok && id == "" && u.TrafficStarting != nil && e.Definition.Traffic != nil {
		for _, j := range l.List() {
			if j.TargetURL == e.Definition.Traffic.TargetURL && !j.StartedAt.Before(u.TrafficStarting.Add(-time.Second)) {
				id = j.ID
				r.m.updateDurable(r.e, func(e *Experiment) { e.TrafficJobID = j.ID })
				break
			}
		}
	}
	if id == "" {
		return nil
	}
	if j, err := r.m.traffic.Get(id); err != nil || j.State != traffic.StateRunning {
		return nil
	}
	if _, err := r.m.traffic.Stop(ctx, id); err != nil {
		r.event("traffic-stop-failed", "traffic job %s not stopped: %v", id, err)
		return []string{"traffic job " + id + " NOT stopped: " + err.Error()}
	}
	r.event("traffic-stopped", "traffic job %s stopped after the restart", id)
	return []string{"traffic job " + id + " stopped"}
}

// ledgerNow reads the ledger once, bounded: over the experiment's start
// until now (the platform's downtime included), nil where Prometheus has
// nothing or does not answer.
func (r *runner) ledgerNow(ctx context.Context) Ledger {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	end := r.ledger(ctx)
	l := Ledger{Accepted: end["accepted"], Processed: end["processed"], Duplicates: end["duplicates"]}
	if l.Accepted != nil && l.Processed != nil {
		lost := max(0, *l.Accepted-*l.Processed)
		l.Lost = &lost
	}
	return l
}
