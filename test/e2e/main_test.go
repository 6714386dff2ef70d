//go:build e2e

// Package e2e runs the workshop story on the real Docker engine: the real
// docker-compose.yml plus test/e2e/docker-compose.e2e.yml (the only
// difference: locally built images, see test/e2e/README.md), driven through the
// platform API only, observed through the distributor's /metrics, the real
// Prometheus and Alertmanager, and the platform's webhook.
//
//	make e2e    # builds the images (test/e2e/images.sh), then go test -tags e2e ./test/e2e/
//
// E2E_REUSE=1 runs against a stack already up (make e2e-up) and leaves it.
// Otherwise TestMain starts the stack and always tears it down, and fails the run if
// a container, network or volume of the project is left behind. Artifacts
// (compose logs, the Swagger UI screenshot, the experiment report) go to
// test/e2e/artifacts/.
package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	project      = "dsplab"
	platformURL  = "http://127.0.0.1:5050"
	distribURL   = "http://127.0.0.1:8080"
	promURL      = "http://127.0.0.1:9090"
	alertmgrURL  = "http://127.0.0.1:9093"
	grafanaURL   = "http://127.0.0.1:3000"
	tempoMetrics = "http://127.0.0.1:8888/metrics"
	demoURL      = "http://127.0.0.1:10001"
)

var (
	root      string
	artifacts string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	wd, _ := os.Getwd()
	root = filepath.Dir(filepath.Dir(wd)) // test/e2e → the repository
	artifacts = filepath.Join(wd, "artifacts")
	os.MkdirAll(artifacts, 0o755)
	if os.Getenv("E2E_REUSE") != "" {
		// Developing a test: use the stack `make e2e-up` started, leave it up.
		if err := waitHealthy(time.Minute); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}
	teardown() // whatever an earlier run left
	start := time.Now()
	if out, err := compose("up", "-d", "--no-build"); err != nil {
		fmt.Fprintf(os.Stderr, "compose up: %v\n%s", err, out)
		saveLogs()
		teardown()
		return 1
	}
	defer func() {
		saveLogs()
		teardown()
		if left := leftovers(); left != "" {
			fmt.Fprintln(os.Stderr, "teardown left:", left)
			code = 1
		} else {
			fmt.Println("teardown: no container, network or volume of the project left")
		}
	}()
	if err := waitHealthy(3 * time.Minute); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("stack healthy %s after compose up\n", time.Since(start).Round(time.Millisecond))
	code = m.Run()
	failures.print()
	return code
}

// failures are the experiments that did not pass, with their reasons and
// timelines, printed again after the last test: a log cut to its tail (CI
// shows only that) then still says why, whichever test it was.
var failures failureLog

type failureLog struct {
	mu    sync.Mutex
	lines []string
}

func (f *failureLog) add(format string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lines = append(f.lines, fmt.Sprintf(format, a...))
}

func (f *failureLog) print() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.lines) == 0 {
		return
	}
	fmt.Printf("\n%d experiment(s) did not pass:\n", len(f.lines))
	for _, l := range f.lines {
		fmt.Println(l)
	}
}

// compose runs docker-compose with the real file and the e2e override
// (E2E_COMPOSE, set by make e2e, may name another compose command).
func compose(args ...string) ([]byte, error) {
	base := strings.Fields(os.Getenv("E2E_COMPOSE"))
	if len(base) == 0 {
		base = []string{"docker-compose", "-f", "docker-compose.yml", "-f", "test/e2e/docker-compose.e2e.yml"}
	}
	cmd := exec.Command(base[0], append(base[1:], args...)...)
	cmd.Dir = root
	return cmd.CombinedOutput()
}

func docker(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// waitHealthy waits until every container of the project that has a
// health check reports healthy and the platform answers.
func waitHealthy(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		out, _ := docker("ps", "-a", "--filter", "label=com.docker.compose.project="+project, "--format", "{{.Names}} {{.Status}}")
		lines := strings.Split(out, "\n")
		var waiting []string
		for _, l := range lines {
			name, status, _ := strings.Cut(l, " ")
			if !strings.HasPrefix(status, "Up") || strings.Contains(status, "health:") || strings.Contains(status, "unhealthy") {
				waiting = append(waiting, name+" "+status)
			}
		}
		if len(lines) >= 13 && len(waiting) == 0 {
			if resp, err := http.Get(platformURL + "/health"); err == nil {
				resp.Body.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stack not healthy after %s: %v", within, waiting)
		}
		time.Sleep(time.Second)
	}
}

func saveLogs() {
	out, _ := compose("logs", "--no-color", "--timestamps")
	os.WriteFile(filepath.Join(artifacts, "compose.log"), out, 0o644)
}

// teardown removes the project: the platform's job containers (k6, Pumba,
// fault markers) carry the project's label and go as orphans.
func teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if ids, _ := docker("ps", "-aq", "--filter", "label=com.docker.compose.project="+project); ids != "" {
		exec.CommandContext(ctx, "docker", append([]string{"rm", "-f"}, strings.Fields(ids)...)...).Run()
	}
	compose("down", "-v", "--remove-orphans", "--timeout", "5")
}

func leftovers() string {
	var left []string
	if ids, _ := docker("ps", "-aq", "--filter", "label=com.docker.compose.project="+project); ids != "" {
		left = append(left, "containers "+strings.Join(strings.Fields(ids), " "))
	}
	if n, _ := docker("network", "ls", "-q", "--filter", "name=^"+project+"$"); n != "" {
		left = append(left, "network "+project)
	}
	if v, _ := docker("volume", "ls", "-q", "--filter", "label=com.docker.compose.project="+project); v != "" {
		left = append(left, "volumes "+strings.Join(strings.Fields(v), " "))
	}
	return strings.Join(left, "; ")
}
