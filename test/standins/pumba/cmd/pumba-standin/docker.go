package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// target is a container chaos applies to.
type target struct{ ID, Name string }

// runtime is what the stand-in needs of the engine (a fake in tests).
type runtime interface {
	// List returns the running containers matching names (or pattern),
	// with every label, at most limit of them (0: all).
	List(ctx context.Context, names []string, pattern string, labels []string, limit int) ([]target, error)
	// Sidecar runs tool with each args in a sidecar sharing t's network
	// namespace, as Pumba's runSidecar does.
	Sidecar(ctx context.Context, t target, image string, pull bool, tool string, argsList [][]string, out io.Writer) error
	Close() error
}

// cleanupTimeout bounds the removal of rules after the hold (Pumba's).
const cleanupTimeout = 30 * time.Second

func randN(n int) int { return rand.IntN(n) }

type dockerRuntime struct{ c *client.Client }

func newDockerRuntime() (*dockerRuntime, error) {
	c, err := client.New(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
	}
	return &dockerRuntime{c: c}, nil
}

func (d *dockerRuntime) Close() error { return d.c.Close() }

// List filters as Pumba's container filter does: containers labelled
// com.gaiaadm.pumba or com.gaiaadm.pumba.skip (Pumba and its sidecars)
// are never targets; names match a name or a full ID; a pattern that does
// not compile matches nothing.
func (d *dockerRuntime) List(ctx context.Context, names []string, pattern string, labels []string, limit int) ([]target, error) {
	f := client.Filters{}
	for _, l := range labels {
		f = f.Add("label", l)
	}
	res, err := d.c.ContainerList(ctx, client.ContainerListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("failed to list containers: %w", err)
	}
	re, reErr := regexp.Compile(pattern)
	var out []target
	for _, s := range res.Items {
		if s.Labels["com.gaiaadm.pumba"] == "true" || s.Labels["com.gaiaadm.pumba.skip"] == "true" {
			continue
		}
		name := ""
		if len(s.Names) > 0 {
			name = strings.TrimPrefix(s.Names[0], "/")
		}
		ok := false
		if len(names) > 0 {
			ok = slices.Contains(names, name) || slices.Contains(names, s.ID)
		} else {
			ok = reErr == nil && re.MatchString(name)
		}
		if ok {
			out = append(out, target{ID: s.ID, Name: name})
		}
	}
	if limit > 0 && len(out) > limit {
		rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		out = out[:limit]
	}
	return out, nil
}

// Sidecar is Pumba 1.1.7's runSidecar: a container of image with
// entrypoint tail -f /dev/null, StopSignal SIGKILL, NET_ADMIN and the
// target's network namespace; each command run in it by exec, its exit
// code checked; the container force-removed whatever happens.
func (d *dockerRuntime) Sidecar(ctx context.Context, t target, image string, pull bool, tool string, argsList [][]string, out io.Writer) error {
	if pull {
		r, err := d.c.ImagePull(ctx, image, client.ImagePullOptions{})
		if err != nil {
			return fmt.Errorf("failed to pull %s-img: %w", tool, err)
		}
		io.Copy(io.Discard, r)
		r.Close()
	}
	res, err := d.c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: image, Entrypoint: []string{"tail"}, Cmd: []string{"-f", "/dev/null"}, StopSignal: "SIGKILL",
			Labels: map[string]string{"com.gaiaadm.pumba.skip": "true"}},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode("container:" + t.ID), CapAdd: []string{"NET_ADMIN"}},
	})
	if err != nil {
		return fmt.Errorf("failed to create %s-container from image %q: %w", tool, image, err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		d.c.ContainerRemove(rctx, res.ID, client.ContainerRemoveOptions{Force: true})
	}()
	if _, err := d.c.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("failed to start %s-container: %w", tool, err)
	}
	for _, args := range argsList {
		code, output, err := d.exec(ctx, res.ID, append([]string{tool}, args...))
		fmt.Fprintf(out, "[%s] via %s: %s %s (exit %d) %s\n", t.Name, image, tool, strings.Join(args, " "), code, output)
		if err != nil {
			return fmt.Errorf("error running %s command on container: %v: %w", tool, strings.Join(args, " "), err)
		}
		if code != 0 {
			return fmt.Errorf("error running %s command on container: %v: %s %s failed with exit code %d", tool, strings.Join(args, " "), tool, strings.Join(args, " "), code)
		}
	}
	return nil
}

func (d *dockerRuntime) exec(ctx context.Context, id string, cmd []string) (int, string, error) {
	ex, err := d.c.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return -1, "", fmt.Errorf("failed to create exec: %w", err)
	}
	att, err := d.c.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		return -1, "", fmt.Errorf("failed to start exec: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { att.Close() })
	b, _ := io.ReadAll(io.LimitReader(att.Reader, 1<<16))
	att.Close()
	stop()
	if err := ctx.Err(); err != nil {
		return -1, "", err
	}
	insp, err := d.c.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
	if err != nil {
		return -1, "", fmt.Errorf("failed to inspect exec: %w", err)
	}
	return insp.ExitCode, strings.TrimSpace(stripHeaders(b)), nil
}

// stripHeaders removes the 8-byte stream headers of a non-TTY stream.
func stripHeaders(b []byte) string {
	var out strings.Builder
	for len(b) >= 8 && (b[0] == 1 || b[0] == 2) && b[1] == 0 && b[2] == 0 && b[3] == 0 {
		n := min(int(b[4])<<24|int(b[5])<<16|int(b[6])<<8|int(b[7]), len(b)-8)
		out.Write(b[8 : 8+n])
		b = b[8+n:]
	}
	out.Write(b)
	return out.String()
}
