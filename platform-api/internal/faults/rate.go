package faults

import (
	"context"
	"regexp"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
)

// rate limits the target's egress bandwidth (Pumba netem rate --rate).
type rate struct{ netemJob }

// rateRe is the rate grammar of Pumba 1.1.7 (pkg/chaos/netem/rate.go):
// it refuses every other tc unit (tbit, bps, kbps, ...) with exit 1.
var rateRe = regexp.MustCompile(`^[0-9]+[gmk]?bit$`)

// validate checks a rate fault's own fields (see family).
func (rate) validate(s *Spec, p *apierr.Problems, _ int) {
	p.Check(rateRe.MatchString(s.Rate), "rate", "must be digits then bit, kbit, mbit or gbit (e.g. 100kbit, 1mbit, 1gbit): Pumba accepts only ^[0-9]+[gmk]?bit$")
}

// params are a rate fault's fields as its record shows them.
func (rate) params(s Spec) map[string]string {
	p := durationParams(s)
	p["rate"] = s.Rate
	return p
}

// args are Pumba's command line for a rate fault.
func (r rate) args(m *Manager, f *Fault) []string {
	return m.netemArgs(f, "rate", "--rate", f.spec.Rate)
}

// command is the command line a learner would type for a rate fault.
func (r rate) command(m *Manager, f *Fault) string { return pumbaCommand(r.args(m, f)) }

// apply injects a rate fault (see family).
func (r rate) apply(ctx context.Context, m *Manager, f *Fault) error {
	return m.runPumba(ctx, f, r.args(m, f))
}
