// Package docker is the platform's view of the Docker Engine, through the
// Docker Go SDK: it finds its compose project, lists the project's
// containers as targets, changes their state and resources, and keeps job
// state in container labels (dsplab.job.*).
package docker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// Label keys.
const (
	LabelProject = "com.docker.compose.project"
	LabelService = "com.docker.compose.service"
	LabelRole    = "dsplab.role"
	// Job labels: every fault and job the platform starts carries them, on
	// its own container (Pumba, k6) or on a marker container that is
	// created and never started (container faults). They are the state
	// the platform reconciles after a restart.
	LabelJobID      = "dsplab.job.id"
	LabelJobKind    = "dsplab.job.kind"
	LabelJobProject = "dsplab.job.project"
)

// ErrNotFound means no container of the project matches.
var ErrNotFound = errors.New("no such target")

// Container is one container of the project.
type Container struct {
	ID      string            `json:"id"`
	Name    string            `json:"name"`
	Service string            `json:"service"`
	Role    string            `json:"role"`
	Image   string            `json:"image"`
	State   string            `json:"state"`
	Health  string            `json:"health,omitempty"`
	IPs     map[string]string `json:"ips"`
	Labels  map[string]string `json:"-"`
}

// Resources are the CPU and memory limits of a container (0: none).
type Resources struct {
	NanoCPUs   int64 `json:"nano_cpus"`
	Memory     int64 `json:"memory"`
	MemorySwap int64 `json:"memory_swap"`
}

// Host is what the engine reports of its machine.
type Host struct {
	NCPU     int
	MemTotal int64
}

// Runtime talks to one Docker Engine on behalf of one compose project.
type Runtime struct {
	c       *client.Client
	project string
	host    Host
	images  *images // job images: see images.go
}

