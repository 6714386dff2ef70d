package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/alerts"
	"github.com/dsplab/dsplab/platform-api/internal/faults"
	"github.com/dsplab/dsplab/platform-api/internal/ledgercheck"
	"github.com/dsplab/dsplab/platform-api/internal/traffic"
)

// Verdicts and states.
const (
	StateRunning = "running"
	Passed       = "passed"
	Failed       = "failed"
	Aborted      = "aborted"
)

// Event is one line of the timeline.
type Event struct {
	At      time.Time `json:"at"`
	Seconds float64   `json:"seconds"` // since the start
	Kind    string    `json:"kind" example:"fault-started"`
	Message string    `json:"message"`
}

// Sample is one evaluation of a check.
type Sample struct {
	At    time.Time `json:"at"`
	Value *float64  `json:"value"` // nil: no data or an error
	Holds bool      `json:"holds"`
}

// CheckResult is a check and its evaluations.
type CheckResult struct {
	Check
	Passed  bool     `json:"passed"`
	Samples []Sample `json:"samples"`
	Error   string   `json:"error,omitempty"`
}

// Ledger compares what the distributor accepted with what the analyzers
// processed over the experiment (exact counter increases across restarts,
// see prom.CounterIncrease), and with what k6 saw accepted.
type Ledger struct {
	Accepted   *float64 `json:"accepted"`   // increase of distributor_packets_total
	Processed  *float64 `json:"processed"`  // increase of analyzer_packets_processed_total (unique within a process's lifetime)
	Duplicates *float64 `json:"duplicates"` // increase of analyzer_duplicate_packets_total
	K6Accepted *float64 `json:"k6Accepted,omitempty"`
	// Lost is accepted minus processed when both are known (0: nothing lost).
	Lost *float64 `json:"lost,omitempty"`
}

var ledgerCounters = map[string]string{
	"accepted":   "distributor_packets_total",
	"processed":  "analyzer_packets_processed_total",
	"duplicates": "analyzer_duplicate_packets_total",
}

// Experiment is one run and its report.
type Experiment struct {
	ID                   string         `json:"id" example:"x-1a2b3c4d5e6f"`
	Name                 string         `json:"name"`
	State                string         `json:"state" example:"passed" enums:"running,passed,failed,aborted,interrupted"`
	Reason               string         `json:"reason,omitempty"`
	StartedAt            time.Time      `json:"startedAt"`
	EndedAt              *time.Time     `json:"endedAt,omitempty"`
	Definition           Definition     `json:"definition"`
	Timeline             []Event        `json:"timeline"`
	Checks               []CheckResult  `json:"checks"`
	Alerts               []alerts.Alert `json:"alerts"`
	TimeToDetectSeconds  *float64       `json:"timeToDetectSeconds,omitempty"`
	DetectedBy           string         `json:"detectedBy,omitempty"`
	TimeToRecoverSeconds *float64       `json:"timeToRecoverSeconds,omitempty"`
	// Ledger is the metric ledger (Prometheus counters): a cross-check
	// of ExactLedger, which decides.
	Ledger Ledger `json:"ledger"`
	// ExactLedger is the delivery ledger read packet by packet from
	// Kafka at the end (nil: not read; see LedgerNote).
	ExactLedger *ledgercheck.Result `json:"exactLedger,omitempty"`
	LedgerNote  string              `json:"ledgerNote,omitempty"`
	// LedgerChecks are the definition's ledger expectations, judged on
	// ExactLedger at the end.
	LedgerChecks []LedgerCheck `json:"ledgerChecks,omitempty"`
	TrafficJobID string        `json:"trafficJobId,omitempty"`
	FaultIDs     []string      `json:"faultIds"`
	// Faults are the windows of its faults, and Charts the series of the
	// report's charts, read from Prometheus when it ended (charts.go).
	Faults []FaultWindow `json:"faults,omitempty"`
	Charts *Charts       `json:"charts,omitempty"`

	undo undo // saved with it, for a restarted platform (persist.go)
}

