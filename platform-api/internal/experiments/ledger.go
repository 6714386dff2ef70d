package experiments

import (
	"context"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
	"github.com/dsplab/dsplab/platform-api/internal/ledgercheck"
	"github.com/dsplab/dsplab/platform-api/internal/traffic"
)

// LedgerChecker reads the exact delivery ledger of traffic jobs' packets
// from Kafka (ledgercheck.Check with the platform's brokers, topics and
// caps).
type LedgerChecker interface {
	// Check reads it; closing hurry ends its wait for the backlog.
	Check(ctx context.Context, jobIDs []string, since time.Time, hurry <-chan struct{}) ledgercheck.Result
}

// LedgerExpect is what an experiment expects of its exact ledger: a count
// (attempted, accepted, acceptedNotWritten, written, writtenTwice,
// processed, processings, duplicates, redelivered, lost, unexpected,
// unreadable) and a number it must equal
// (0), or a comparison as a string (">0", "<=5", "!=0"). In a preset:
//
//	ledger: {lost: 0, duplicates: ">0"}
//
// Judged when the experiment ends, on a complete ledger only: one the
// checker could not read to its end (an error, a cap hit) fails every
// expectation.
type LedgerExpect map[string]any

// ledgerCounts are the counts an expectation may name, in report order.
var ledgerCounts = []string{"attempted", "accepted", "acceptedNotWritten", "written", "writtenTwice", "processed", "processings", "duplicates", "redelivered", "lost", "unexpected", "unreadable"}

// LedgerCheck is one expectation and how it was judged.
type LedgerCheck struct {
	Count      string  `json:"count" example:"lost"`
	Comparator string  `json:"comparator" example:"=="`
	Threshold  float64 `json:"threshold" example:"0"`
	Value      *int64  `json:"value"`
	Passed     bool    `json:"passed"`
	Error      string  `json:"error,omitempty"`
}

// expectation is a ledger expectation as a string: an optional comparator
// and a whole number (">0", "<=5", "!=0").
var expectation = regexp.MustCompile(`^\s*(==|!=|>=|<=|>|<)?\s*([0-9]+)\s*$`)

// parse turns the definition's expectations into checks, sorted by count,
// naming every bad one in p.
func (l LedgerExpect) parse(p *apierr.Problems) []LedgerCheck {
	var out []LedgerCheck
	for _, k := range slices.Sorted(maps.Keys(l)) {
		field := "ledger." + k
		if !slices.Contains(ledgerCounts, k) {
			p.Add(field, "is not a count of the exact ledger: one of %s", strings.Join(ledgerCounts, ", "))
			continue
		}
		c := LedgerCheck{Count: k, Comparator: "=="}
		switch v := l[k].(type) {
		case int:
			c.Threshold = float64(v)
		case int64:
			c.Threshold = float64(v)
		case uint64:
			c.Threshold = float64(v)
		case float64:
			c.Threshold = v
		case string:
			m := expectation.FindStringSubmatch(v)
			if m == nil {
				p.Add(field, "must be a number or a comparison of one, like \">0\", \"<=5\" or \"!=0\" (got %q)", v)
				continue
			}
			if m[1] != "" {
				c.Comparator = m[1]
			}
			c.Threshold, _ = strconv.ParseFloat(m[2], 64)
		default:
			p.Add(field, "must be a number or a comparison of one, like \">0\", \"<=5\" or \"!=0\"")
			continue
		}
		if c.Threshold < 0 || c.Threshold != math.Trunc(c.Threshold) || math.IsInf(c.Threshold, 0) {
			p.Add(field, "the number must be a whole number, at least 0 (counts are packets)")
			continue
		}
		out = append(out, c)
	}
	return out
}

// value is the count c names in r (nil: k6 left no summary).
func countOf(r *ledgercheck.Result, count string) *int64 {
	v := map[string]*int64{"attempted": r.Attempted, "accepted": r.Accepted, "acceptedNotWritten": r.AcceptedNotWritten, "written": &r.Written, "writtenTwice": &r.WrittenTwice,
		"processed": &r.Processed, "processings": &r.Processings, "duplicates": &r.Duplicates, "redelivered": &r.Redelivered, "lost": &r.Lost,
		"unexpected": &r.Unexpected, "unreadable": &r.Unreadable}[count]
	if v == nil {
		return nil
	}
	n := *v
	return &n
}

