package experiments

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/alerts"
	"github.com/dsplab/dsplab/platform-api/internal/traffic"
)

// settle bounds the wait at the end for the traffic job's summary and for
// the analyzers' counters to catch up (processing and scraping lag).
const settle = 30 * time.Second

// ledgerPoll is the pause between two reads of the ledger at the end: more
// than a scrape interval (5 s), so an unchanged count means a settled one.
const ledgerPoll = 6 * time.Second

// finish ends the run after its cleanup: it waits (within settle, while
// ctx lasts, and until a second Stop) for the traffic job's summary and
// the last counts,
// reads the metric and exact ledgers, judges the ledger expectations,
// and records the end. The verdict is the checks', failed by a ledger
// expectation that did not hold; what the cleanup could not undo is added
// to the reason. It returns the verdict.
func (r *runner) finish(ctx context.Context, o outcome, notUndone []string) State {
	ctx, cancel := context.WithTimeout(ctx, 2*settle)
	defer cancel()
	r.rec.flush() // the cleanup's events, before the wait for the last counts
	deadline := time.Now().Add(settle)
	job := r.awaitJobEnd(ctx, r.rec.snapshot().TrafficJobID, deadline)
	l := r.settledLedger(ctx, deadline)
	if job != nil {
		l.K6Accepted = k6Accepted(*job)
	}
	select {
	case <-r.hurry:
		r.event("stopped-again", "a second stop: the end read the counts and the ledger as they stood, without waiting for the analyzers")
	default:
	}
	r.rec.flush()
	// The exact ledger decides; read after the traffic ended and the
	// metric ledger settled, it waits for the analyzers' backlog itself.
	exact, note := r.exactLedger(context.WithoutCancel(ctx), job)
	checks := judgeLedger(r.rec.snapshot().LedgerChecks, exact, note)
	if failed := failedLedgerChecks(checks); len(failed) > 0 && o.verdict == Passed {
		o = fail("%d ledger checks failed: %v", len(failed), failed)
	}
	if len(notUndone) > 0 {
		o.reason = strings.TrimPrefix(o.reason+"; cleanup failed: "+strings.Join(notUndone, "; "), "; ")
	}
	now := time.Now().UTC()
	as := r.alerts.Since(r.start)
	sort.Slice(as, func(i, j int) bool { return as[i].ReceivedAt.Before(as[j].ReceivedAt) })
	if as == nil {
		as = []alerts.Alert{}
	}
	snap := r.rec.snapshot()
	fws, charts := r.faultWindows(snap, now), r.captureCharts(ctx, snap, now)
	r.rec.update(func(e *Experiment) {
		e.ExactLedger, e.LedgerNote, e.LedgerChecks = exact, note, checks
		e.Ledger, e.Alerts, e.State, e.Reason, e.EndedAt = l, as, o.verdict, o.reason, &now
		e.Faults, e.Charts = fws, charts
	})
	r.event("verdict", "%s %s", o.verdict, o.reason)
	return o.verdict
}

// awaitJobEnd waits, until deadline or the end of ctx, for the traffic
// job id to end, and returns its last record (nil: no job, or none
// readable).
func (r *runner) awaitJobEnd(ctx context.Context, id string, deadline time.Time) *traffic.Job {
	if id == "" {
		return nil
	}
	for {
		j, err := r.traffic.Get(id)
		if err != nil {
			return nil
		}
		if j.State != traffic.StateRunning || !time.Now().Before(deadline) || !r.pause(ctx, time.Second) {
			return &j
		}
	}
}

// settledLedger reads the metric ledger until it settles: the last counts
// reach Prometheus seconds after they happen (export interval, then
// scrape interval), so it is read until the distributor's count has
// stopped moving and the analyzers have caught up, or deadline or the end
// of ctx.
func (r *runner) settledLedger(ctx context.Context, deadline time.Time) Ledger {
	end := r.metricLedger(ctx)
	for time.Now().Before(deadline) && r.pause(ctx, ledgerPoll) {
		next := r.metricLedger(ctx)
		stable := same(end["accepted"], next["accepted"])
		end = next
		if stable && caughtUp(end) {
			break
		}
	}
	return ledgerOf(end)
}

// pause is sleep that a second Stop also ends: false when ctx ended or
// r.hurry was closed.
func (r *runner) pause(ctx context.Context, d time.Duration) bool {
	return sleepUnless(ctx, r.hurry, d)
}

// same says whether two optional numbers are equal (both nil, or both set
// to the same value).
func same(a, b *float64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

// caughtUp says whether the analyzers have processed as much as the
// distributor accepted since the start (or the counters are missing).
func caughtUp(l map[string]*float64) bool {
	if l["accepted"] == nil || l["processed"] == nil {
		return true
	}
	return *l["processed"] >= *l["accepted"]
}

// metricLedger is the increase of each ledger counter since the start
// (nil where Prometheus has none).
func (r *runner) metricLedger(ctx context.Context) map[string]*float64 {
	out := map[string]*float64{}
	for k, c := range ledgerCounters {
		if v, ok, err := r.q.Increase(ctx, c, r.start); err == nil && ok {
			out[k] = &v
		}
	}
	return out
}

// ledgerOf is the metric ledger of the counters' increases, with what was
// lost when both ends are known.
func ledgerOf(end map[string]*float64) Ledger {
	l := Ledger{Accepted: end["accepted"], Processed: end["processed"], Duplicates: end["duplicates"]}
	if l.Accepted != nil && l.Processed != nil {
		lost := max(0, *l.Accepted-*l.Processed)
		l.Lost = &lost
	}
	return l
}

// k6Accepted is what k6 counted accepted (nil without a summary).
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
