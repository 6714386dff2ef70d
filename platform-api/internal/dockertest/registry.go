package dockertest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsplab/dsplab/internal/devstack"
)

// Registry is a real Docker Distribution registry (the `registry` command
// of github.com/distribution/distribution/v3, built by `make tools`) on
// 127.0.0.1:<free port>, storing in a temporary directory. The engine runs
// on this host and trusts 127.0.0.0/8 registries without TLS, so images
// named Addr/... are pushed and pulled over plain HTTP.
type Registry struct {
	Addr string
	t    testing.TB
	bin  string
	cfg  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *strings.Builder
}

// registryBin finds the registry binary: REGISTRY_BIN, or bin/tools/registry
// of the module. Missing, the test fails in CI (CI=true) and is skipped
// elsewhere, saying how to build it.
func registryBin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("REGISTRY_BIN")
	if bin == "" {
		root, _ := exec.Command("go", "env", "GOMOD").Output()
		bin = filepath.Join(filepath.Dir(strings.TrimSpace(string(root))), "bin", "tools", "registry")
	}
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("the Distribution registry binary is missing (%v): run `make tools` or set REGISTRY_BIN", err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// StartRegistry starts a registry, stopped at the end of the test.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	dir := t.TempDir()
	r := &Registry{t: t, bin: registryBin(t), Addr: "127.0.0.1:" + strconv.Itoa(devstack.FreePort(t)), cfg: filepath.Join(dir, "config.yml")}
	cfg := "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: " + filepath.Join(dir, "data") +
		"\n  delete:\n    enabled: true\nhttp:\n  addr: " + r.Addr + "\n"
	if err := os.WriteFile(r.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Start (re)starts the registry process on Addr and waits until /v2/
// answers.
func (r *Registry) Start() {
	r.t.Helper()
	r.mu.Lock()
	r.logs = &strings.Builder{}
	r.cmd = exec.Command(r.bin, "serve", r.cfg)
	// Tracing off: the registry would export spans to an OTLP endpoint.
	r.cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true")
	r.cmd.Stdout, r.cmd.Stderr = &lockedWriter{mu: &r.mu, b: r.logs}, &lockedWriter{mu: &r.mu, b: r.logs}
	err := r.cmd.Start()
	r.mu.Unlock()
	if err != nil {
		r.t.Fatalf("start registry: %v", err)
	}
	devstack.Eventually(r.t, 20*time.Second, func() bool {
		resp, err := http.Get("http://" + r.Addr + "/v2/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}, "registry on %s did not come up: %s", r.Addr, r)
}

// Stop kills the registry (its storage stays, for a restart).
func (r *Registry) Stop() {
	r.mu.Lock()
	cmd := r.cmd
	r.cmd = nil
	r.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		cmd.Process.Kill()
		cmd.Wait()
	}
}

// String is the registry's output so far.
func (r *Registry) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// Push builds an image FROM base with one layer of its own (2 MB of
// random bytes, so a pull downloads something), tags it <Addr>/<repo>:<random tag>,
// pushes it, and removes it from the engine: the engine has base but not
// the returned reference, which only a pull from this registry brings
// back. The reference is removed from the engine at the end of the test.
func (r *Registry) Push(base, repo string) string {
	r.t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	ref := r.Addr + "/" + repo + ":" + hex.EncodeToString(b)
	dir := r.t.TempDir()
	pad := make([]byte, 2<<20)
	rand.Read(pad)
	os.WriteFile(filepath.Join(dir, "pad"), pad, 0o644)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+base+"\nCOPY pad /dsplab-pad\n"), 0o644)
	for _, args := range [][]string{{"build", "-q", "-t", ref, dir}, {"push", "-q", ref}, {"rmi", ref}} {
		if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil {
			r.t.Fatalf("docker %s: %v\n%s\nregistry: %s", args[0], err, out, r)
		}
	}
	r.t.Cleanup(func() { exec.Command("docker", "rmi", "-f", ref).Run() })
	return ref
}

// HasImage says whether the engine has an image.
func HasImage(ref string) bool {
	return exec.Command("docker", "image", "inspect", ref).Run() == nil
}