// Querier evaluates PromQL (Prometheus, or a fake in tests).
type Querier interface {
	Query(ctx context.Context, q string) (value float64, present bool, err error)
	// Increase is the exact growth of the counters selector matches since
	// a time, summed, counting restarts (see prom.CounterIncrease).
	Increase(ctx context.Context, selector string, since time.Time) (total float64, present bool, err error)
}

// FaultStarter is what the runner needs of the fault manager.
type FaultStarter interface {
	Start(ctx context.Context, s faults.Spec) (faults.Fault, error)
	StopFault(ctx context.Context, id string) (faults.Fault, error)
	Get(id string) (faults.Fault, error)
}

// TrafficRunner is what the runner needs of the traffic manager.
type TrafficRunner interface {
	Start(ctx context.Context, s traffic.Spec) (traffic.Job, error)
	Stop(ctx context.Context, id string) (traffic.Job, error)
	Get(id string) (traffic.Job, error)
}

// DistributorConfig sets the distributor's run-time config overlay.
type DistributorConfig interface {
	Overlay(ctx context.Context) (string, error)
	SetOverlay(ctx context.Context, overlay []byte) error
}

// AlertSource lists received alerts.
type AlertSource interface {
	Since(t time.Time) []alerts.Alert
}

// runner executes one experiment; its fields are only touched by the run
// goroutine, and published to readers through Manager.update.
type runner struct {
	m      *Manager
	e      *Experiment
	def    Definition
	start  time.Time
	faults []scheduled
	// configs are the config changes; applied counts those made, and
	// savedOverlay is what was in force before the first.
	configs      []ConfigChange
	applied      int
	savedOverlay string
	// recoveryStart is when the recovery phase began (RecoveryVar).
	recoveryStart time.Time
}

type scheduled struct {
	ScheduledFault
	id      string
	started bool
}

