package experiments

import (
	"fmt"
	"strings"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/ledgercheck"
)

// Markdown renders an experiment's report for people.
func Markdown(e Experiment) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# Experiment %s — %s\n\n", e.Name, strings.ToUpper(string(e.State)))
	if e.Definition.Description != "" {
		p("%s\n\n", e.Definition.Description)
	}
	p("| | |\n|---|---|\n")
	p("| id | `%s` |\n| started | %s |\n", e.ID, e.StartedAt.Format(time.RFC3339))
	if e.EndedAt != nil {
		p("| ended | %s (%.0fs) |\n", e.EndedAt.Format(time.RFC3339), e.EndedAt.Sub(e.StartedAt).Seconds())
	}
	p("| verdict | **%s** %s |\n", e.State, e.Reason)
	p("| time to detect | %s %s |\n", secs(e.TimeToDetectSeconds), e.DetectedBy)
	p("| time to recover | %s |\n", secs(e.TimeToRecoverSeconds))
	if e.TrafficJobID != "" {
		p("| traffic job | `%s` |\n", e.TrafficJobID)
	}
	ledgerMarkdown(p, e)
	p("\n## Checks\n\n| phase | check | query | expected | result | values |\n|---|---|---|---|---|---|\n")
	for _, c := range e.Checks {
		result := "✅ passed"
		switch {
		case c.Error == notJudged:
			result = "— " + notJudged
		case !c.Passed:
			result = "❌ failed"
			if c.Error != "" {
				result += " (" + c.Error + ")"
			}
		}
		p("| %s | %s | `%s` | %s %g (%s) | %s | %s |\n", c.Phase, c.Name, strings.ReplaceAll(c.Query, "|", "\\|"), c.Comparator, c.Threshold, c.Mode, result, values(c.Samples))
	}
	p("\nModes: *always* held at every evaluation; *eventually* held at least once; *recovers* evaluated until every after check held at one evaluation (time to recover) or the recovery window ended, judged on that last evaluation. `%s` in a query is the experiment so far (since its start, plus %.0fs); `%s` is the recovery so far (since every fault ended, plus %.0fs).\n", RangeVar, RangeMargin.Seconds(), RecoveryVar, RangeMargin.Seconds())
	p("\n## Timeline\n\n| t (s) | event | |\n|---|---|---|\n")
	for _, ev := range e.Timeline {
		p("| %.1f | %s | %s |\n", ev.Seconds, ev.Kind, strings.ReplaceAll(ev.Message, "|", "\\|"))
	}
	p("\n## Alerts received\n\n")
	if len(e.Alerts) == 0 {
		p("None.\n")
	}
	for _, a := range e.Alerts {
		p("- %s **%s** %s (%s) %s\n", a.ReceivedAt.Format(time.RFC3339), a.Labels["alertname"], a.Status, labels(a.Labels), a.Annotations["summary"])
	}
	return b.String()
}

// secs formats optional seconds ("—" for none).
func secs(v *float64) string {
	if v == nil {
		return "—"
	}
	return fmt.Sprintf("%.1fs", *v)
}

// num formats an optional number ("—" for none).
func num(v *float64) string {
	if v == nil {
		return "—"
	}
	return fmt.Sprintf("%.0f", *v)
}

// values lists the first eight sample values ("no data" where none).
func values(ss []Sample) string {
	var parts []string
	for i, s := range ss {
		if i == 8 {
			parts = append(parts, fmt.Sprintf("… %d more", len(ss)-8))
			break
		}
		if s.Value == nil {
			parts = append(parts, "no data")
		} else {
			parts = append(parts, fmt.Sprintf("%g", *s.Value))
		}
	}
	return strings.Join(parts, ", ")
}

