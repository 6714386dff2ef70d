package docker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// A nettools sidecar is made the way Pumba 1.1.7 makes its own
// (pkg/runtime/docker/sidecar.go): the container idles on
// "tail -f /dev/null" (the ENTRYPOINT of ghcr.io/alexei-led/pumba-alpine-
// nettools, set explicitly so any image with tail works), shares the
// target's network namespace with NET_ADMIN, and each tool runs in it by
// exec; the exit code is the exec's. Setting only Cmd, as this platform
// once did, makes "tc qdisc del ..." arguments of the image's tail: the
// sidecar never ends.

// sidecarRemoveTimeout bounds the forced removal, which runs on a context
// of its own so that a caller's expired deadline still removes it.
const sidecarRemoveTimeout = 15 * time.Second

// OwnNetns, as RunInNetns's target, gives the sidecar a network namespace
// of its own (network mode none: only lo), which goes with it: a probe of
// the kernel that touches no container's network.
const OwnNetns = "none"

// RunInNetns runs cmd (e.g. tc qdisc del dev eth0 root) in a sidecar of
// image in the network namespace of container target (or, with OwnNetns,
// one of its own), with NET_ADMIN, and removes the sidecar. It returns the tool's exit code and output. ctx
// bounds everything but the removal: a tool that hangs ends with ctx's
// error, and the sidecar is still removed.
func (r *Runtime) RunInNetns(ctx context.Context, target, image string, cmd []string) (int64, string, error) {
	if err := r.EnsureImages(ctx, image); err != nil {
		return -1, "", err
	}
	mode, job := container.NetworkMode("container:"+target), "cleanup"
	if target == OwnNetns {
		mode, job = container.NetworkMode(OwnNetns), "probe"
	}
	res, err := r.c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: image, Entrypoint: []string{"tail"}, Cmd: []string{"-f", "/dev/null"}, StopSignal: "SIGKILL",
			Labels: withProject(map[string]string{LabelJobKind: "nettools", LabelJobID: job, "com.gaiaadm.pumba.skip": "true"}, r.project)},
		HostConfig: &container.HostConfig{NetworkMode: mode, CapAdd: []string{"NET_ADMIN"}},
	})
	if err != nil {
		return -1, "", fmt.Errorf("create nettools sidecar for %s: %w", short(target), err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sidecarRemoveTimeout)
		defer cancel()
		r.Remove(rctx, res.ID)
	}()
	if err := r.Start(ctx, res.ID); err != nil {
		return -1, "", fmt.Errorf("start nettools sidecar for %s: %w", short(target), err)
	}
	return r.exec(ctx, res.ID, cmd)
}

// exec runs cmd in the running container id and returns its exit code and
// combined output (the first 64 KiB).
func (r *Runtime) exec(ctx context.Context, id string, cmd []string) (int64, string, error) {
	ex, err := r.c.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return -1, "", wrap("exec in", id, err)
	}
	att, err := r.c.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		return -1, "", wrap("exec in", id, err)
	}
	// The hijacked connection does not watch ctx: close it when ctx ends,
	// so that a tool that hangs does not hang its caller.
	stop := context.AfterFunc(ctx, func() { att.Close() })
	b, _ := io.ReadAll(io.LimitReader(att.Reader, 1<<16))
	att.Close()
	stop()
	out := string(bytes.TrimSpace([]byte(stripMux(b))))
	if err := ctx.Err(); err != nil {
		return -1, out, fmt.Errorf("exec %v in %s: %w", cmd, short(id), err)
	}
	insp, err := r.c.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
	if err != nil {
		return -1, out, wrap("inspect exec in", id, err)
	}
	return int64(insp.ExitCode), out, nil
}
