// Package dockertest builds a throwaway compose-like project on the real
// Docker engine for tests: containers from an image built FROM scratch
// with the analyzer binary (no registry needed), labelled as compose would
// label them. Everything is removed in t.Cleanup.
package dockertest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Image is the tag of the test target image.
const Image = "dsplab-test-target:dev"

var buildOnce sync.Once
var buildErr error

// BuildImage builds Image once per test binary: the analyzer, static,
// FROM scratch. It serves /health on $PORT, which makes it a realistic
// target.
func BuildImage(t testing.TB) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dsplab-dockertest-")
		if err != nil {
			buildErr = err
			return
		}
		defer os.RemoveAll(dir)
		root, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = err
			return
		}
		build := exec.Command("go", "build", "-o", filepath.Join(dir, "analyzer"), "./services/analyzer/cmd/analyzer")
		build.Dir = filepath.Dir(strings.TrimSpace(string(root)))
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY analyzer /analyzer\nENTRYPOINT [\"/analyzer\"]\n"), 0o644)
		if out, err := exec.Command("docker", "build", "-q", "-t", Image, dir).CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("docker build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// Project is a set of containers labelled as one compose project.
type Project struct {
	Name string
	t    testing.TB
}

// NewProject returns an empty project with a unique name, cleaned up at the
// end of the test (its containers, and job containers labelled for it).
func NewProject(t testing.TB) *Project {
	t.Helper()
	BuildImage(t)
	b := make([]byte, 4)
	rand.Read(b)
	p := &Project{Name: "dsplabtest-" + hex.EncodeToString(b), t: t}
	t.Cleanup(p.removeAll)
	return p
}

// Run starts a service container (named <project>-<service>-1, as compose
// names them) with the role label.
func (p *Project) Run(service, role string) string {
	p.t.Helper()
	name := p.Name + "-" + service + "-1"
	out, err := exec.Command("docker", "run", "-d", "--name", name,
		"--label", "com.docker.compose.project="+p.Name, "--label", "com.docker.compose.service="+service,
		"--label", "dsplab.role="+role, "-e", "PORT=9001", "-e", "ANALYZER_ID="+service,
		"-e", "KAFKA_BROKERS=127.0.0.1:1", "-e", "LOG_LEVEL=error", Image).CombinedOutput()
	if err != nil {
		p.t.Fatalf("docker run %s: %v\n%s", name, err, out)
	}
	return name
}

// Inspect returns a docker inspect -f template's output for a container.
func Inspect(t testing.TB, name, format string) string {
	t.Helper()
	out, err := exec.Command("docker", "inspect", "-f", format, name).CombinedOutput()
	if err != nil {
		t.Fatalf("docker inspect %s: %v\n%s", name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// WaitState polls a container's state until it is want.
func WaitState(t testing.TB, name, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := Inspect(t, name, "{{.State.Status}}")
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s, want %s after %s", name, got, want, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Containers lists the names of containers with a label (key=value).
func Containers(t testing.TB, label string) []string {
	t.Helper()
	out, err := exec.Command("docker", "ps", "-a", "--filter", "label="+label, "--format", "{{.Names}}").CombinedOutput()
	if err != nil {
		t.Fatalf("docker ps: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

func (p *Project) removeAll() {
	for _, label := range []string{"com.docker.compose.project=" + p.Name, "dsplab.job.project=" + p.Name} {
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label="+label).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			exec.Command("docker", append([]string{"rm", "-f", "-v"}, ids...)...).Run()
		}
	}
}
