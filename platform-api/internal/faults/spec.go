// Package faults injects and reverts faults on the project's containers.
//
// Container faults act through the Docker API: pause, stop, kill (a
// signal), restart, and CPU and memory limits. Network faults run as Pumba
// job containers: delay, loss, duplicate, corrupt, rate (netem) and
// partition (iptables). Each fault type is a family in a file of its own
// (pause.go, kill.go, delay.go, partition.go, ...) implementing one small
// interface (family.go): check its fields, apply, revert, show its
// command.
//
// Each fault has a duration and is reverted when it ends, when it is
// stopped, on reset, and after the platform itself restarts: before a
// fault is applied, a marker container (created, never started; for a
// network fault, its Pumba job) records it in dsplab.job.* labels, and at
// start-up every marker is reconciled — reverted if expired, re-armed if
// not. Reverting is idempotent, so a crash between marking and applying is
// harmless; a revert the engine refuses is retried with backoff until it
// succeeds (revert.go).
package faults

import (
	"slices"
	"strings"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
)

// Type names a fault family.
type Type string

// Container fault types.
const (
	Pause   Type = "pause"
	Stop    Type = "stop"
	Kill    Type = "kill"
	Restart Type = "restart"
	CPU     Type = "cpu"
	Memory  Type = "memory"
)

// Network fault types, run as Pumba jobs.
const (
	Delay     Type = "delay"
	Loss      Type = "loss"
	Duplicate Type = "duplicate"
	Corrupt   Type = "corrupt"
	Rate      Type = "rate"
	Partition Type = "partition"
)

// ContainerTypes are the container faults.
var ContainerTypes = []Type{Pause, Stop, Kill, Restart, CPU, Memory}

// NetworkTypes are the Pumba network faults.
var NetworkTypes = []Type{Delay, Loss, Duplicate, Corrupt, Rate, Partition}

// Spec is a request for a fault.
type Spec struct {
	Type       Type
	Target     string
	Duration   time.Duration
	Signal     string
	CPUs       float64
	MemoryMB   int
	AllowInfra bool
	// Network faults.
	DelayMs      int
	JitterMs     int
	Correlation  float64
	Distribution string
	Percent      float64
	Rate         string
	Peer         string // partition: the other side
}

// Limits bound what may be asked.
type Limits struct {
	MaxDuration   time.Duration
	MaxConcurrent int
}

// Problem names one invalid field.
type Problem = apierr.Problem

// ValidationError lists every problem of a request.
type ValidationError = apierr.ValidationError

// Validate checks s against the limits and the host, filling defaults,
// and returns every problem at once.
func (s *Spec) Validate(lim Limits, hostCPUs int) error {
	var p apierr.Problems
	all := make([]string, 0, len(ContainerTypes)+len(NetworkTypes))
	for _, t := range slices.Concat(ContainerTypes, NetworkTypes) {
		all = append(all, string(t))
	}
	fam, known := families[s.Type]
	switch {
	case s.Type == "":
		p.Add("type", "is required: one of %s", strings.Join(all, ", "))
	case !known:
		p.Add("type", "%q is not a fault type: one of %s", s.Type, strings.Join(all, ", "))
	}
	if s.Target == "" {
		p.Add("target", "is required: a compose service or container name (see GET /api/targets)")
	}
	if _, once := fam.(oneShot); !once {
		p.Duration("durationSeconds", s.Duration, lim.MaxDuration)
	}
	if known {
		fam.validate(s, &p, hostCPUs)
	}
	if s.Correlation < 0 || s.Correlation > 100 {
		p.Add("correlation", "must be from 0 to 100")
	}
	return p.Err("fault")
}