// labels are an alert's labels but its name, as k=v.
func labels(l map[string]string) string {
	var parts []string
	for k, v := range l {
		if k != "alertname" {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, " ")
}

// killedAnalyzer says whether the experiment kills an analyzer with
// SIGKILL (the default signal): the process cannot export its last counts.
func killedAnalyzer(d Definition) bool {
	for _, f := range d.Faults {
		sig := strings.TrimPrefix(strings.ToUpper(f.Signal), "SIG")
		if f.Type == "kill" && (sig == "" || sig == "KILL") && strings.HasPrefix(f.Target, "analyzer") {
			return true
		}
	}
	return false
}

// ledgerMarkdown writes the exact ledger, its expectations and examples,
// and the metric ledger as a cross-check.
func ledgerMarkdown(p func(string, ...any), e Experiment) {
	p("\n## Delivery ledger (exact, from Kafka)\n\n")
	x := e.ExactLedger
	if x == nil {
		p("Not read: %s.\n", orDash(e.LedgerNote))
	} else {
		p("Packets of traffic job %s, read packet by packet from `logs.*` (what the distributor wrote before answering 2xx) and the analyzers' ledger topic (each processing) after the backlog drained (waited %.1fs, %d records read).\n\n",
			"`"+strings.Join(x.JobIDs, "`, `")+"`", x.WaitedSeconds, x.RecordsRead)
		if x.Error != "" {
			p("**Not read to the end: %s.** The counts are what was read before.\n\n", x.Error)
		}
		if x.Truncated != "" {
			p("**Partial: %s.**\n\n", x.Truncated)
		}
		p("| attempted (k6) | accepted (k6, 2xx) | accepted, not written | written | processed (unique) | duplicates | lost | unexpected | unreadable |\n|---|---|---|---|---|---|---|---|---|\n")
		p("| %s | %s | %s | %d | %d | %d | %d | %d | %d |\n", inum(x.Attempted), inum(x.Accepted), inum(x.AcceptedNotWritten), x.Written, x.Processed, x.Duplicates, x.Lost, x.Unexpected, x.Unreadable)
		p("\n*accepted, not written*: k6's 2xx answers beyond the ids in `logs.*` (a count: above 0, packets answered 2xx are not in Kafka, or their ids do not name the job); *written*: ids in `logs.*` (%d written more than once); *processed*: ids with a ledger record (%d records); *duplicates*: ids processed more than once (%d of them the same `logs.*` record again: a re-delivery); *lost*: written, never processed; *unexpected*: processed, never written; *unreadable*: ledger records that are not ledger records.\n", x.WrittenTwice, x.Processings, x.Redelivered)
		examples(p, "Lost", x.Examples.Lost)
		examples(p, "Duplicates", x.Examples.Duplicates)
		examples(p, "Unexpected", x.Examples.Unexpected)
		if len(x.Examples.Unreadable) > 0 {
			p("\nUnreadable (first %d):\n\n", len(x.Examples.Unreadable))
			for _, u := range x.Examples.Unreadable {
				p("- %s/%d@%d: %s\n", u.Topic, u.Partition, u.Offset, u.Error)
			}
		}
	}
	if len(e.LedgerChecks) > 0 {
		p("\n| expected | value | result |\n|---|---|---|\n")
		for _, c := range e.LedgerChecks {
			result := "✅ passed"
			if !c.Passed {
				result = "❌ failed"
				if c.Error != "" {
					result += " (" + c.Error + ")"
				}
			}
			p("| %s %s %g | %s | %s |\n", c.Count, c.Comparator, c.Threshold, inum(c.Value), result)
		}
	}
	p("\n### Metric ledger (cross-check)\n\nIncreases of Prometheus counters over the experiment, every job's traffic included; not the verdict.\n\n| accepted (distributor) | processed (analyzers, unique) | duplicates | lost | accepted (k6) |\n|---|---|---|---|---|\n")
	p("| %s | %s | %s | %s | %s |\n", num(e.Ledger.Accepted), num(e.Ledger.Processed), num(e.Ledger.Duplicates), num(e.Ledger.Lost), num(e.Ledger.K6Accepted))
	if e.Ledger.Lost != nil && *e.Ledger.Lost > 0 && killedAnalyzer(e.Definition) {
		p("\nA SIGKILL hit an analyzer: what it processed after its last metric export (OTEL_METRIC_EXPORT_INTERVAL, 2 s in the compose stack) and before the signal was never exported, so the metric \"lost\" counts those packets too. The exact ledger above counts each packet from Kafka.\n")
	}
}

// examples writes a titled list of ledger examples (nothing for none).
func examples(p func(string, ...any), title string, ex []ledgercheck.Example) {
	if len(ex) == 0 {
		return
	}
	p("\n%s (first %d):\n\n", title, len(ex))
	for _, x := range ex {
		p("- `%s`: %s\n", x.PacketID, exampleWhere(x))
	}
}

// exampleWhere says where an example packet was written and processed.
func exampleWhere(x ledgercheck.Example) string {
	var where []string
	for _, w := range x.Written {
		where = append(where, fmt.Sprintf("written %s/%d@%d", w.Topic, w.Partition, w.Offset))
	}
	for _, pr := range x.Processed {
		where = append(where, fmt.Sprintf("processed by %s (%s) at %s, ledger %s/%d@%d", pr.Analyzer, orDash(pr.Delivery), pr.ProcessedAt.Format("15:04:05.000"), pr.Ledger.Topic, pr.Ledger.Partition, pr.Ledger.Offset))
	}
	if len(where) == 0 {
		return "nowhere"
	}
	return strings.Join(where, "; ")
}

// inum formats an optional count ("—" for none).
func inum(v *int64) string {
	if v == nil {
		return "—"
	}
	return fmt.Sprint(*v)
}

// orDash is s, or "—" when empty.
func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
