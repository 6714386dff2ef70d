package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// JobSpec describes a job container (a k6 run, a Pumba command).
type JobSpec struct {
	Name    string
	Image   string
	Cmd     []string
	Env     []string
	Labels  map[string]string
	Network string // joined at creation, so the job reaches services by name
	// StopTimeout is how long a stop waits after SIGTERM before SIGKILL.
	StopTimeout int
	// Binds are bind mounts: only the Docker socket for Pumba, which
	// resolves on the engine's host whether or not the platform runs in a
	// container.
	Binds []string
	// Images are other images the job needs on the engine: Pumba runs its
	// nettools image with --pull-image=false.
	Images []string
}

// CreateJob creates (does not start) a job container, once its images are
// on the engine (EnsureImages: nothing is created when one is missing).
func (r *Runtime) CreateJob(ctx context.Context, j JobSpec) (string, error) {
	if err := r.EnsureImages(ctx, append([]string{j.Image}, j.Images...)...); err != nil {
		return "", err
	}
	stop := j.StopTimeout
	cfg := &container.Config{Image: j.Image, Cmd: j.Cmd, Env: j.Env, Labels: withProject(j.Labels, r.project), StopTimeout: &stop}
	host := &container.HostConfig{Binds: j.Binds}
	var netCfg *network.NetworkingConfig
	if j.Network != "" {
		host.NetworkMode = container.NetworkMode(j.Network)
		netCfg = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{j.Network: {}}}
	}
	res, err := r.c.ContainerCreate(ctx, client.ContainerCreateOptions{Name: j.Name, Config: cfg, HostConfig: host, NetworkingConfig: netCfg})
	if err != nil {
		return "", fmt.Errorf("create job %s: %w", j.Name, err)
	}
	return res.ID, nil
}

// CopyDir copies the directory src into the container as dest (an
// absolute path), before the container starts: no host bind mount, so it
// works when the platform itself runs in a container.
func (r *Runtime) CopyDir(ctx context.Context, id, src, dest string) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	prefix := strings.TrimPrefix(dest, "/")
	var paths []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		name := filepath.ToSlash(filepath.Join(prefix, rel))
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = name, 0, 0, "", ""
		if info.IsDir() {
			hdr.Name += "/"
			hdr.Mode = 0o755
		} else {
			hdr.Mode = 0o644
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			tw.Write(b)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	_, err = r.c.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf})
	return wrap("copy "+src+" into", id, err)
}

// ReadFile copies one file out of a container (running or exited).
func (r *Runtime) ReadFile(ctx context.Context, id, path string, limit int64) ([]byte, error) {
	res, err := r.c.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		return nil, wrap("read "+path+" from", id, err)
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	if _, err := tr.Next(); err != nil {
		return nil, fmt.Errorf("read %s from %s: %w", path, short(id), err)
	}
	return io.ReadAll(io.LimitReader(tr, limit))
}

// Wait blocks until the container is not running and returns its exit code.
func (r *Runtime) Wait(ctx context.Context, id string) (int64, error) {
	res := r.c.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case w := <-res.Result:
		if w.Error != nil {
			return w.StatusCode, fmt.Errorf("wait %s: %s", short(id), w.Error.Message)
		}
		return w.StatusCode, nil
	case err := <-res.Error:
		return -1, wrap("wait", id, err)
	}
}

// Logs returns the last lines of a container's output.
func (r *Runtime) Logs(ctx context.Context, id string, lines int) (string, error) {
	res, err := r.c.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(lines)})
	if err != nil {
		return "", wrap("logs of", id, err)
	}
	defer res.Close()
	b, _ := io.ReadAll(io.LimitReader(res, 1<<20))
	return stripMux(b), nil
}

// stripMux removes the 8-byte stream headers of a non-TTY log stream.
func stripMux(b []byte) string {
	var out strings.Builder
	for len(b) >= 8 && (b[0] == 1 || b[0] == 2) && b[1] == 0 && b[2] == 0 && b[3] == 0 {
		n := int(b[4])<<24 | int(b[5])<<16 | int(b[6])<<8 | int(b[7])
		b = b[8:]
		if n > len(b) {
			n = len(b)
		}
		out.Write(b[:n])
		b = b[n:]
	}
	out.Write(b)
	return out.String()
}

// ProjectNetwork returns the network job containers join: name if given,
// else the compose project's network (the one named "dsplab" or ending in
// "_dsplab" when there are several).
func (r *Runtime) ProjectNetwork(ctx context.Context, name string) (string, error) {
	if name != "" {
		return name, nil
	}
	res, err := r.c.NetworkList(ctx, client.NetworkListOptions{Filters: client.Filters{}.Add("label", LabelProject+"="+r.project)})
	if err != nil {
		return "", fmt.Errorf("list networks: %w", err)
	}
	var names []string
	for _, n := range res.Items {
		names = append(names, n.Name)
	}
	sort.Strings(names)
	for _, n := range names {
		if n == "dsplab" || strings.HasSuffix(n, "_dsplab") {
			return n, nil
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("project %s has no network: set STACK_NETWORK", r.project)
	}
	return names[0], nil
}