func (r *runner) event(kind, format string, a ...any) {
	now := time.Now().UTC()
	r.m.update(r.e, func(e *Experiment) {
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
	v, present, err := r.m.q.Query(ctx, r.expand(c.Query))
	s := Sample{At: time.Now().UTC()}
	// NaN (a ratio of two zero rates: nothing to divide) and ±Inf are no
	// number to judge, and JSON cannot carry them: they count as no data.
	finite := !math.IsNaN(v) && !math.IsInf(v, 0)
	if err == nil && present && finite {
		s.Value, s.Holds = &v, c.holds(v)
	}
	r.m.update(r.e, func(e *Experiment) {
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

func (r *runner) checks(phase string) []int {
	var out []int
	for i, c := range r.def.Checks {
		if c.Phase == phase {
			out = append(out, i)
		}
	}
	return out
}

// run is the whole experiment: before checks, traffic, faults at their
// offsets with during checks, revert, recovery with after checks, verdict.
func (r *runner) run(ctx context.Context) {
	r.start = r.e.StartedAt
	r.event("started", "experiment %s", r.def.Name)
	verdict, reason := r.phases(ctx)
	if verdict != Aborted {
		r.awaitTraffic(ctx)
	}
	r.cleanup()
	r.finish(verdict, reason)
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
		got, err := r.m.faults.Start(ctx, spec)
		if err == nil || !errors.Is(err, faults.ErrConflict) || !time.Now().Before(deadline) {
			return got, err
		}
		select {
		case <-ctx.Done():
			return got, err
		case <-time.After(250 * time.Millisecond):
		}
	}
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
	id := r.snapshot().TrafficJobID
	if id == "" {
		return
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		j, err := r.m.traffic.Get(id)
		if err == nil && j.State != traffic.StateRunning {
			r.event("traffic-ended", "traffic job %s ended by itself: %s", id, j.State)
			return
		}
		if err != nil || time.Now().After(j.StartedAt.Add(j.Duration+trafficGrace)) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (r *runner) phases(ctx context.Context) (string, string) {
	if v, reason := r.applyDelivery(ctx); v != "" {
		return v, reason
	}
	for _, i := range r.checks("before") {
		if !r.evaluate(ctx, i) {
			r.event("check-failed", "before: %s", r.def.Checks[i].Name)
			if r.def.Checks[i].Abort {
				return Aborted, "before check failed: " + r.def.Checks[i].Name
			}
		}
	}
	r.setPassed("before")
	if t := r.def.Traffic; t != nil {
		asked := time.Now().UTC()
		r.m.updateDurable(r.e, func(e *Experiment) { e.undo.TrafficStarting = &asked })
		job, err := r.m.traffic.Start(ctx, traffic.Spec{TargetURL: t.TargetURL, RPS: t.RPS, Duration: seconds(t.DurationSeconds), Script: t.Script, Profile: t.Profile, Params: t.Params})
		if err != nil {
			return Failed, "traffic did not start: " + err.Error()
		}
		r.m.updateDurable(r.e, func(e *Experiment) { e.TrafficJobID, e.undo.TrafficStarting = job.ID, nil })
		r.event("traffic-started", "%s %s %g/s for %gs → %s (%s)", job.Script, job.Profile, job.RPS, t.DurationSeconds, job.TargetURL, job.ID)
	}
	if v, reason := r.faultPhase(ctx); v != "" {
		return v, reason
	}
	v, reason := r.recoveryPhase(ctx)
	if drift := r.deliveryDrift(ctx); drift != "" && v == Passed {
		return Failed, drift
	}
	return v, reason
}

// faultPhase starts the faults on schedule and evaluates the during checks
// and the detection signal until every fault has ended.
func (r *runner) faultPhase(ctx context.Context) (string, string) {
	interval := seconds(r.def.IntervalSeconds)
	var firstFault time.Time
	lastEval := time.Time{}
	if len(r.faults) == 0 {
		lastEval = time.Now() // first sample one interval into the traffic: rates need samples
	}
	tick := time.NewTicker(min(interval, time.Second))
	defer tick.Stop()
	for {
		now := time.Now()
		for i := range r.faults {
			f := &r.faults[i]
			if f.started || now.Sub(r.start) < seconds(f.AtSeconds) {
				continue
			}
			f.started = true
			r.m.updateDurable(r.e, func(e *Experiment) {
				e.undo.FaultsStarting = append(e.undo.FaultsStarting, starting{Type: f.Type, Target: f.Target, At: now.UTC()})
			})
			got, err := r.startFault(ctx, f.Spec())
			if err != nil {
				r.m.update(r.e, func(e *Experiment) { e.undo.FaultsStarting = nil })
				r.event("fault-failed", "%s on %s: %v", f.Type, f.Target, err)
				return Failed, fmt.Sprintf("fault %s on %s did not start: %v", f.Type, f.Target, err)
			}
			f.id = got.ID
			if firstFault.IsZero() {
				firstFault = now
			}
			r.m.updateDurable(r.e, func(e *Experiment) { e.FaultIDs, e.undo.FaultsStarting = append(e.FaultIDs, got.ID), nil })
			r.event("fault-started", "%s on %s for %gs: %s (%s)", f.Type, got.Target, f.DurationSeconds, got.Command, got.ID)
		}
		if v, reason := r.applyConfigChanges(ctx, now); v != "" {
			return v, reason
		}
		active, pending := r.activeFaults()
		// Without faults, "during" is the traffic job's run (a baseline or
		// a burst is judged under its load, not skipped).
		loaded := len(r.faults) == 0 && r.trafficRunning()
		if (active > 0 || loaded) && now.Sub(lastEval) >= interval {
			lastEval = now
			for _, i := range r.checks("during") {
				c := r.def.Checks[i]
				if !r.evaluate(ctx, i) && c.Mode == ModeAlways && c.Abort {
					return Aborted, "during check failed: " + c.Name
				}
			}
		}
		if !firstFault.IsZero() {
			r.detect(ctx, firstFault)
		}
		if active == 0 && pending == 0 && !loaded && r.applied == len(r.configs) {
			r.setPassed("during")
			if !firstFault.IsZero() {
				r.event("faults-ended", "every fault has been reverted")
			}
			return "", ""
		}
		r.m.flush(r.e)
		select {
		case <-ctx.Done():
			return Aborted, "stopped by request"
		case <-tick.C:
		}
	}
}

// applyConfigChanges sets the config overlays whose time has come.
func (r *runner) applyConfigChanges(ctx context.Context, now time.Time) (string, string) {
	for r.applied < len(r.configs) && now.Sub(r.start) >= seconds(r.configs[r.applied].AtSeconds) {
		c := r.configs[r.applied]
		if r.m.dist == nil {
			return Failed, "config change: the platform has no distributor to configure"
		}
		if r.applied == 0 {
			prev, err := r.m.dist.Overlay(ctx)
			if err != nil {
				r.event("config-failed", "reading the distributor's overlay: %v", err)
				return Failed, "config change: " + err.Error()
			}
			r.savedOverlay = prev
			// On disk before the first change: a platform killed after
			// it still knows what to put back.
			if err := r.m.updateDurable(r.e, func(e *Experiment) { e.undo.OverlaySaved, e.undo.Overlay = true, prev }); err != nil {
				r.event("config-failed", "saving the distributor's overlay before changing it: %v", err)
				return Failed, "config change not made: the overlay to put back could not be saved: " + err.Error()
			}
		}
		var body []byte
		if !c.Clear {
			body, _ = json.Marshal(c.Overlay)
		}
		r.applied++
		if err := r.m.dist.SetOverlay(ctx, body); err != nil {
			r.event("config-failed", "%v", err)
			return Failed, "config change refused: " + err.Error()
		}
		if c.Clear {
			r.event("config-changed", "distributor overlay cleared: back to its file and environment")
		} else {
			r.event("config-changed", "distributor hot-reloaded with %s", body)
		}
	}
	return "", ""
}

// trafficRunning says whether the experiment's traffic job still runs.
func (r *runner) trafficRunning() bool {
	id := r.snapshot().TrafficJobID
	if id == "" {
		return false
	}
	j, err := r.m.traffic.Get(id)
	return err == nil && j.State == traffic.StateRunning
}

// activeFaults counts started faults still active and faults not started.
func (r *runner) activeFaults() (active, pending int) {
	for _, f := range r.faults {
		if !f.started {
			pending++
			continue
		}
		if f.id == "" {
			continue
		}
		if got, err := r.m.faults.Get(f.id); err == nil && (got.State == faults.StateActive || got.State == faults.StateReverting) {
			active++
		}
	}
	return active, pending
}

// detect records time to detect: the first alert received, or the first
// time the detect query returned something, after the first fault.
func (r *runner) detect(ctx context.Context, firstFault time.Time) {
	if r.e.TimeToDetectSeconds != nil {
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
	for _, a := range r.m.alerts.Since(firstFault) {
		named := len(r.def.DetectAlerts) == 0 || slices.Contains(r.def.DetectAlerts, a.Labels["alertname"])
		if named && a.Status == "firing" && (a.StartsAt.IsZero() || !a.StartsAt.Before(firstFault)) {
			at, by = a.ReceivedAt, "alert "+a.Labels["alertname"]
			break
		}
	}
	if _, present, err := r.m.q.Query(ctx, r.expand(r.def.DetectQuery)); err == nil && present && (at.IsZero() || time.Now().Before(at)) {
		at, by = time.Now(), "query "+r.def.DetectQuery
	}
	if at.IsZero() {
		return
	}
	ttd := at.Sub(firstFault).Seconds()
	r.m.update(r.e, func(e *Experiment) { e.TimeToDetectSeconds, e.DetectedBy = &ttd, by })
	r.event("detected", "after %.1fs by %s", ttd, by)
}

// recoveryPhase evaluates the after checks until they all hold at once
// (time to recover) or the recovery window ends.
func (r *runner) recoveryPhase(ctx context.Context) (string, string) {
	ended := time.Now()
	r.recoveryStart = ended
	deadline := ended.Add(seconds(r.def.RecoverySeconds))
	after := r.checks("after")
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
				r.m.update(r.e, func(e *Experiment) { e.TimeToRecoverSeconds = &ttr })
				r.event("recovered", "after checks hold %.1fs after the faults ended", ttr)
			}
			break
		}
		if !time.Now().Add(interval).Before(deadline) {
			r.event("not-recovered", "after checks did not all hold within %gs", r.def.RecoverySeconds)
			break
		}
		r.m.flush(r.e)
		select {
		case <-ctx.Done():
			return Aborted, "stopped by request"
		case <-time.After(interval):
		}
	}
	r.setPassed("after")
	var failed []string
	for _, c := range r.snapshot().Checks {
		if !c.Passed {
			failed = append(failed, c.Phase+": "+c.Name)
		}
	}
	if len(failed) > 0 {
		return Failed, fmt.Sprintf("%d checks failed: %v", len(failed), failed)
	}
	return Passed, ""
}

// setPassed decides the checks of a phase from their samples.
func (r *runner) setPassed(phase string) {
	r.m.update(r.e, func(e *Experiment) {
		e.undo.Judged = append(e.undo.Judged, phase)
		for i := range e.Checks {
			c := &e.Checks[i]
			if c.Phase != phase {
				continue
			}
			switch {
			case len(c.Samples) == 0:
				c.Passed = phase == "during" // no fault and no traffic: nothing to violate
				if !c.Passed {
					c.Error = "never evaluated"
				}
			case c.Mode == ModeRecovers: // held when recovery was judged
				c.Passed = c.Samples[len(c.Samples)-1].Holds
			case c.Mode == ModeEventually:
				c.Passed = false
				for _, s := range c.Samples {
					c.Passed = c.Passed || s.Holds
				}
			default: // before, or during/always
				c.Passed = true
				for _, s := range c.Samples {
					c.Passed = c.Passed && s.Holds
				}
			}
		}
	})
}

func (r *runner) snapshot() Experiment {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	return *r.e
}

// cleanup reverts the experiment's active faults and stops its traffic, on
// a detached bounded context: an aborted experiment leaves nothing behind.
func (r *runner) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, f := range r.faults {
		if f.id == "" {
			continue
		}
		got, err := r.m.faults.Get(f.id)
		if err != nil || (got.State != faults.StateActive && got.State != faults.StateReverting) {
			continue
		}
		// Say what happened: a revert the engine refused is not reverted
		// (the fault manager keeps retrying it).
		switch got, err := r.m.faults.StopFault(ctx, f.id); {
		case err != nil:
			r.event("fault-stop-failed", "%s on %s (%s) not reverted: %v", f.Type, f.Target, f.id, err)
		case got.State == faults.StateReverted:
			r.event("fault-stopped", "%s on %s reverted by the experiment", f.Type, f.Target)
		default:
			r.event("fault-stopped", "%s on %s stopped by the experiment: %s", f.Type, f.Target, got.State)
		}
	}
	if r.applied > 0 {
		if err := r.m.dist.SetOverlay(ctx, []byte(r.savedOverlay)); err != nil {
			r.event("config-failed", "putting the distributor's overlay back: %v", err)
		} else {
			r.m.updateDurable(r.e, func(e *Experiment) { e.undo.OverlayRestored = true })
			r.event("config-restored", "the distributor's overlay from before the experiment is back")
		}
	}
	r.m.mu.Lock()
	before, restored := maps.Clone(r.e.undo.DeliveryBefore), r.e.undo.DeliveryRestored
	r.m.mu.Unlock()
	if len(before) > 0 && !restored {
		r.restoreDelivery(ctx, before)
	}
	e := r.snapshot()
	if e.TrafficJobID == "" {
		return
	}
	if j, err := r.m.traffic.Get(e.TrafficJobID); err == nil && j.State == traffic.StateRunning {
		if _, err := r.m.traffic.Stop(ctx, e.TrafficJobID); err != nil {
			r.event("traffic-stop-failed", "traffic job %s not stopped: %v", e.TrafficJobID, err)
		} else {
			r.event("traffic-stopped", "traffic job %s stopped at the end of the experiment", e.TrafficJobID)
		}
	}
}

// settle bounds the wait at the end for the traffic job's summary and for
// the analyzers' counters to catch up (processing and scraping lag).
const settle = 30 * time.Second

// ledgerPoll is the pause between two reads of the ledger at the end: more
// than a scrape interval (5 s), so an unchanged count means a settled one.
const ledgerPoll = 6 * time.Second

func same(a, b *float64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func (r *runner) finish(verdict, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*settle)
	defer cancel()
	r.m.flush(r.e) // the cleanup's events, before the wait for the last counts
	e := r.snapshot()
	deadline := time.Now().Add(settle)
	var job *traffic.Job
	for e.TrafficJobID != "" {
		j, err := r.m.traffic.Get(e.TrafficJobID)
		if err != nil || j.State != traffic.StateRunning || !time.Now().Before(deadline) {
			if err == nil {
				job = &j
			}
			break
		}
		time.Sleep(time.Second)
	}
	// The last counts reach Prometheus seconds after they happen (export
	// interval, then scrape interval): the ledger is read until the
	// distributor's count has stopped moving and the analyzers have caught
	// up, or the settle time is over.
	end := r.ledger(ctx)
	for time.Now().Before(deadline) {
		time.Sleep(ledgerPoll)
		next := r.ledger(ctx)
		stable := same(end["accepted"], next["accepted"])
		end = next
		if stable && caughtUp(end) {
			break
		}
	}
	l := Ledger{Accepted: end["accepted"], Processed: end["processed"], Duplicates: end["duplicates"]}
	if l.Accepted != nil && l.Processed != nil {
		lost := max(0, *l.Accepted-*l.Processed)
		l.Lost = &lost
	}
	if job != nil {
		l.K6Accepted = k6Accepted(*job)
	}
	r.m.flush(r.e)
	// The exact ledger decides; read after the traffic ended and the
	// metric ledger settled, it waits for the analyzers' backlog itself.
	exact, note := r.exactLedger(context.WithoutCancel(ctx), job)
	checks := judgeLedger(r.snapshot().LedgerChecks, exact, note)
	if failed := failedLedgerChecks(checks); len(failed) > 0 && verdict == Passed {
		verdict, reason = Failed, fmt.Sprintf("%d ledger checks failed: %v", len(failed), failed)
	}
	now := time.Now().UTC()
	as := r.m.alerts.Since(r.start)
	sort.Slice(as, func(i, j int) bool { return as[i].ReceivedAt.Before(as[j].ReceivedAt) })
	fws, charts := r.m.faultWindows(e, now), r.m.captureCharts(ctx, r.snapshot(), now)
	r.m.update(r.e, func(e *Experiment) {
		e.ExactLedger, e.LedgerNote, e.LedgerChecks = exact, note, checks
		e.Ledger, e.Alerts, e.State, e.Reason, e.EndedAt = l, as, verdict, reason, &now
		e.Faults, e.Charts = fws, charts
		if e.Alerts == nil {
			e.Alerts = []alerts.Alert{}
		}
	})
	r.event("verdict", "%s %s", verdict, reason)
	r.m.finished(verdict)
}

// caughtUp says whether the analyzers have processed as much as the
// distributor accepted since the start (or the counters are missing).
func caughtUp(l map[string]*float64) bool {
	if l["accepted"] == nil || l["processed"] == nil {
		return true
	}
	return *l["processed"] >= *l["accepted"]
}

// ledger is the increase of each ledger counter since the start (nil
// where Prometheus has none).
func (r *runner) ledger(ctx context.Context) map[string]*float64 {
	out := map[string]*float64{}
	for k, c := range ledgerCounters {
		if v, ok, err := r.m.q.Increase(ctx, c, r.start); err == nil && ok {
			out[k] = &v
		}
	}
	return out
}

func k6Accepted(j traffic.Job) *float64 { return k6Number(j, "packets_accepted") }

// k6Number is a number of the k6 summary's overview (nil if none).
func k6Number(j traffic.Job, name string) *float64 {
	var doc struct {
		Overview map[string]any `json:"overview"`
	}
	if len(j.Summary) == 0 || json.Unmarshal(j.Summary, &doc) != nil {
		return nil
	}
	if v, ok := doc.Overview[name].(float64); ok {
		return &v
	}
	return nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
