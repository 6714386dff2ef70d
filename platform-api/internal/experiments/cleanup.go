package experiments

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/faults"
	"github.com/dsplab/dsplab/platform-api/internal/traffic"
)

// cleanupTimeout bounds the cleanup at the end of a run.
const cleanupTimeout = 2 * time.Minute

// cleanup undoes what the experiment changed, whatever the verdict: it
// reverts its faults still in effect, puts the distributor's overlay and
// the analyzers' delivery modes back, and stops its traffic job (an
// aborted experiment leaves nothing behind). It returns what it could not
// undo, and records it in the timeline (cleanup-failed) and the record's
// CleanupErrors; the fault manager keeps retrying a revert the engine
// refused.
func (r *runner) cleanup(ctx context.Context) []string {
	ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	notUndone := r.stopFaults(ctx)
	notUndone = append(notUndone, r.putOverlayBack(ctx)...)
	snap := r.rec.snapshot()
	notUndone = append(notUndone, r.restoreDelivery(ctx, snap.undo)...)
	_, notStopped := r.stopTraffic(ctx, snap.TrafficJobID, "at the end of the experiment")
	notUndone = append(notUndone, notStopped...)
	if len(notUndone) > 0 {
		r.rec.update(func(e *Experiment) { e.CleanupErrors = append(e.CleanupErrors, notUndone...) })
		r.event("cleanup-failed", "not undone: %s", strings.Join(notUndone, "; "))
	}
	return notUndone
}

// stopFaults reverts the experiment's faults still in effect, and says
// which it could not revert.
func (r *runner) stopFaults(ctx context.Context) []string {
	var notReverted []string
	for _, f := range r.plan {
		if f.id == "" {
			continue
		}
		if got, err := r.faults.Get(f.id); err != nil || !holding(got) {
			continue
		}
		// Say what happened: a revert the engine refused is not reverted
		// (the fault manager keeps retrying it).
		switch got, err := r.faults.StopFault(ctx, f.id); {
		case err != nil:
			r.event("fault-stop-failed", "%s on %s (%s) not reverted: %v", f.Type, f.Target, f.id, err)
			notReverted = append(notReverted, fmt.Sprintf("fault %s on %s (%s) NOT reverted: %v", f.Type, f.Target, f.id, err))
		case holding(got):
			r.event("fault-stop-failed", "%s on %s (%s) still %s after the stop", f.Type, f.Target, f.id, got.State)
			notReverted = append(notReverted, fmt.Sprintf("fault %s on %s (%s) NOT reverted: still %s", f.Type, f.Target, f.id, got.State))
		case got.State == faults.StateReverted:
			r.event("fault-stopped", "%s on %s reverted by the experiment", f.Type, f.Target)
		default:
			r.event("fault-stopped", "%s on %s stopped by the experiment: %s", f.Type, f.Target, got.State)
		}
	}
	return notReverted
}

// putOverlayBack puts back the distributor's overlay from before the
// first config change, if one was made.
func (r *runner) putOverlayBack(ctx context.Context) []string {
	if r.applied == 0 {
		return nil
	}
	if err := r.dist.SetOverlay(ctx, []byte(r.savedOverlay)); err != nil {
		r.event("config-failed", "putting the distributor's overlay back: %v", err)
		return []string{"the distributor's overlay NOT restored: " + err.Error()}
	}
	r.rec.updateDurable(func(e *Experiment) { e.undo.OverlayRestored = true })
	r.event("config-restored", "the distributor's overlay from before the experiment is back")
	return nil
}

// stopTraffic stops the traffic job id if it still runs; when says when
// (in the timeline). It says whether it stopped it, and what it could
// not stop.
func (r *runner) stopTraffic(ctx context.Context, id, when string) (stopped bool, notStopped []string) {
	if id == "" {
		return false, nil
	}
	if j, err := r.traffic.Get(id); err != nil || j.State != traffic.StateRunning {
		return false, nil
	}
	if _, err := r.traffic.Stop(ctx, id); err != nil {
		r.event("traffic-stop-failed", "traffic job %s not stopped: %v", id, err)
		return false, []string{"traffic job " + id + " NOT stopped: " + err.Error()}
	}
	r.event("traffic-stopped", "traffic job %s stopped %s", id, when)
	return true, nil
}