// New connects with the standard DOCKER_* environment and finds the
// project: project if not empty, else the com.docker.compose.project label
// of the container this process runs in.
func New(ctx context.Context, project string) (*Runtime, error) {
	c, err := client.New(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	r := &Runtime{c: c, project: project, images: newImages(c)}
	info, err := c.Info(ctx, client.InfoOptions{})
	if err != nil {
		return nil, fmt.Errorf("docker info: %w", err)
	}
	r.host = Host{NCPU: info.Info.NCPU, MemTotal: info.Info.MemTotal}
	if r.project == "" {
		r.project, err = r.ownProject(ctx)
		if err != nil {
			return nil, err
		}
	}
	return r, nil
}

// ownProject reads the compose project label of the container we run in:
// inside a container, the hostname is the container id unless overridden.
func (r *Runtime) ownProject(ctx context.Context) (string, error) {
	host, _ := os.Hostname()
	res, err := r.c.ContainerInspect(ctx, host, client.ContainerInspectOptions{})
	if err != nil {
		return "", fmt.Errorf("find own container %q to learn the compose project (set COMPOSE_PROJECT when not running in compose): %w", host, err)
	}
	p := res.Container.Config.Labels[LabelProject]
	if p == "" {
		return "", fmt.Errorf("own container %q has no %s label: set COMPOSE_PROJECT", host, LabelProject)
	}
	return p, nil
}

// Project is the compose project the platform works on.
func (r *Runtime) Project() string { return r.project }

// Host returns the engine's CPU count and memory.
func (r *Runtime) Host() Host { return r.host }

// Ping says whether the engine answers.
func (r *Runtime) Ping(ctx context.Context) error {
	_, err := r.c.Ping(ctx, client.PingOptions{})
	return err
}

// Close stops the image pulls in flight and releases the client.
func (r *Runtime) Close() error {
	r.images.close()
	return r.c.Close()
}

// Targets lists the project's containers, job containers excluded, sorted
// by service and name.
func (r *Runtime) Targets(ctx context.Context) ([]Container, error) {
	res, err := r.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", LabelProject+"="+r.project)})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var out []Container
	for _, s := range res.Items {
		if s.Labels[LabelJobID] != "" {
			continue
		}
		out = append(out, fromSummary(s))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

func fromSummary(s container.Summary) Container {
	c := Container{ID: s.ID, Service: s.Labels[LabelService], Role: s.Labels[LabelRole], Image: s.Image,
		State: string(s.State), Labels: s.Labels, IPs: map[string]string{}}
	if len(s.Names) > 0 {
		c.Name = strings.TrimPrefix(s.Names[0], "/")
	}
	if c.Service == "" {
		c.Service = c.Name
	}
	if s.Health != nil {
		c.Health = string(s.Health.Status)
	}
	if s.NetworkSettings != nil {
		for name, n := range s.NetworkSettings.Networks {
			if n != nil && n.IPAddress.IsValid() {
				c.IPs[name] = n.IPAddress.String()
			}
		}
	}
	return c
}

// Find returns the project's container for a service name or container
// name. A service with several replicas is ambiguous: name the container.
func (r *Runtime) Find(ctx context.Context, name string) (Container, error) {
	ts, err := r.Targets(ctx)
	if err != nil {
		return Container{}, err
	}
	var byService []Container
	for _, t := range ts {
		if t.Name == name {
			return t, nil
		}
		if t.Service == name {
			byService = append(byService, t)
		}
	}
	switch len(byService) {
	case 0:
		return Container{}, fmt.Errorf("%w %q in project %s", ErrNotFound, name, r.project)
	case 1:
		return byService[0], nil
	}
	return Container{}, fmt.Errorf("service %q has %d containers: name one of them", name, len(byService))
}

// Pause freezes a container's processes.
//
// runc's freeze is retried: on a busy machine it can give up with "unable
// to freeze" (it thaws the cgroup again and reports the failure), and
// runc's maintainers leave the retry to the caller (opencontainers/runc
// #4388). Seen in this project's e2e suite beside a busy process.
func (r *Runtime) Pause(ctx context.Context, id string) error {
	return retryFreeze(ctx, pauseTries, func() error {
		_, err := r.c.ContainerPause(ctx, id, client.ContainerPauseOptions{})
		return wrap("pause", id, err)
	})
}

// pauseTries bounds the attempts of a pause whose freeze runc gave up on.
const pauseTries = 5

// retryFreeze runs pause until it succeeds, fails otherwise than by a
// freeze runc gave up on, tries times have failed, or ctx ends; the waits
// between tries grow from 200 ms (200, 400, 800, 1600 ms).
func retryFreeze(ctx context.Context, tries int, pause func() error) error {
	wait := 200 * time.Millisecond
	for i := 1; ; i++ {
		err := pause()
		if err == nil || !isFreezeFailure(err) || i >= tries {
			if err != nil && isFreezeFailure(err) {
				return fmt.Errorf("%w (after %d tries)", err, i)
			}
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (after %d tries: %v)", err, i, ctx.Err())
		case <-t.C:
		}
		wait *= 2
	}
}

// isFreezeFailure tells a freeze that runc gave up on (retryable) from
// other pause errors (no such container, not running: final).
func isFreezeFailure(err error) bool {
	return strings.Contains(err.Error(), "unable to freeze")
}

// Unpause resumes a paused container; a container that is not paused is
// left alone.
func (r *Runtime) Unpause(ctx context.Context, id string) error {
	_, err := r.c.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
	if err != nil && isNotPaused(err) {
		return nil
	}
	return wrap("unpause", id, err)
}

func isNotPaused(err error) bool {
	return cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "is not paused")
}

// Stop stops a container gracefully (SIGTERM, then SIGKILL after timeout).
func (r *Runtime) Stop(ctx context.Context, id string, timeout time.Duration) error {
	secs := int(timeout.Seconds())
	_, err := r.c.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &secs})
	return wrap("stop", id, err)
}

// Start starts a stopped container; a running one is left alone.
func (r *Runtime) Start(ctx context.Context, id string) error {
	_, err := r.c.ContainerStart(ctx, id, client.ContainerStartOptions{})
	return wrap("start", id, err)
}

