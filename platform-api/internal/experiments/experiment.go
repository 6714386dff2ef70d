package experiments

import (
	"context"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/alerts"
	"github.com/dsplab/dsplab/platform-api/internal/faults"
	"github.com/dsplab/dsplab/platform-api/internal/ledgercheck"
	"github.com/dsplab/dsplab/platform-api/internal/traffic"
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

// ledgerCounters are the metric ledger's counters, by Ledger field.
var ledgerCounters = map[string]string{
	"accepted":   "distributor_packets_total",
	"processed":  "analyzer_packets_processed_total",
	"duplicates": "analyzer_duplicate_packets_total",
}

// Experiment is one run and its report.
type Experiment struct {
	ID     string `json:"id" example:"x-1a2b3c4d5e6f"`
	Name   string `json:"name"`
	State  State  `json:"state" example:"passed" enums:"running,passed,failed,aborted,interrupted"`
	Reason string `json:"reason,omitempty"`
	// CleanupErrors name what the end of the experiment could not undo
	// (a fault not reverted, the distributor's overlay or an analyzer's
	// delivery mode not put back, a traffic job not stopped). They do not
	// change the verdict, which is the checks'; the reason and the
	// timeline (cleanup-failed) name them too.
	CleanupErrors        []string       `json:"cleanupErrors,omitempty"`
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

// deps are what a run acts on and reads: the manager's collaborators,
// handed to each runner.
type deps struct {
	q        Querier
	faults   FaultStarter
	traffic  TrafficRunner
	alerts   AlertSource
	dist     DistributorConfig // nil: config changes fail
	delivery DeliverySwitch    // nil: delivery modes fail
	ledger   LedgerChecker     // nil: no exact ledger
}

// recorder is the experiment's record as its runner sees it. The manager
// publishes the record to readers and saves it (persist.go); the runner
// changes it only through these.
type recorder interface {
	// update changes the record; it is saved within a second.
	update(fn func(*Experiment))
	// updateDurable changes the record and returns once it is saved (or
	// saving it failed): what undoes a change is saved before the change.
	updateDurable(fn func(*Experiment)) error
	// flush saves an update held back.
	flush()
	// snapshot is a copy of the record.
	snapshot() Experiment
}
