package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/faults"
)

// faultPhase starts the faults on schedule, makes the config changes, and
// evaluates the during checks and the detection signal until every fault
// has ended. Without faults, "during" is the traffic job's run: a
// baseline or a burst is judged under its load, not skipped.
func (r *runner) faultPhase(ctx context.Context) outcome {
	interval := seconds(r.def.IntervalSeconds)
	if r.zero.IsZero() {
		r.zero = time.Now() // no traffic: the offsets count from here
	}
	lastEval := time.Time{}
	if len(r.plan) == 0 {
		lastEval = time.Now() // first sample one interval into the traffic: rates need samples
	}
	tick := time.NewTicker(min(interval, time.Second))
	defer tick.Stop()
	for {
		now := time.Now()
		if o := r.startDue(ctx, now); o.decided() {
			return o
		}
		if o := r.applyConfigChanges(ctx, now); o.decided() {
			return o
		}
		active, pending := r.activeFaults()
		loaded := len(r.plan) == 0 && r.trafficRunning()
		if (active > 0 || loaded) && now.Sub(lastEval) >= interval {
			lastEval = now
			if o := r.evaluateDuring(ctx); o.decided() {
				return o
			}
		}
		if !r.firstFault.IsZero() {
			r.detect(ctx)
		}
		if active == 0 && pending == 0 && !loaded && r.applied == len(r.configs) {
			r.judge(PhaseDuring)
			if !r.firstFault.IsZero() {
				r.event("faults-ended", "every fault has been reverted")
			}
			return proceed
		}
		r.rec.flush()
		select {
		case <-ctx.Done():
			return abort("stopped by request")
		case <-tick.C:
		}
	}
}

// evaluateDuring evaluates the during checks once; a failing always check
// with abort ends the run.
func (r *runner) evaluateDuring(ctx context.Context) outcome {
	for _, i := range r.checksIn(PhaseDuring) {
		c := r.def.Checks[i]
		if !r.evaluate(ctx, i) && c.Mode == ModeAlways && c.Abort {
			return abort("during check failed: " + c.Name)
		}
	}
	return proceed
}

// startDue starts the faults whose time has come. Each is recorded as
// starting (on disk) before it is asked for, so a platform killed in
// between still finds it.
func (r *runner) startDue(ctx context.Context, now time.Time) outcome {
	for i := range r.plan {
		f := &r.plan[i]
		if f.started || now.Sub(r.zero) < seconds(f.AtSeconds) {
			continue
		}
		f.started = true
		r.rec.updateDurable(func(e *Experiment) {
			e.undo.FaultsStarting = append(e.undo.FaultsStarting, starting{Type: f.Type, Target: f.Target, At: now.UTC()})
		})
		got, err := r.startFault(ctx, f.Spec())
		if err != nil {
			r.rec.update(func(e *Experiment) { e.undo.FaultsStarting = nil })
			r.event("fault-failed", "%s on %s: %v", f.Type, f.Target, err)
			return fail("fault %s on %s did not start: %v", f.Type, f.Target, err)
		}
		f.id = got.ID
		if r.firstFault.IsZero() {
			r.firstFault = now
		}
		r.rec.updateDurable(func(e *Experiment) { e.FaultIDs, e.undo.FaultsStarting = append(e.FaultIDs, got.ID), nil })
		r.event("fault-started", "%s on %s for %gs: %s (%s)", f.Type, got.Target, f.DurationSeconds, got.Command, got.ID)
	}
	return proceed
}

// conflictWait bounds how long a scheduled fault waits for its target to
// be free: the revert of the experiment's previous fault on the same
// container (a docker start on a busy engine takes seconds) holds it.
const conflictWait = 15 * time.Second

// startFault starts a scheduled fault, retrying while the fault manager
// answers a conflict, for at most conflictWait: the schedule says "not
// before", and the timeline shows when it really started.
func (r *runner) startFault(ctx context.Context, spec faults.Spec) (faults.Fault, error) {
	deadline := time.Now().Add(conflictWait)
	for {
		got, err := r.faults.Start(ctx, spec)
		if err == nil || !errors.Is(err, faults.ErrConflict) || !time.Now().Before(deadline) || !sleep(ctx, 250*time.Millisecond) {
			return got, err
		}
	}
}

