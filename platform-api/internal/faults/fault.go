package faults

import (
	"context"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/docker"
)

// States of a fault.
const (
	StateActive = "active"
	// StateReverting: the revert is under way, or failed and is retried
	// with backoff (RevertAttempts, Error and NextRevertAt say how it
	// goes); also a network fault whose leftover rules are being removed.
	// The fault still holds its containers.
	StateReverting = "reverting"
	StateReverted  = "reverted"
	StateCompleted = "completed" // restart: nothing to revert
	StateFailed    = "failed"
)

// Fault is the record of one fault. Once published (visible to List and
// Get) it changes only under the manager's lock.
type Fault struct {
	ID          string            `json:"id"`
	Type        Type              `json:"type"`
	Target      string            `json:"target"`
	Container   string            `json:"container"`
	ContainerID string            `json:"containerId"`
	Peer        string            `json:"peer,omitempty"`
	PeerID      string            `json:"peerId,omitempty"`
	Params      map[string]string `json:"params,omitempty"`
	State       string            `json:"state"`
	Command     string            `json:"command"`
	StartedAt   time.Time         `json:"startedAt"`
	EndsAt      *time.Time        `json:"endsAt,omitempty"`
	EndedAt     *time.Time        `json:"endedAt,omitempty"`
	EndReason   string            `json:"endReason,omitempty"`
	// Error is why the fault failed, or while it is reverting, why the
	// last revert attempt failed.
	Error string `json:"error,omitempty"`
	// RevertAttempts counts the revert's tries; NextRevertAt is when a
	// failed one is tried again.
	RevertAttempts int        `json:"revertAttempts,omitempty"`
	NextRevertAt   *time.Time `json:"nextRevertAt,omitempty"`
	// Cleanup is the state of the removal of rules a network fault may
	// have left behind (after a restart, or when Pumba failed): pending,
	// done, or failed with what could not be removed.
	Cleanup string `json:"cleanup,omitempty"`

	spec      Spec
	fam       family
	image     string            // the target's image: markers use it
	peer      *docker.Container // a partition's other side (apply only)
	targetIPs map[string]string
	sources   []string         // a partition's dropped sources (CIDRs), for the cleanup
	marker    string           // the marker, or for a network fault the Pumba job
	saved     docker.Resources // the limits a resource fault puts back
	reason    string           // why it is being reverted
	timer     *time.Timer      // the end of its duration, then the next revert attempt
	attempt   chan struct{}    // closed when the revert attempt under way ends
}

// stopTimer cancels the pending end or retry (m.mu held).
func (f *Fault) stopTimer() {
	if f.timer != nil {
		f.timer.Stop()
		f.timer = nil
	}
}

// Runtime is what the manager needs of Docker.
type Runtime interface {
	Find(ctx context.Context, name string) (docker.Container, error)
	Host() docker.Host
	Pause(ctx context.Context, id string) error
	Unpause(ctx context.Context, id string) error
	Stop(ctx context.Context, id string, timeout time.Duration) error
	Start(ctx context.Context, id string) error
	Kill(ctx context.Context, id, signal string) error
	Restart(ctx context.Context, id string, timeout time.Duration) error
	Resources(ctx context.Context, id string) (docker.Resources, error)
	SetCPUs(ctx context.Context, id string, nanoCPUs int64) error
	SetMemory(ctx context.Context, id string, memory, memorySwap int64) error
	CreateMarker(ctx context.Context, name, image string, labels map[string]string) (string, error)
	Jobs(ctx context.Context, kind string) ([]docker.Container, error)
	Remove(ctx context.Context, id string) error
	// Pumba jobs.
	ProjectNetwork(ctx context.Context, name string) (string, error)
	CreateJob(ctx context.Context, j docker.JobSpec) (string, error)
	Wait(ctx context.Context, id string) (int64, error)
	Logs(ctx context.Context, id string, lines int) (string, error)
	RunInNetns(ctx context.Context, target, image string, cmd []string) (int64, string, error)
	EnsureImages(ctx context.Context, refs ...string) error
}

// Observer hears of fault windows (metrics, Grafana annotations). Calls
// are best effort and must not block for long.
type Observer interface {
	FaultStarted(f Fault)
	FaultEnded(f Fault)
}

// holds says whether g still holds its containers: active, being applied
// (pending) or being reverted. A fault whose revert is retried, or whose
// leftover rules are being removed, would have its work undone by a new
// one (an unpause, a deleted qdisc).
func holds(g *Fault) bool { return g.State == StateActive || g.State == StateReverting }
