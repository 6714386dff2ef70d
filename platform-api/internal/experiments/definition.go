// Package experiments runs declarative chaos experiments: steady-state
// checks (PromQL with a comparator and threshold) before, during and after
// a fault schedule under traffic, ending in a verdict (passed, failed,
// aborted) and a report with the timeline, every check value, the alerts
// received, time to detect, time to recover and the delivery ledger.
package experiments

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/dsplab/dsplab/internal/ledger"
	"github.com/dsplab/dsplab/platform-api/internal/apierr"
	"github.com/dsplab/dsplab/platform-api/internal/faults"
	"github.com/dsplab/dsplab/platform-api/internal/traffic"
)

// Definition is an experiment, as written in experiments/*.yaml.
type Definition struct {
	Name        string `yaml:"name" json:"name" example:"analyzer-crash"`
	Description string `yaml:"description" json:"description,omitempty"`
	// Traffic starts after the before checks (optional).
	Traffic *Traffic `yaml:"traffic" json:"traffic,omitempty"`
	// Faults start at their offset (atSeconds) from the traffic's start, as
	// the traffic's duration counts (from the before checks' end when there
	// is no traffic); what they need (Pumba's images, the netem check) is
	// readied from the experiment's start.
	Faults []ScheduledFault `yaml:"faults" json:"faults"`
	// ConfigChanges hot-reload the distributor at their offsets (counted
	// as the faults' are; a run-time overlay through its admin API); the
	// overlay in force before the experiment is put back at its end,
	// whatever the verdict.
	ConfigChanges []ConfigChange `yaml:"configChanges" json:"configChanges,omitempty"`
	Checks        []Check        `yaml:"checks" json:"checks"`
	// RecoverySeconds is how long after the last fault ends the "after"
	// checks have to hold (time to recover is measured in it).
	RecoverySeconds float64 `yaml:"recoverySeconds" json:"recoverySeconds" example:"60"`
	// IntervalSeconds between check evaluations (default 5).
	IntervalSeconds float64 `yaml:"intervalSeconds" json:"intervalSeconds,omitempty" example:"5"`
	// DetectQuery is a PromQL filter that returns something once the
	// system has noticed the fault (default: an analyzer down or the
	// distributor's health down). With alerts, it gives time to detect.
	DetectQuery string `yaml:"detectQuery" json:"detectQuery,omitempty"`
	// DetectAlerts names the alerts that count as detecting the fault
	// (default: any alert that starts firing after the first fault). An
	// alert left pending by an earlier run can start firing during this
	// one: naming the alerts that belong to this fault keeps it from
	// being credited.
	DetectAlerts []string `yaml:"detectAlerts" json:"detectAlerts,omitempty" example:"AnalyzerDown"`
	// Ledger is what the exact delivery ledger must show at the end (see
	// LedgerExpect): {lost: 0, duplicates: ">0"}. It needs traffic.
	Ledger LedgerExpect `yaml:"ledger" json:"ledger,omitempty"`
	// Delivery sets analyzers' delivery modes for the experiment, by
	// analyzer id (at-most-once, at-least-once, effectively-once), through
	// each analyzer's admin API; the modes from before are put back at the
	// end, whatever the verdict.
	Delivery map[string]string `yaml:"delivery" json:"delivery,omitempty" example:"analyzer-2:at-most-once"`
	// ProcessingDelayMs slows analyzers down for the experiment, by
	// analyzer id: milliseconds spent on every packet (0 to 10000, the
	// analyzer's PROCESSING_DELAY_MS), set through each analyzer's admin
	// API (PUT /admin/processing) and kept across its restarts; the delays
	// from before are put back at the end, whatever the verdict.
	ProcessingDelayMs map[string]float64 `yaml:"processingDelayMs" json:"processingDelayMs,omitempty" example:"analyzer-1:10"`
}

// maxProcessingDelayMs is the analyzers' bound on PUT /admin/processing.
const maxProcessingDelayMs = 10000

