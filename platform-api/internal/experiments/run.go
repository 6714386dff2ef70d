package experiments

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/faults"
	"github.com/dsplab/dsplab/platform-api/internal/traffic"
)

// runner executes one experiment. It acts on the world through its deps
// and reports to the experiment's record through rec; its own fields are
// only touched by the goroutine running it.
type runner struct {
	deps
	rec   recorder
	def   Definition
	start time.Time
	// zero is when the faults' and config changes' offsets count from:
	// the traffic job's start (the moment its container runs, as its
	// duration counts from then), or the end of the before checks when
	// there is no traffic. Unset (zero) until then.
	zero time.Time
	// plan is the fault schedule, by start time.
	plan []scheduled
	// configs are the config changes, by time; applied counts those made,
	// and savedOverlay is what was in force before the first.
	configs      []ConfigChange
	applied      int
	savedOverlay string
	// firstFault is when the first fault started, detected whether time
	// to detect is known, and recoveryStart when the recovery phase began
	// (RecoveryVar).
	firstFault    time.Time
	detected      bool
	recoveryStart time.Time
	// hurry is closed by a second Stop: the end no longer waits for the
	// last counts and the analyzers' backlog (nil: never).
	hurry <-chan struct{}
}

// scheduled is a fault of the plan: its id once started.
type scheduled struct {
	ScheduledFault
	id      string
	started bool
}

// newRunner returns the runner of e, whose record rec keeps.
func newRunner(d deps, rec recorder, e Experiment) *runner {
	r := &runner{deps: d, rec: rec, def: e.Definition, start: e.StartedAt, detected: e.TimeToDetectSeconds != nil}
	for _, f := range e.Definition.Faults {
		r.plan = append(r.plan, scheduled{ScheduledFault: f})
	}
	sort.SliceStable(r.plan, func(i, j int) bool { return r.plan[i].AtSeconds < r.plan[j].AtSeconds })
	r.configs = slices.Clone(e.Definition.ConfigChanges)
	sort.SliceStable(r.configs, func(i, j int) bool { return r.configs[i].AtSeconds < r.configs[j].AtSeconds })
	return r
}

// event appends a line to the timeline.
func (r *runner) event(kind, format string, a ...any) {
	now := time.Now().UTC()
	r.rec.update(func(e *Experiment) {
		e.Timeline = append(e.Timeline, Event{At: now, Seconds: now.Sub(r.start).Seconds(), Kind: kind, Message: fmt.Sprintf(format, a...)})
	})
}

// RangeVar in a query stands for the experiment so far, as Grafana's
// $__range stands for a dashboard's time range: the time since the
// experiment started plus RangeMargin, in whole seconds. Transient events
// are judged with it on counters (increase(x_total[$__range]) > 0): a
// state that lasts less than a metric export plus a scrape (2 s + 5 s in
// the compose stack) may never be sampled, its count always is.
const RangeVar = "$__range"

// RecoveryVar in an after check's query stands for the recovery so far:
// the time since every fault ended plus RangeMargin, in whole seconds.
// "Requests are accepted again" is then counted since the faults ended
// (increase(x_total[$__recovery]) > 0), not over a fixed look-back that
// also holds the requests accepted before the fault.
const RecoveryVar = "$__recovery"

// RangeMargin reaches back before the start: two scrape intervals, so the
// window holds a sample from before the first fault (the base increase()
// counts from) even when a fault starts at 0 s.
const RangeMargin = 10 * time.Second

// expand replaces RangeVar and RecoveryVar in q.
func (r *runner) expand(q string) string {
	span := func(since time.Time) string {
		d := time.Since(since) + RangeMargin
		return fmt.Sprintf("%ds", int(math.Ceil(d.Seconds())))
	}
	if strings.Contains(q, RangeVar) {
		q = strings.ReplaceAll(q, RangeVar, span(r.start))
	}
	if strings.Contains(q, RecoveryVar) {
		since := r.recoveryStart
		if since.IsZero() { // only after checks may name it (Validate); never before recovery
			since = time.Now()
		}
		q = strings.ReplaceAll(q, RecoveryVar, span(since))
	}
	return q
}

// evaluate runs check i once and records the sample.
func (r *runner) evaluate(ctx context.Context, i int) bool {
	c := r.def.Checks[i]
	v, present, err := r.q.Query(ctx, r.expand(c.Query))
	s := Sample{At: time.Now().UTC()}
	// NaN (a ratio of two zero rates: nothing to divide) and ±Inf are no
	// number to judge, and JSON cannot carry them: they count as no data.
	finite := !math.IsNaN(v) && !math.IsInf(v, 0)
	if err == nil && present && finite {
		s.Value, s.Holds = &v, c.holds(v)
	}
	r.rec.update(func(e *Experiment) {
		e.Checks[i].Samples = append(e.Checks[i].Samples, s)
		switch {
		case err != nil:
			e.Checks[i].Error = err.Error()
		case !present:
			e.Checks[i].Error = "no data"
		case !finite:
			e.Checks[i].Error = fmt.Sprintf("no data: the query returned %v", v)
		default:
			e.Checks[i].Error = ""
		}
	})
	return s.Holds
}

// checksIn are the indexes of the checks of a phase.
func (r *runner) checksIn(p Phase) []int {
	var out []int
	for i, c := range r.def.Checks {
		if c.Phase == p {
			out = append(out, i)
		}
	}
	return out
}

