package faults

import (
	"context"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
)

// percent is the netem families that act on a share of the target's
// egress packets, with an optional correlation: loss (dropped), duplicate
// (sent twice) and corrupt (a bit flipped). Pumba netem loss|duplicate|
// corrupt --percent --correlation.
type percent struct {
	netemJob
	t Type
}

// validate checks a loss, duplicate or corrupt fault's own fields (see family).
func (percent) validate(s *Spec, p *apierr.Problems, _ int) {
	p.Check(s.Percent > 0 && s.Percent <= 100, "percent", "must be above 0 and at most 100")
}

// params are a loss, duplicate or corrupt fault's fields as its record shows them.
func (percent) params(s Spec) map[string]string {
	p := durationParams(s)
	p["percent"], p["correlation"] = formatFloat(s.Percent), formatFloat(s.Correlation)
	return p
}

// args are Pumba's command line for a loss, duplicate or corrupt fault.
func (c percent) args(m *Manager, f *Fault) []string {
	return m.netemArgs(f, string(c.t), "--percent", formatFloat(f.spec.Percent), "--correlation", formatFloat(f.spec.Correlation))
}

// command is the command line a learner would type for a loss, duplicate or corrupt fault.
func (c percent) command(m *Manager, f *Fault) string { return pumbaCommand(c.args(m, f)) }

// apply injects a loss, duplicate or corrupt fault (see family).
func (c percent) apply(ctx context.Context, m *Manager, f *Fault) error {
	return m.runPumba(ctx, f, c.args(m, f))
}
