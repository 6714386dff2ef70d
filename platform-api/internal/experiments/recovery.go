package experiments

import (
	"context"
	"slices"
	"time"
)

// recoveryPhase evaluates the after checks until they all hold at once
// (time to recover) or the recovery window ends, then judges them, and
// gives the verdict of the checks.
func (r *runner) recoveryPhase(ctx context.Context) outcome {
	ended := time.Now()
	r.recoveryStart = ended
	deadline := ended.Add(seconds(r.def.RecoverySeconds))
	after := r.checksIn(PhaseAfter)
	interval := seconds(r.def.IntervalSeconds)
	for {
		all := true
		for _, i := range after {
			if !r.evaluate(ctx, i) {
				all = false
			}
		}
		if all {
			if len(after) > 0 {
				ttr := time.Since(ended).Seconds()
				r.rec.update(func(e *Experiment) { e.TimeToRecoverSeconds = &ttr })
				r.event("recovered", "after checks hold %.1fs after the faults ended", ttr)
			}
			break
		}
		if !time.Now().Add(interval).Before(deadline) {
			r.event("not-recovered", "after checks did not all hold within %gs", r.def.RecoverySeconds)
			break
		}
		r.rec.flush()
		if !sleep(ctx, interval) {
			return abort("stopped by request")
		}
	}
	r.judge(PhaseAfter)
	var failed []string
	for _, c := range r.rec.snapshot().Checks {
		if !c.Passed {
			failed = append(failed, string(c.Phase)+": "+c.Name)
		}
	}
	if len(failed) > 0 {
		return fail("%d checks failed: %v", len(failed), failed)
	}
	return pass()
}

// judge decides the checks of a phase from their samples.
func (r *runner) judge(p Phase) {
	r.rec.update(func(e *Experiment) {
		e.undo.Judged = append(e.undo.Judged, p)
		for i := range e.Checks {
			if c := &e.Checks[i]; c.Phase == p {
				c.Passed, c.Error = c.judged()
			}
		}
	})
}

// judged is whether a check passed on its samples, and the error it then
// shows.
func (c CheckResult) judged() (bool, string) {
	switch {
	case len(c.Samples) == 0:
		if c.Phase == PhaseDuring { // no fault and no traffic: nothing to violate
			return true, c.Error
		}
		return false, "never evaluated"
	case c.Mode == ModeRecovers: // held when recovery was judged
		return c.Samples[len(c.Samples)-1].Holds, c.Error
	case c.Mode == ModeEventually:
		return slices.ContainsFunc(c.Samples, func(s Sample) bool { return s.Holds }), c.Error
	default: // before, or during/always
		return !slices.ContainsFunc(c.Samples, func(s Sample) bool { return !s.Holds }), c.Error
	}
}
