package integration

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/dsplab/dsplab/internal/devstack"
)

// The real Prometheus (Debian's, the one the e2e stack runs) started with
// the compose file's own flags: a page in the user's browser posts
// POST /-/quit as a cross-site form would. With --web.enable-lifecycle
// (which the stack had) Prometheus stops; without it the route answers
// 403 and Prometheus stays up. The admin API stays off too.
func TestABrowserPageCannotStopTheStacksPrometheus(t *testing.T) {
	bin := devstack.Command(t, "prometheus", "prometheus")
	var compose struct {
		Services map[string]struct {
			Command []string `yaml:"command"`
		} `yaml:"services"`
	}
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docker-compose.yml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &compose))
	flags := compose.Services["prometheus"].Command
	require.NotEmpty(t, flags)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("global: {scrape_interval: 5s}\n"), 0o644))
	port := devstack.FreePort(t)
	var args []string
	for _, f := range flags {
		switch {
		case strings.HasPrefix(f, "--config.file="):
			f = "--config.file=" + cfg
		case strings.HasPrefix(f, "--storage.tsdb.path="):
			f = "--storage.tsdb.path=" + filepath.Join(dir, "data")
		}
		args = append(args, f)
	}
	args = append(args, "--web.listen-address=127.0.0.1:"+strconv.Itoa(port))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() { cmd.Process.Kill(); <-exited }()
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	devstack.Eventually(t, time.Minute, func() bool {
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "prometheus ready: %s", &logs)

	for _, path := range []string{"/-/quit", "/-/reload", "/api/v1/admin/tsdb/snapshot"} {
		req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader("x=1"))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "http://evil.example")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.NotEqual(t, http.StatusOK, resp.StatusCode, "%s is off", path)
	}
	select {
	case <-exited:
		t.Fatalf("a cross-site POST stopped Prometheus:\n%s", logs.String())
	case <-time.After(2 * time.Second):
	}
	resp, err := http.Get(base + "/-/ready")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "still serving")
}
