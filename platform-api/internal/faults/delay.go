package faults

import (
	"context"
	"slices"
	"strconv"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
)

// delay adds latency, with optional jitter, correlation and distribution,
// to the target's egress (Pumba netem delay; tc qdisc ... netem delay).
type delay struct{ netemJob }

// validate checks a delay fault's own fields (see family).
func (delay) validate(s *Spec, p *apierr.Problems, _ int) {
	if s.DelayMs < 1 || s.DelayMs > 60_000 {
		p.Add("delayMs", "must be from 1 to 60000")
	}
	if s.JitterMs < 0 || s.JitterMs > s.DelayMs {
		p.Add("jitterMs", "must be from 0 to delayMs")
	}
	if !slices.Contains([]string{"", "uniform", "normal", "pareto", "paretonormal"}, s.Distribution) {
		p.Add("distribution", "must be uniform, normal, pareto or paretonormal")
	} else if s.Distribution != "" && s.JitterMs == 0 {
		// Pumba would send "delay 100ms distribution normal", which tc
		// refuses: a distribution shapes the jitter.
		p.Add("distribution", "needs jitterMs above 0: a distribution shapes the jitter (tc refuses it without one)")
	}
	if s.Correlation != 0 && s.JitterMs == 0 {
		// Pumba would send "delay 100ms 20.00", which tc reads as 20 µs
		// of jitter and no correlation.
		p.Add("correlation", "needs jitterMs above 0 for delay: it correlates the jitter (without one tc would read it as jitter in µs)")
	}
}

// params are a delay fault's fields as its record shows them.
func (delay) params(s Spec) map[string]string {
	p := durationParams(s)
	p["delayMs"], p["jitterMs"], p["correlation"] = strconv.Itoa(s.DelayMs), strconv.Itoa(s.JitterMs), formatFloat(s.Correlation)
	if s.Distribution != "" {
		p["distribution"] = s.Distribution
	}
	return p
}

// args are Pumba's command line for a delay fault.
func (delay) args(m *Manager, f *Fault) []string {
	s := f.spec
	sub := []string{"delay", "--time", strconv.Itoa(s.DelayMs), "--jitter", strconv.Itoa(s.JitterMs), "--correlation", formatFloat(s.Correlation)}
	if s.Distribution != "" {
		sub = append(sub, "--distribution", s.Distribution)
	}
	return m.netemArgs(f, sub...)
}

// command is the command line a learner would type for a delay fault.
func (d delay) command(m *Manager, f *Fault) string { return pumbaCommand(d.args(m, f)) }

// apply injects a delay fault (see family).
func (d delay) apply(ctx context.Context, m *Manager, f *Fault) error {
	return m.runPumba(ctx, f, d.args(m, f))
}