// judgeLedger judges the expectations on the exact ledger r (nil: not
// read).
func judgeLedger(checks []LedgerCheck, r *ledgercheck.Result, why string) []LedgerCheck {
	out := slices.Clone(checks)
	for i := range out {
		c := &out[i]
		switch {
		case r == nil:
			c.Error = "not judged: " + why
		case r.Error != "":
			c.Error = "not judged: the ledger could not be read: " + r.Error
		case r.Truncated != "":
			c.Error = "not judged: the ledger is partial: " + r.Truncated
		default:
			c.Value = countOf(r, c.Count)
			if c.Value == nil {
				c.Error = "no value: k6 left no summary"
				continue
			}
			c.Passed = Check{Comparator: c.Comparator, Threshold: c.Threshold}.holds(float64(*c.Value))
		}
	}
	return out
}

// exactLedger waits for the analyzers to drain the backlog and reads the
// exact ledger of the experiment's traffic job, with k6's own counts. It
// answers nil with the reason when there is nothing to read.
func (r *runner) exactLedger(ctx context.Context, job *traffic.Job) (*ledgercheck.Result, string) {
	e := r.rec.snapshot()
	switch {
	case r.ledger == nil:
		return nil, "the platform reads no Kafka (KAFKA_BROKERS=off)"
	case e.TrafficJobID == "":
		return nil, "the experiment has no traffic job"
	case r.def.Traffic != nil && !traffic.ToDistributor(r.def.Traffic.Script):
		return nil, fmt.Sprintf("the experiment's traffic (%s) goes to service-a, not into the log pipeline: no packets to follow", r.def.Traffic.Script)
	}
	// A margin for clocks: the broker's record times are the writers'
	// clocks, the start is the platform's.
	res := r.ledger.Check(ctx, []string{e.TrafficJobID}, r.start.Add(-time.Minute), r.hurry)
	if job != nil {
		res.SetK6(k6Count(*job, "packets_sent"), k6Count(*job, "packets_accepted"))
	}
	r.event("ledger-read", "exact ledger of %s: written %d, processed %d, duplicates %d, lost %d, unexpected %d, unreadable %d (%d records read in %.1fs)%s",
		e.TrafficJobID, res.Written, res.Processed, res.Duplicates, res.Lost, res.Unexpected, res.Unreadable, res.RecordsRead, res.WaitedSeconds, ledgerTrouble(&res))
	return &res, ""
}

// ledgerTrouble says why a ledger is incomplete ("" when it is not).
func ledgerTrouble(r *ledgercheck.Result) string {
	switch {
	case r.Error != "":
		return "; not read to the end: " + r.Error
	case r.Truncated != "":
		return "; partial: " + r.Truncated
	}
	return ""
}

// k6Count is a count of the k6 summary's overview (nil if none).
func k6Count(j traffic.Job, name string) *int64 {
	if v := k6Number(j, name); v != nil {
		n := int64(*v)
		return &n
	}
	return nil
}

// failedLedgerChecks names the expectations that did not hold.
func failedLedgerChecks(cs []LedgerCheck) []string {
	var out []string
	for _, c := range cs {
		if !c.Passed {
			v := "no value"
			if c.Value != nil {
				v = fmt.Sprint(*c.Value)
			}
			out = append(out, fmt.Sprintf("ledger: %s %s %g (was %s)", c.Count, c.Comparator, c.Threshold, v))
		}
	}
	sort.Strings(out)
	return out
}

// LedgerOf is one ended experiment's exact ledger (metrics).
type LedgerOf struct {
	ID, Name string
	Result   ledgercheck.Result
}

// ExactLedgers returns the exact ledgers of the n experiments that ended
// last (bounded: each is a set of metric series).
func (m *Manager) ExactLedgers(n int) []LedgerOf {
	m.mu.Lock()
	var ended []*Experiment
	for _, e := range m.exps {
		if e.ExactLedger != nil && e.EndedAt != nil {
			ended = append(ended, e)
		}
	}
	sort.Slice(ended, func(i, j int) bool { return ended[i].EndedAt.After(*ended[j].EndedAt) })
	var out []LedgerOf
	for _, e := range ended[:min(n, len(ended))] {
		out = append(out, LedgerOf{ID: e.ID, Name: e.Name, Result: *e.ExactLedger})
	}
	m.mu.Unlock()
	return out
}

// LedgerCounts are the exact ledger's counts by name (metrics, reports);
// attempted and accepted only when k6 left them.
func LedgerCounts(r ledgercheck.Result) map[string]int64 {
	out := map[string]int64{}
	for _, k := range ledgerCounts {
		if v := countOf(&r, k); v != nil {
			out[k] = *v
		}
	}
	return out
}
