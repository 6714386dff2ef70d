package experiments

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/alerts"
	"github.com/dsplab/dsplab/platform-api/internal/faults"
	"github.com/dsplab/dsplab/platform-api/internal/traffic"
)

// concludeTimeout bounds the conclusion of an interrupted experiment.
const concludeTimeout = 3 * time.Minute

// undone is what concluding an interrupted experiment did, step by step
// (said in its reason), and what it could not undo (its CleanupErrors).
type undone struct{ said, failed []string }

// done records a step that worked.
func (u *undone) done(s string) { u.said = append(u.said, s) }

// notDone records a step that failed.
func (u *undone) notDone(s string) {
	u.said = append(u.said, s)
	u.failed = append(u.failed, s)
}

// conclude ends an experiment a stopped platform left running, on a
// detached bounded context: everything it changed is undone, and the
// report it had is kept, marked interrupted.
func (m *Manager) conclude(e *Experiment) {
	ctx, cancel := context.WithTimeout(context.Background(), concludeTimeout)
	defer cancel()
	rec := managed{m, e}
	snap := rec.snapshot()
	r := newRunner(m.deps, rec, snap)
	r.event("interrupted", "the platform stopped while this experiment ran; it is concluded at the restart, not resumed")
	u := r.undoInterrupted(ctx, snap)
	l := r.ledgerNow(ctx)
	var job *traffic.Job
	if id := rec.snapshot().TrafficJobID; id != "" {
		if j, err := r.traffic.Get(id); err == nil {
			job = &j
		}
	}
	exact, note := r.exactLedger(ctx, job)
	checks := judgeLedger(rec.snapshot().LedgerChecks, exact, note)
	now := time.Now().UTC()
	snap = rec.snapshot()
	fws, charts := m.faultWindows(snap, now), m.captureCharts(ctx, snap, now)
	reason := "the platform stopped while it ran"
	if len(u.said) > 0 {
		reason += "; at the restart: " + strings.Join(u.said, ", ")
	}
	rec.update(func(e *Experiment) {
		e.ExactLedger, e.LedgerNote, e.LedgerChecks = exact, note, checks
		e.Ledger, e.State, e.Reason, e.EndedAt = l, Interrupted, reason, &now
		e.Faults, e.Charts = fws, charts
		e.CleanupErrors = append(e.CleanupErrors, u.failed...)
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

// undoInterrupted undoes what an interrupted experiment changed, as its
// record says: faults, the distributor's overlay, delivery modes,
// processing delays, traffic.
func (r *runner) undoInterrupted(ctx context.Context, e Experiment) *undone {
	u := &undone{}
	r.concludeFaults(ctx, e, u)
	if e.undo.OverlaySaved && !e.undo.OverlayRestored && r.dist != nil {
		if err := r.restoreOverlay(ctx, e.undo.Overlay); err != nil {
			r.event("config-failed", "putting the distributor's overlay back: %v", err)
			u.notDone("the distributor's overlay NOT restored: " + err.Error())
		} else {
			r.rec.updateDurable(func(e *Experiment) { e.undo.OverlayRestored = true })
			r.event("config-restored", "the distributor's overlay from before the experiment is back")
			u.done("the distributor's overlay from before restored")
		}
	}
	r.concludeDelivery(ctx, e.undo, u)
	r.concludeTraffic(ctx, e, u)
	if len(u.failed) > 0 {
		r.event("cleanup-failed", "not undone: %s", strings.Join(u.failed, "; "))
	}
	return u
}

// concludeFaults reverts the experiment's faults that are still active:
// those it recorded by id, and those it had asked for without learning
// their id (found among the faults taken over at start-up by type, target
// and start time).
func (r *runner) concludeFaults(ctx context.Context, e Experiment, u *undone) {
	ids := slices.Clone(e.FaultIDs)
	if l, ok := r.faults.(interface{ List() []faults.Fault }); ok && len(e.undo.FaultsStarting) > 0 {
		for _, f := range l.List() {
			for _, s := range e.undo.FaultsStarting {
				if string(f.Type) == s.Type && (f.Target == s.Target || f.Container == s.Target) &&
					!f.StartedAt.Before(s.At.Add(-time.Second)) && !slices.Contains(ids, f.ID) {
					ids = append(ids, f.ID)
					r.rec.updateDurable(func(e *Experiment) { e.FaultIDs = append(e.FaultIDs, f.ID) })
				}
			}
		}
	}
	for _, id := range ids {
		got, err := r.faults.Get(id)
		if err != nil || !holding(got) {
			continue // reverted already, at its end or at start-up
		}
		if _, err := r.faults.StopFault(ctx, id); err != nil {
			r.event("fault-stop-failed", "%s on %s (%s) not reverted: %v", got.Type, got.Target, id, err)
			u.notDone(fmt.Sprintf("fault %s NOT reverted: %v", id, err))
			continue
		}
		r.event("fault-stopped", "%s on %s (%s) reverted after the restart", got.Type, got.Target, id)
		u.done("fault " + id + " reverted")
	}
}

// restoreOverlay puts the overlay back, retrying for a minute: after a
// restart of the whole stack the distributor may come up after the
// platform.
func (r *runner) restoreOverlay(ctx context.Context, overlay string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	wait := time.Second
	for {
		err := r.dist.SetOverlay(ctx, []byte(overlay))
		if err == nil || !sleep(ctx, wait) {
			return err
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// concludeTraffic stops the experiment's traffic job if it still runs
// (recorded by id, or asked for and found among the jobs watched again at
// start-up by target and start time).
func (r *runner) concludeTraffic(ctx context.Context, e Experiment, u *undone) {
	id := e.TrafficJobID
	if l, ok := r.traffic.(interface{ List() []traffic.Job }); ok && id == "" && e.undo.TrafficStarting != nil && e.Definition.Traffic != nil {
		for _, j := range l.List() {
			if j.TargetURL == e.Definition.Traffic.TargetURL && !j.StartedAt.Before(e.undo.TrafficStarting.Add(-time.Second)) {
				id = j.ID
				r.rec.updateDurable(func(e *Experiment) { e.TrafficJobID = j.ID })
				break
			}
		}
	}
	stopped, notStopped := r.stopTraffic(ctx, id, "after the restart")
	for _, s := range notStopped {
		u.notDone(s)
	}
	if stopped {
		u.done("traffic job " + id + " stopped")
	}
}

// ledgerNow reads the ledger once, bounded: over the experiment's start
// until now (the platform's downtime included), nil where Prometheus has
// nothing or does not answer.
func (r *runner) ledgerNow(ctx context.Context) Ledger {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return ledgerOf(r.metricLedger(ctx))
}
