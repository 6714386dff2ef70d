// Package faults injects and reverts faults on the project's containers.
//
// Container faults act through the Docker API: pause, stop, kill (a
// signal), restart, and CPU and memory limits. Each has a duration and is
// reverted when it ends, when it is stopped, on reset, and after the
// platform itself restarts: before a fault is applied, a marker container
// (created, never started) records it in dsplab.job.* labels, and at
// start-up every marker is reconciled — reverted if expired, re-armed if
// not. Reverting is idempotent, so a crash between marking and applying is
// harmless.
package faults

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Fault types.
const (
	Pause   = "pause"
	Stop    = "stop"
	Kill    = "kill"
	Restart = "restart"
	CPU     = "cpu"
	Memory  = "memory"
)

// Network fault types, run as Pumba netem jobs.
const (
	Delay     = "delay"
	Loss      = "loss"
	Duplicate = "duplicate"
	Corrupt   = "corrupt"
	Rate      = "rate"
	Partition = "partition"
)

// NetworkTypes are the Pumba network faults.
var NetworkTypes = []string{Delay, Loss, Duplicate, Corrupt, Rate, Partition}

// ContainerTypes are the container faults.
var ContainerTypes = []string{Pause, Stop, Kill, Restart, CPU, Memory}

// class groups faults that cannot be active together on one container.
func class(t string) string {
	switch t {
	case Pause, Stop, Kill, Restart:
		return "state"
	case CPU:
		return "cpu"
	case Memory:
		return "memory"
	}
	return "network"
}

// Spec is a request for a fault.
type Spec struct {
	Type       string
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

// rateRe is the rate grammar of Pumba 1.1.7 (pkg/chaos/netem/rate.go):
// it refuses every other tc unit (tbit, bps, kbps, ...) with exit 1.
var rateRe = regexp.MustCompile(`^[0-9]+[gmk]?bit$`)

// Limits bound what may be asked.
type Limits struct {
	MaxDuration   time.Duration
	MaxConcurrent int
}

// Problem names one invalid field.
type Problem struct {
	Field   string `json:"field"`
	Problem string `json:"problem"`
}

// ValidationError lists every problem of a request.
type ValidationError struct{ Problems []Problem }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Field + ": " + p.Problem
	}
	return "invalid fault: " + strings.Join(parts, "; ")
}

var signals = []string{"SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGSTOP", "SIGCONT"}

// Validate checks s against the limits and the host, returning every
// problem at once.
func (s *Spec) Validate(lim Limits, hostCPUs int) error {
	var ps []Problem
	bad := func(field, format string, a ...any) { ps = append(ps, Problem{field, fmt.Sprintf(format, a...)}) }
	all := strings.Join(append(slices.Clone(ContainerTypes), NetworkTypes...), ", ")
	switch {
	case s.Type == "":
		bad("type", "is required: one of %s", all)
	case !slices.Contains(ContainerTypes, s.Type) && !slices.Contains(NetworkTypes, s.Type):
		bad("type", "%q is not a fault type: one of %s", s.Type, all)
	}
	s.validateNetwork(bad)
	if s.Target == "" {
		bad("target", "is required: a compose service or container name (see GET /api/targets)")
	}
	if s.Type != Restart {
		switch {
		case s.Duration <= 0:
			bad("durationSeconds", "must be positive")
		case s.Duration > lim.MaxDuration:
			bad("durationSeconds", "must be at most %d (the platform's cap)", int(lim.MaxDuration.Seconds()))
		}
	}
	if s.Type == Kill {
		if s.Signal == "" {
			s.Signal = "SIGKILL"
		}
		s.Signal = strings.ToUpper(s.Signal)
		if !strings.HasPrefix(s.Signal, "SIG") {
			s.Signal = "SIG" + s.Signal
		}
		if !slices.Contains(signals, s.Signal) {
			bad("signal", "%q is not one of %s", s.Signal, strings.Join(signals, ", "))
		}
	}
	if s.Type == CPU && (s.CPUs < 0.01 || s.CPUs > float64(hostCPUs)) {
		bad("cpus", "must be from 0.01 to %d (the host's CPUs)", hostCPUs)
	}
	if s.Type == Memory && (s.MemoryMB < 6 || s.MemoryMB > 1<<20) {
		bad("memoryMB", "must be at least 6 (Docker's minimum)")
	}
	if len(ps) > 0 {
		return &ValidationError{Problems: ps}
	}
	return nil
}

func (s *Spec) validateNetwork(bad func(field, format string, a ...any)) {
	switch s.Type {
	case Delay:
		if s.DelayMs < 1 || s.DelayMs > 60_000 {
			bad("delayMs", "must be from 1 to 60000")
		}
		if s.JitterMs < 0 || s.JitterMs > s.DelayMs {
			bad("jitterMs", "must be from 0 to delayMs")
		}
		if !slices.Contains([]string{"", "uniform", "normal", "pareto", "paretonormal"}, s.Distribution) {
			bad("distribution", "must be uniform, normal, pareto or paretonormal")
		} else if s.Distribution != "" && s.JitterMs == 0 {
			// Pumba would send "delay 100ms distribution normal", which tc
			// refuses: a distribution shapes the jitter.
			bad("distribution", "needs jitterMs above 0: a distribution shapes the jitter (tc refuses it without one)")
		}
		if s.Correlation != 0 && s.JitterMs == 0 {
			// Pumba would send "delay 100ms 20.00", which tc reads as
			// 20 µs of jitter and no correlation.
			bad("correlation", "needs jitterMs above 0 for delay: it correlates the jitter (without one tc would read it as jitter in µs)")
		}
	case Loss, Duplicate, Corrupt:
		if !(s.Percent > 0 && s.Percent <= 100) {
			bad("percent", "must be above 0 and at most 100")
		}
	case Rate:
		if !rateRe.MatchString(s.Rate) {
			bad("rate", "must be digits then bit, kbit, mbit or gbit (e.g. 100kbit, 1mbit, 1gbit): Pumba accepts only ^[0-9]+[gmk]?bit$")
		}
	case Partition:
		if s.Peer == "" {
			bad("peer", "is required: the service cut off from target, both directions")
		} else if s.Peer == s.Target {
			bad("peer", "must differ from target")
		}
	}
	if s.Correlation < 0 || s.Correlation > 100 {
		bad("correlation", "must be from 0 to 100")
	}
}

// Command is the docker CLI equivalent of a fault, shown in its record so
// that a learner can repeat it by hand.
func (s Spec) Command(container string) string {
	switch s.Type {
	case Pause:
		return "docker pause " + container
	case Stop:
		return "docker stop " + container
	case Kill:
		return "docker kill --signal " + s.Signal + " " + container
	case Restart:
		return "docker restart " + container
	case CPU:
		return fmt.Sprintf("docker update --cpus %g %s", s.CPUs, container)
	case Memory:
		return fmt.Sprintf("docker update --memory %dm --memory-swap %dm %s", s.MemoryMB, s.MemoryMB, container)
	}
	return ""
}