// modeNames lists the analyzers' delivery modes (ledger.Modes) for errors.
var modeNames = func() string {
	names := make([]string, len(ledger.Modes))
	for i, m := range ledger.Modes {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}()

// Traffic is the experiment's load: the platform's traffic request.
type Traffic struct {
	TargetURL       string            `yaml:"targetUrl" json:"targetUrl" example:"http://distributor:8080"`
	RPS             float64           `yaml:"rps" json:"rps" example:"300"`
	DurationSeconds float64           `yaml:"durationSeconds" json:"durationSeconds" example:"120"`
	Script          string            `yaml:"script" json:"script,omitempty" example:"ingest-packets"`
	Profile         string            `yaml:"profile" json:"profile,omitempty" example:"constant"`
	Params          map[string]string `yaml:"params" json:"params,omitempty"`
}

// ScheduledFault is a fault and when it starts.
type ScheduledFault struct {
	AtSeconds       float64 `yaml:"atSeconds" json:"atSeconds" example:"20"`
	Type            string  `yaml:"type" json:"type" example:"kill"`
	Target          string  `yaml:"target" json:"target" example:"analyzer-2"`
	DurationSeconds float64 `yaml:"durationSeconds" json:"durationSeconds" example:"15"`
	Signal          string  `yaml:"signal" json:"signal,omitempty"`
	CPUs            float64 `yaml:"cpus" json:"cpus,omitempty"`
	MemoryMB        int     `yaml:"memoryMB" json:"memoryMB,omitempty"`
	DelayMs         int     `yaml:"delayMs" json:"delayMs,omitempty"`
	JitterMs        int     `yaml:"jitterMs" json:"jitterMs,omitempty"`
	Correlation     float64 `yaml:"correlation" json:"correlation,omitempty"`
	Distribution    string  `yaml:"distribution" json:"distribution,omitempty"`
	Percent         float64 `yaml:"percent" json:"percent,omitempty"`
	Rate            string  `yaml:"rate" json:"rate,omitempty"`
	Peer            string  `yaml:"peer" json:"peer,omitempty"`
	AllowInfra      bool    `yaml:"allowInfra" json:"allowInfra,omitempty"`
}

// Spec converts to a fault request.
func (f ScheduledFault) Spec() faults.Spec {
	return faults.Spec{Type: faults.Type(f.Type), Target: f.Target, Duration: seconds(f.DurationSeconds), Signal: f.Signal, CPUs: f.CPUs,
		MemoryMB: f.MemoryMB, AllowInfra: f.AllowInfra, DelayMs: f.DelayMs, JitterMs: f.JitterMs, Correlation: f.Correlation,
		Distribution: f.Distribution, Percent: f.Percent, Rate: f.Rate, Peer: f.Peer}
}

// ConfigChange is a distributor configuration overlay and when it is set.
type ConfigChange struct {
	AtSeconds float64 `yaml:"atSeconds" json:"atSeconds" example:"20"`
	// Overlay is a partial config of the distributor's file shape, e.g.
	// {limits: {global: {rate: 100, burst: 100}}}; it replaces the
	// previous overlay. Empty with clear: back to file and environment.
	Overlay map[string]any `yaml:"overlay" json:"overlay,omitempty"`
	Clear   bool           `yaml:"clear" json:"clear,omitempty"`
}

// Check is a steady-state check.
type Check struct {
	Name string `yaml:"name" json:"name" example:"all analyzers healthy"`
	// Query is PromQL returning one number (a scalar or a one-sample
	// vector). $__range in it stands for the experiment so far (since its
	// start, plus 10 s): judge transient events on counters with
	// increase(x_total[$__range]), not on a sampled gauge. $__recovery,
	// in after checks only, stands for the recovery so far (since every
	// fault ended, plus 10 s): "accepted again" counted since the fault.
	Query      string  `yaml:"query" json:"query" example:"distributor_healthy_analyzers"`
	Comparator string  `yaml:"comparator" json:"comparator" example:">=" enums:">,>=,<,<=,==,!="`
	Threshold  float64 `yaml:"threshold" json:"threshold" example:"3"`
	// Phase: before (once, at the start), during (while faults are
	// active), after (in the recovery window).
	Phase Phase `yaml:"phase" json:"phase" example:"after" enums:"before,during,after"`
	// Mode says how the samples are judged. During checks: always (the
	// default: must hold at every evaluation) or eventually (must hold at
	// least once, e.g. "the failure was noticed"). After checks: recovers
	// (the only one, filled in): evaluated every interval until every
	// after check holds at the same evaluation (time to recover) or the
	// recovery window ends, and judged on that last evaluation. Before
	// checks are evaluated once (always).
	Mode Mode `yaml:"mode" json:"mode,omitempty" enums:"always,eventually,recovers"`
	// Abort stops the experiment as soon as this check fails (before and
	// during checks): the verdict is aborted and every fault is reverted.
	Abort bool `yaml:"abort" json:"abort,omitempty"`
}

// comparators are a check's comparators.
var comparators = []string{">", ">=", "<", "<=", "==", "!="}

// holds says whether v satisfies the check's comparison.
func (c Check) holds(v float64) bool {
	switch c.Comparator {
	case ">":
		return v > c.Threshold
	case ">=":
		return v >= c.Threshold
	case "<":
		return v < c.Threshold
	case "<=":
		return v <= c.Threshold
	case "==":
		return v == c.Threshold
	}
	return v != c.Threshold
}

// Validate fills defaults and lists every problem.
func (d *Definition) Validate(maxFaultDuration float64) error {
	var p apierr.Problems
	if d.IntervalSeconds == 0 {
		d.IntervalSeconds = 5
	}
	if d.DetectQuery == "" {
		d.DetectQuery = "(min(distributor_analyzer_up) < 1) or (distributor_health_up < 1)"
	}
	p.Check(strings.TrimSpace(d.Name) != "", "name", "is required")
	p.Check(d.IntervalSeconds >= 0.5 && d.IntervalSeconds <= 60, "intervalSeconds", "must be from 0.5 to 60")
	p.Check(d.RecoverySeconds >= 0 && d.RecoverySeconds <= 3600, "recoverySeconds", "must be from 0 to 3600")
	if t := d.Traffic; t != nil {
		p.Check(t.TargetURL != "" && t.RPS > 0, "traffic", "needs targetUrl and rps > 0")
		// The traffic manager bounds it at start; the rule is the same
		// as for POST /api/traffic/start.
		p.Duration("traffic.durationSeconds", seconds(t.DurationSeconds), 0)
	}
	for i, f := range d.Faults {
		f.validate(p.In("faults[%d]", i), maxFaultDuration)
	}
	for i, c := range d.ConfigChanges {
		c.validate(p.In("configChanges[%d]", i))
	}
	for i := range d.Checks {
		d.Checks[i].validate(p.In("checks[%d]", i))
	}
	d.Ledger.parse(&p)
	p.Check(len(d.Ledger) == 0 || d.Traffic != nil, "ledger", "needs traffic: the exact ledger counts the packets of the experiment's traffic job")
	if d.Traffic != nil {
		p.Check(len(d.Ledger) == 0 || traffic.ToDistributor(d.Traffic.Script), "ledger",
			"needs traffic to the distributor: the %s script's requests go to service-a, not into the log pipeline", d.Traffic.Script)
	}
	for _, id := range slices.Sorted(maps.Keys(d.Delivery)) {
		p.Check(strings.TrimSpace(id) != "", "delivery", "an analyzer id is empty")
		_, err := ledger.ParseMode(d.Delivery[id])
		p.Check(err == nil, "delivery."+id, "must be one of %s (got %q)", modeNames, d.Delivery[id])
	}
	for _, id := range slices.Sorted(maps.Keys(d.ProcessingDelayMs)) {
		p.Check(strings.TrimSpace(id) != "", "processingDelayMs", "an analyzer id is empty")
		ms := d.ProcessingDelayMs[id]
		p.Check(ms >= 0 && ms <= maxProcessingDelayMs, "processingDelayMs."+id, "must be from 0 to %d milliseconds (got %g)", maxProcessingDelayMs, ms)
	}
	return p.Err("experiment")
}

// validate records the problems of a scheduled fault in p: those of its
// offset, and those the fault manager would answer.
func (f ScheduledFault) validate(p *apierr.Problems, maxFaultDuration float64) {
	p.Check(f.AtSeconds >= 0, "atSeconds", "must not be negative")
	s := f.Spec()
	p.Include(s.Validate(faults.Limits{MaxDuration: seconds(maxFaultDuration)}, 1<<10))
}

// validate records the problems of a config change in p.
func (c ConfigChange) validate(p *apierr.Problems) {
	p.Check(c.AtSeconds >= 0, "atSeconds", "must not be negative")
	p.Check((len(c.Overlay) == 0) != !c.Clear, "", "needs either a non-empty overlay or clear: true")
}

// validate fills a check's defaults (its name, its mode) and records its
// problems in p.
func (c *Check) validate(p *apierr.Problems) {
	if c.Name == "" {
		c.Name = c.Query
	}
	p.Check(strings.TrimSpace(c.Query) != "", "query", "is required (PromQL)")
	p.Check(slices.Contains(comparators, c.Comparator), "comparator", "must be one of %s", strings.Join(comparators, " "))
	p.Check(slices.Contains(phases, c.Phase), "phase", "must be before, during or after")
	switch {
	case c.Phase == PhaseAfter && (c.Mode == "" || c.Mode == ModeRecovers):
		c.Mode = ModeRecovers
	case c.Phase == PhaseAfter:
		p.Add("mode", "after checks are judged when recovery ends (every after check holding at one evaluation, or the window over): mode must be recovers or left out, not %q", c.Mode)
	case c.Mode == "":
		c.Mode = ModeAlways
	case c.Mode != ModeAlways && c.Mode != ModeEventually:
		p.Add("mode", "must be always or eventually for %s checks (recovers is for after checks)", c.Phase)
	}
	p.Check(c.Phase == PhaseAfter || !strings.Contains(c.Query, RecoveryVar), "query",
		"%s (the recovery so far) is for after checks only; use %s (the experiment so far) in %s checks", RecoveryVar, RangeVar, c.Phase)
	p.Check(!c.Abort || c.Phase != PhaseAfter, "abort", "applies to before and during checks only")
}

// LoadPresets reads every *.yaml of dir as a Definition, strictly.
func LoadPresets(dir string, maxFaultDuration float64) (map[string]Definition, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	out := map[string]Definition{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var d Definition
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&d); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
		if err := d.Validate(maxFaultDuration); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
		if _, dup := out[d.Name]; dup {
			return nil, fmt.Errorf("%s: name %q used twice", filepath.Base(f), d.Name)
		}
		out[d.Name] = d
	}
	return out, nil
}