// applyConfigChanges sets the config overlays whose time has come. The
// overlay in force before the first is saved (on disk) before it is
// replaced, so a platform killed after it still knows what to put back.
func (r *runner) applyConfigChanges(ctx context.Context, now time.Time) outcome {
	for r.applied < len(r.configs) && now.Sub(r.zero) >= seconds(r.configs[r.applied].AtSeconds) {
		c := r.configs[r.applied]
		if r.dist == nil {
			return fail("config change: the platform has no distributor to configure")
		}
		if r.applied == 0 {
			if o := r.saveOverlay(ctx); o.decided() {
				return o
			}
		}
		var body []byte
		if !c.Clear {
			body, _ = json.Marshal(c.Overlay)
		}
		r.applied++
		if err := r.dist.SetOverlay(ctx, body); err != nil {
			r.event("config-failed", "%v", err)
			return fail("config change refused: %v", err)
		}
		if c.Clear {
			r.event("config-changed", "distributor overlay cleared: back to its file and environment")
		} else {
			r.event("config-changed", "distributor hot-reloaded with %s", body)
		}
	}
	return proceed
}

// saveOverlay reads the distributor's overlay before the first config
// change and saves it with the record.
func (r *runner) saveOverlay(ctx context.Context) outcome {
	prev, err := r.dist.Overlay(ctx)
	if err != nil {
		r.event("config-failed", "reading the distributor's overlay: %v", err)
		return fail("config change: %v", err)
	}
	r.savedOverlay = prev
	if err := r.rec.updateDurable(func(e *Experiment) { e.undo.OverlaySaved, e.undo.Overlay = true, prev }); err != nil {
		r.event("config-failed", "saving the distributor's overlay before changing it: %v", err)
		return fail("config change not made: the overlay to put back could not be saved: %v", err)
	}
	return proceed
}

// activeFaults counts started faults still active and faults not started.
func (r *runner) activeFaults() (active, pending int) {
	for _, f := range r.plan {
		if !f.started {
			pending++
			continue
		}
		if f.id == "" {
			continue
		}
		if got, err := r.faults.Get(f.id); err == nil && holding(got) {
			active++
		}
	}
	return active, pending
}

// holding says whether a fault is still in effect: active, or its revert
// under way or being retried.
func holding(f faults.Fault) bool {
	return f.State == faults.StateActive || f.State == faults.StateReverting
}

// detect records time to detect: the first alert received, or the first
// time the detect query returned something, after the first fault.
func (r *runner) detect(ctx context.Context) {
	if r.detected {
		return
	}
	var at time.Time
	by := ""
	// Only an alert that fires because of this run counts: one that began
	// before the first fault (left over from an earlier run, or a resolve
	// notification) says nothing about detecting it; with DetectAlerts,
	// only the alerts it names count (Prometheus's StartsAt is when an
	// alert began firing, so one pending since an earlier run passes the
	// first test).
	for _, a := range r.alerts.Since(r.firstFault) {
		named := len(r.def.DetectAlerts) == 0 || slices.Contains(r.def.DetectAlerts, a.Labels["alertname"])
		if named && a.Status == "firing" && (a.StartsAt.IsZero() || !a.StartsAt.Before(r.firstFault)) {
			at, by = a.ReceivedAt, "alert "+a.Labels["alertname"]
			break
		}
	}
	if _, present, err := r.q.Query(ctx, r.expand(r.def.DetectQuery)); err == nil && present && (at.IsZero() || time.Now().Before(at)) {
		at, by = time.Now(), "query "+r.def.DetectQuery
	}
	if at.IsZero() {
		return
	}
	ttd := at.Sub(r.firstFault).Seconds()
	r.detected = true
	r.rec.update(func(e *Experiment) { e.TimeToDetectSeconds, e.DetectedBy = &ttd, by })
	r.event("detected", "after %.1fs by %s", ttd, by)
}