// Kill sends signal (default SIGKILL) to the container's main process.
func (r *Runtime) Kill(ctx context.Context, id, signal string) error {
	_, err := r.c.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: signal})
	return wrap("kill", id, err)
}

// Restart restarts a container.
func (r *Runtime) Restart(ctx context.Context, id string, timeout time.Duration) error {
	secs := int(timeout.Seconds())
	_, err := r.c.ContainerRestart(ctx, id, client.ContainerRestartOptions{Timeout: &secs})
	return wrap("restart", id, err)
}

// Resources reads a container's CPU and memory limits.
func (r *Runtime) Resources(ctx context.Context, id string) (Resources, error) {
	res, err := r.c.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return Resources{}, wrap("inspect", id, err)
	}
	h := res.Container.HostConfig
	return Resources{NanoCPUs: h.NanoCPUs, Memory: h.Memory, MemorySwap: h.MemorySwap}, nil
}

// SetCPUs sets the CPU limit in nano-CPUs. Docker cannot remove a limit
// from a running container, so 0 ("no limit") is applied as all of the
// host's CPUs, which is the same thing in effect.
func (r *Runtime) SetCPUs(ctx context.Context, id string, nanoCPUs int64) error {
	if nanoCPUs == 0 {
		nanoCPUs = int64(r.host.NCPU) * 1e9
	}
	_, err := r.c.ContainerUpdate(ctx, id, client.ContainerUpdateOptions{Resources: &container.Resources{NanoCPUs: nanoCPUs}})
	return wrap("set CPU limit of", id, err)
}

// SetMemory sets the memory limit and memory+swap limit in bytes. As with
// CPUs, 0 is applied as the host's whole memory; swap never exceeds what
// is given (or the memory limit when not given).
func (r *Runtime) SetMemory(ctx context.Context, id string, memory, memorySwap int64) error {
	if memory == 0 {
		memory = r.host.MemTotal
	}
	if memorySwap < memory {
		memorySwap = memory
	}
	_, err := r.c.ContainerUpdate(ctx, id, client.ContainerUpdateOptions{Resources: &container.Resources{Memory: memory, MemorySwap: memorySwap}})
	return wrap("set memory limit of", id, err)
}

// CreateMarker creates, and never starts, a container that holds a job's
// labels. It uses an image that is surely present: the target's own.
func (r *Runtime) CreateMarker(ctx context.Context, name, image string, labels map[string]string) (string, error) {
	labels = withProject(labels, r.project)
	res, err := r.c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       name,
		Config:     &container.Config{Image: image, Labels: labels, Entrypoint: []string{"/dsplab-fault-marker-never-started"}},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		return "", fmt.Errorf("create marker %s: %w", name, err)
	}
	return res.ID, nil
}

func withProject(labels map[string]string, project string) map[string]string {
	out := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		out[k] = v
	}
	out[LabelJobProject] = project
	return out
}

// Jobs lists the containers of this project's jobs of a kind (all kinds
// when kind is empty), with their labels.
func (r *Runtime) Jobs(ctx context.Context, kind string) ([]Container, error) {
	f := client.Filters{}.Add("label", LabelJobProject+"="+r.project)
	if kind != "" {
		f = f.Add("label", LabelJobKind+"="+kind)
	}
	res, err := r.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	out := make([]Container, 0, len(res.Items))
	for _, s := range res.Items {
		out = append(out, fromSummary(s))
	}
	return out, nil
}

// Remove force-removes a container (and its anonymous volumes); one that is
// already gone is not an error.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	_, err := r.c.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && cerrdefs.IsNotFound(err) {
		return nil
	}
	return wrap("remove", id, err)
}

func wrap(op, id string, err error) error {
	if err == nil {
		return nil
	}
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("%s %s: %w: %v", op, short(id), ErrNotFound, err)
	}
	return fmt.Errorf("%s %s: %w", op, short(id), err)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
