package faults

import (
	"context"
	"strconv"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
)

// A family is one fault type: how its request is checked, how it is
// applied and reverted, and the command line a learner would type for it.
// Each family is one file (Pumba's docker/pause.go, docker/netem.go;
// Toxiproxy's one file per toxic); the manager never switches on the type.
type family interface {
	// class is what the fault holds on its containers: two faults of one
	// class never overlap on a container.
	class() class
	// validate checks the family's own fields of s, filling defaults.
	validate(s *Spec, p *apierr.Problems, hostCPUs int)
	// params are the family's fields as the fault's record shows them.
	params(s Spec) map[string]string
	// command is the equivalent docker or Pumba command line.
	command(m *Manager, f *Fault) string
	// apply injects f. f is not visible to anyone else yet, so apply may
	// fill its private fields (marker, saved limits); a marker it created
	// is removed by the manager when apply fails.
	apply(ctx context.Context, m *Manager, f *Fault) error
	// revert undoes f. It is idempotent, and runs on a context of its own
	// (the request that asked for it may be gone), as Pumba reverts on a
	// fresh context.
	revert(ctx context.Context, m *Manager, f *Fault) error
}

// oneShot is a family with nothing to revert (restart): no duration, no
// marker; the fault is completed once applied.
type oneShot interface{ oneShot() }

// twoSided is a family acting between the target and a peer (partition).
type twoSided interface{ twoSided() }

// class groups faults that cannot be active together on one container.
type class string

const (
	classState   class = "state" // pause, stop, kill, restart
	classCPU     class = "cpu"
	classMemory  class = "memory"
	classNetwork class = "network"
)

// families are the fault types.
var families = map[Type]family{
	Pause:     pause{},
	Stop:      stop{},
	Kill:      kill{},
	Restart:   restart{},
	CPU:       cpu{},
	Memory:    memory{},
	Delay:     delay{},
	Loss:      percent{t: Loss},
	Duplicate: percent{t: Duplicate},
	Corrupt:   percent{t: Corrupt},
	Rate:      rate{},
	Partition: partition{},
}

// durationParams is the record's parameter every fault with a duration
// shows.
func durationParams(s Spec) map[string]string {
	p := map[string]string{}
	if s.Duration > 0 {
		p["durationSeconds"] = formatFloat(s.Duration.Seconds())
	}
	return p
}

// formatFloat formats v without a needless exponent or trailing zeros.
func formatFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// Every network family is run by Pumba and knows its leftovers.
var (
	_ network = delay{}
	_ network = percent{}
	_ network = rate{}
	_ network = partition{}
)