// run is the whole experiment: delivery modes, before checks, traffic,
// faults at their offsets with during checks, revert, recovery with after
// checks, cleanup, ledger, verdict. It returns the verdict.
func (r *runner) run(ctx context.Context) State {
	r.event("started", "experiment %s", r.def.Name)
	prepared := r.prepareFaults(ctx)
	o := r.phases(ctx)
	prepared()
	if o.verdict != Aborted {
		r.awaitTraffic(ctx)
	}
	// Detached: a stopped experiment still undoes what it did and says
	// what it saw.
	notUndone := r.cleanup(context.WithoutCancel(ctx))
	return r.finish(context.WithoutCancel(ctx), o, notUndone)
}

// FaultPreparer is a FaultStarter that can ready what the plan's faults
// need (faults.Manager.Prepare: Pumba's images, the netem check) before
// their offsets.
type FaultPreparer interface {
	Prepare(ctx context.Context, types []faults.Type) (string, error)
}

// prepareFaults readies, in the background from the experiment's start,
// what the planned faults need, so a fault starts at its offset instead
// of after an image pull or the netem check (a sidecar: minutes on a slow
// engine). The timeline says when it was ready, or what was not (each
// fault's start still checks and answers for itself). The returned
// function ends it and waits for it.
func (r *runner) prepareFaults(ctx context.Context) func() {
	p, ok := r.faults.(FaultPreparer)
	if !ok || len(r.plan) == 0 {
		return func() {}
	}
	var types []faults.Type
	for _, f := range r.plan {
		types = append(types, faults.Type(f.Type))
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t0 := time.Now()
		what, err := p.Prepare(pctx, types)
		switch {
		case err == nil && what != "":
			r.event("faults-ready", "ready for the faults in %.1f s: %s", time.Since(t0).Seconds(), what)
		case err != nil && pctx.Err() == nil:
			r.event("faults-not-ready", "after %.1f s: %v (each fault's start checks again)", time.Since(t0).Seconds(), err)
		}
	}()
	return func() { cancel(); <-done }
}

// phases runs the experiment up to its verdict from the checks: the first
// step that decides ends it.
func (r *runner) phases(ctx context.Context) outcome {
	for _, step := range []func(context.Context) outcome{r.applyDelivery, r.beforePhase, r.startTraffic, r.faultPhase} {
		if o := step(ctx); o.decided() {
			return o
		}
	}
	o := r.recoveryPhase(ctx)
	if drift := r.deliveryDrift(ctx); drift != "" && o.verdict == Passed {
		return fail("%s", drift)
	}
	return o
}

// beforePhase evaluates the before checks once; a failing one with abort
// ends the run.
func (r *runner) beforePhase(ctx context.Context) outcome {
	for _, i := range r.checksIn(PhaseBefore) {
		if !r.evaluate(ctx, i) {
			r.event("check-failed", "before: %s", r.def.Checks[i].Name)
			if r.def.Checks[i].Abort {
				return abort("before check failed: " + r.def.Checks[i].Name)
			}
		}
	}
	r.judge(PhaseBefore)
	return proceed
}

// startTraffic starts the definition's traffic job, if it has one.
func (r *runner) startTraffic(ctx context.Context) outcome {
	t := r.def.Traffic
	if t == nil {
		return proceed
	}
	asked := time.Now().UTC()
	r.rec.updateDurable(func(e *Experiment) { e.undo.TrafficStarting = &asked })
	job, err := r.traffic.Start(ctx, traffic.Spec{TargetURL: t.TargetURL, RPS: t.RPS, Duration: seconds(t.DurationSeconds), Script: t.Script, Profile: t.Profile, Params: t.Params})
	if err != nil {
		return fail("traffic did not start: %v", err)
	}
	r.zero = time.Now()
	r.rec.updateDurable(func(e *Experiment) { e.TrafficJobID, e.undo.TrafficStarting = job.ID, nil })
	r.event("traffic-started", "%s %s %g/s for %gs → %s (%s)", job.Script, job.Profile, job.RPS, t.DurationSeconds, job.TargetURL, job.ID)
	return proceed
}

// trafficGrace is how long past its planned end a traffic job may take to
// end by itself: k6's graceful stop of the iterations in flight (30 s by
// default) and its end-of-test summary.
const trafficGrace = 40 * time.Second

// awaitTraffic lets the experiment's traffic job end by itself (within
// trafficGrace of its planned end) rather than stopping it in cleanup as
// soon as the after checks have held: a job stopped early leaves no k6
// summary, so the exact ledger would have no k6 counts to hold the
// written packets against. A stop request (ctx) ends the wait.
func (r *runner) awaitTraffic(ctx context.Context) {
	id := r.rec.snapshot().TrafficJobID
	if id == "" {
		return
	}
	for {
		j, err := r.traffic.Get(id)
		if err == nil && j.State != traffic.StateRunning {
			r.event("traffic-ended", "traffic job %s ended by itself: %s", id, j.State)
			return
		}
		if err != nil || time.Now().After(j.StartedAt.Add(j.Duration+trafficGrace)) || !sleep(ctx, 500*time.Millisecond) {
			return
		}
	}
}

// trafficRunning says whether the experiment's traffic job still runs.
func (r *runner) trafficRunning() bool {
	id := r.rec.snapshot().TrafficJobID
	if id == "" {
		return false
	}
	j, err := r.traffic.Get(id)
	return err == nil && j.State == traffic.StateRunning
}

// sleep waits for d or the end of ctx, and says whether d passed.
func sleep(ctx context.Context, d time.Duration) bool { return sleepUnless(ctx, nil, d) }

// sleepUnless is sleep that the closing of stop also ends (nil: never).
func sleepUnless(ctx context.Context, stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}

// seconds converts a definition's seconds to a duration.
func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
