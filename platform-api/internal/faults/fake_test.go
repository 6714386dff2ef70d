package faults

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/docker"
)

// fakeRuntime is an in-memory engine for the tests of the manager's own
// bookkeeping (races, retries): containers are names with a state. The
// faults themselves are tested on the real engine (manager_test.go).
type fakeRuntime struct {
	mu      sync.Mutex
	state   map[string]string // container id → running, paused, exited
	markers map[string]docker.Container
	down    bool // the engine refuses every change (Find still answers)
	calls   []string
	delay   time.Duration // each state change takes this long
	waits   atomic.Int64  // Wait calls under way (Pumba watchers)
}

var errEngineDown = errors.New("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")

func newFakeRuntime(containers ...string) *fakeRuntime {
	r := &fakeRuntime{state: map[string]string{}, markers: map[string]docker.Container{}}
	for _, c := range containers {
		r.state[c] = "running"
	}
	return r
}

func (r *fakeRuntime) setDown(down bool) { r.mu.Lock(); r.down = down; r.mu.Unlock() }

func (r *fakeRuntime) stateOf(id string) string { r.mu.Lock(); defer r.mu.Unlock(); return r.state[id] }

func (r *fakeRuntime) do(call, id string, fn func()) error {
	r.mu.Lock()
	d := r.delay
	r.mu.Unlock()
	if d > 0 {
		time.Sleep(d)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call+" "+id)
	if r.down {
		return errEngineDown
	}
	if fn != nil {
		fn()
	}
	return nil
}

func (r *fakeRuntime) Find(_ context.Context, name string) (docker.Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.state[name]; !ok {
		return docker.Container{}, docker.ErrNotFound
	}
	return docker.Container{ID: name, Name: name, Service: name, Role: "target", Image: "img", State: r.state[name]}, nil
}
func (r *fakeRuntime) Host() docker.Host { return docker.Host{NCPU: 2, MemTotal: 1 << 30} }
func (r *fakeRuntime) Pause(_ context.Context, id string) error {
	return r.do("pause", id, func() { r.state[id] = "paused" })
}
func (r *fakeRuntime) Unpause(_ context.Context, id string) error {
	return r.do("unpause", id, func() { r.state[id] = "running" })
}
func (r *fakeRuntime) Stop(_ context.Context, id string, _ time.Duration) error {
	return r.do("stop", id, func() { r.state[id] = "exited" })
}
func (r *fakeRuntime) Start(_ context.Context, id string) error {
	return r.do("start", id, func() { r.state[id] = "running" })
}
func (r *fakeRuntime) Kill(_ context.Context, id, signal string) error {
	return r.do("kill "+signal, id, nil)
}
func (r *fakeRuntime) Restart(_ context.Context, id string, _ time.Duration) error {
	return r.do("restart", id, nil)
}
func (r *fakeRuntime) Resources(_ context.Context, id string) (docker.Resources, error) {
	return docker.Resources{}, r.do("inspect", id, nil)
}
func (r *fakeRuntime) SetCPUs(_ context.Context, id string, _ int64) error {
	return r.do("cpus", id, nil)
}
func (r *fakeRuntime) SetMemory(_ context.Context, id string, _, _ int64) error {
	return r.do("memory", id, nil)
}
func (r *fakeRuntime) CreateMarker(_ context.Context, name, _ string, labels map[string]string) (string, error) {
	err := r.do("create", name, func() { r.markers[name] = docker.Container{ID: name, Name: name, Labels: labels} })
	return name, err
}
func (r *fakeRuntime) Jobs(context.Context, string) ([]docker.Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []docker.Container
	for _, m := range r.markers {
		out = append(out, m)
	}
	return out, nil
}
func (r *fakeRuntime) Remove(_ context.Context, id string) error {
	return r.do("remove", id, func() { delete(r.markers, id) })
}
func (r *fakeRuntime) ProjectNetwork(context.Context, string) (string, error) { return "net", nil }
func (r *fakeRuntime) CreateJob(_ context.Context, j docker.JobSpec) (string, error) {
	return j.Name, r.do("create job", j.Name, nil)
}
func (r *fakeRuntime) Wait(ctx context.Context, _ string) (int64, error) {
	r.waits.Add(1)
	defer r.waits.Add(-1)
	<-ctx.Done()
	return -1, ctx.Err()
}
func (r *fakeRuntime) Logs(context.Context, string, int) (string, error) { return "", nil }
func (r *fakeRuntime) RunInNetns(context.Context, string, string, []string) (int64, string, error) {
	return 0, "", nil
}
func (r *fakeRuntime) EnsureImages(context.Context, ...string) error { return nil }
