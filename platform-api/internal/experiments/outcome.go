package experiments

import "fmt"

// State is an experiment's state: running, then its verdict. The values
// are the API's, the reports' and the platform_experiments_total
// metric's verdict label: they do not change.
type State string

// The states: running, and the verdicts an experiment ends with.
const (
	StateRunning State = "running"
	Passed       State = "passed"
	Failed       State = "failed"
	Aborted      State = "aborted"
	// Interrupted is the state of an experiment that was running when the
	// platform stopped without aborting it (kill -9, a crash, a stop with
	// no time left): the next start concludes it (see Manager.Restore).
	Interrupted State = "interrupted"
)

// Verdicts are the states an experiment ends with, in report order.
var Verdicts = []State{Passed, Failed, Aborted, Interrupted}

// Phase is when a check is evaluated (see Check.Phase).
type Phase string

// The phases of a run, in order.
const (
	PhaseBefore Phase = "before"
	PhaseDuring Phase = "during"
	PhaseAfter  Phase = "after"
)

// phases are the phases in the order they run.
var phases = []Phase{PhaseBefore, PhaseDuring, PhaseAfter}

// Mode says how a check's samples are judged (see Check.Mode).
type Mode string

// Check modes.
const (
	// ModeAlways: every evaluation holds (before and during checks).
	ModeAlways Mode = "always"
	// ModeEventually: at least one evaluation holds (during checks).
	ModeEventually Mode = "eventually"
	// ModeRecovers: the evaluation that ended recovery holds (after
	// checks, the only mode they have).
	ModeRecovers Mode = "recovers"
)

// outcome is what a step of the run decided. The zero value decides
// nothing: the run goes on to its next step. Otherwise the run ends with
// the verdict, and the reason says why.
type outcome struct {
	verdict State
	reason  string
}

// proceed is the outcome of a step that decided nothing.
var proceed = outcome{}

// decided says whether the step ended the run.
func (o outcome) decided() bool { return o.verdict != "" }

// fail ends the run failed, for the reason given.
func fail(format string, a ...any) outcome {
	return outcome{verdict: Failed, reason: fmt.Sprintf(format, a...)}
}

// abort ends the run aborted, for the reason given.
func abort(reason string) outcome { return outcome{verdict: Aborted, reason: reason} }

// pass ends the run passed.
func pass() outcome { return outcome{verdict: Passed} }
