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

// Project is a set of containers labelled as one compose project, on a
// network of its own named <project>_dsplab, as compose names it.
type Project struct {
	Name    string
	Network string
	t       testing.TB
}

// NewProject returns an empty project with a unique name, cleaned up at the
// end of the test (its containers, and job containers labelled for it).
// The name starts with $DOCKERTEST_PREFIX (dsplabtest): several people's
// tests on one engine can each tell their own containers apart.
func NewProject(t testing.TB) *Project {
	t.Helper()
	BuildImage(t)
	b := make([]byte, 4)
	rand.Read(b)
	prefix := os.Getenv("DOCKERTEST_PREFIX")
	if prefix == "" {
		prefix = "dsplabtest"
	}
	p := &Project{Name: prefix + "-" + hex.EncodeToString(b), t: t}
	p.Network = p.Name + "_dsplab"
	t.Cleanup(p.removeAll)
	if out, err := exec.Command("docker", "network", "create", "--label", "com.docker.compose.project="+p.Name, p.Network).CombinedOutput(); err != nil {
		t.Fatalf("docker network create: %v\n%s", err, out)
	}
	return p
}

// Run starts a service container (named <project>-<service>-1, as compose
// names them) with the role label.
func (p *Project) Run(service, role string) string {
	p.t.Helper()
	return p.RunWith(service, role)
}

// RunWith is Run with more docker run options (e.g. --stop-signal).
func (p *Project) RunWith(service, role string, options ...string) string {
	p.t.Helper()
	name := p.Name + "-" + service + "-1"
	args := []string{"run", "-d", "--name", name, "--network", p.Network, "--network-alias", service,
		"--label", "com.docker.compose.project=" + p.Name, "--label", "com.docker.compose.service=" + service,
		"--label", "dsplab.role=" + role, "-e", "PORT=9001", "-e", "ANALYZER_ID=" + service,
		"-e", "KAFKA_BROKERS=127.0.0.1:1", "-e", "LOG_LEVEL=error"}
	args = append(append(args, options...), Image)
	out, err := exec.Command("docker", args...).CombinedOutput()
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
	exec.Command("docker", "network", "rm", p.Network).Run()
}

// K6Image is the tag of the test k6 image.
const K6Image = "dsplab-test-k6:dev"

var k6Once sync.Once
var k6Err error

// BuildK6Image builds K6Image FROM scratch with the static k6 of
// `make tools` (K6_BIN, or bin/tools/k6): the k6 v1.8.1 the compose stack
// pins as grafana/k6:1.8.1, which cannot be pulled here.
func BuildK6Image(t testing.TB) {
	t.Helper()
	k6Once.Do(func() {
		bin := os.Getenv("K6_BIN")
		if bin == "" {
			root, _ := exec.Command("go", "env", "GOMOD").Output()
			bin = filepath.Join(filepath.Dir(strings.TrimSpace(string(root))), "bin", "tools", "k6")
		}
		dir, err := os.MkdirTemp("", "dsplab-k6image-")
		if err != nil {
			k6Err = err
			return
		}
		defer os.RemoveAll(dir)
		b, err := os.ReadFile(bin)
		if err != nil {
			k6Err = fmt.Errorf("k6 binary (run make tools): %w", err)
			return
		}
		os.WriteFile(filepath.Join(dir, "k6"), b, 0o755)
		os.Mkdir(filepath.Join(dir, "tmp"), 0o777)
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY k6 /usr/bin/k6\nCOPY tmp /tmp\nENV HOME=/tmp\nENTRYPOINT [\"/usr/bin/k6\"]\n"), 0o644)
		if out, err := exec.Command("docker", "build", "-q", "-t", K6Image, dir).CombinedOutput(); err != nil {
			k6Err = fmt.Errorf("docker build k6: %v\n%s", err, out)
		}
	})
	if k6Err != nil {
		t.Fatal(k6Err)
	}
}

// PumbaImage is the tag of the Pumba stand-in image (pumba-standin/): the
// real ghcr.io/alexei-led/pumba cannot be pulled here and the kernel has no
// netem. NettoolsImage plays ghcr.io/alexei-led/pumba-alpine-nettools as
// Pumba and the platform use it: ENTRYPOINT ["tail","-f","/dev/null"], and
// tc and iptables run by exec in it (the stand-in under those names: it
// prints the command and succeeds). NettoolsHangImage is the same with
// tools that never return, for a cleanup that hangs.
const (
	PumbaImage        = "dsplab-test-pumba-standin:dev"
	NettoolsImage     = "dsplab-test-nettools-standin:dev"
	NettoolsHangImage = "dsplab-test-nettools-hang:dev"
)

var pumbaOnce sync.Once
var pumbaErr error

// BuildPumbaImage builds PumbaImage, NettoolsImage and NettoolsHangImage
// FROM scratch from pumba-standin.
func BuildPumbaImage(t testing.TB) {
	t.Helper()
	pumbaOnce.Do(func() { pumbaErr = buildPumbaImages() })
	if pumbaErr != nil {
		t.Fatal(pumbaErr)
	}
}

func buildPumbaImages() error {
	dir, err := os.MkdirTemp("", "dsplab-pumba-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "sbin"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	root, _ := exec.Command("go", "env", "GOMOD").Output()
	build := exec.Command("go", "build", "-o", filepath.Join(rootfs, "pumba"), "./pumba-standin/cmd/pumba-standin")
	build.Dir = filepath.Dir(strings.TrimSpace(string(root)))
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build pumba-standin: %v\n%s", err, out)
	}
	// The stand-in is a multi-call binary: run as tail it idles, as tc or
	// iptables it plays the tool.
	for _, l := range []string{"bin/tail", "sbin/tc", "sbin/iptables"} {
		if err := os.Symlink("/pumba", filepath.Join(rootfs, l)); err != nil {
			return err
		}
	}
	images := []struct{ tag, dockerfile string }{
		{PumbaImage, "FROM scratch\nCOPY rootfs /\nENTRYPOINT [\"/pumba\"]\n"},
		{NettoolsImage, "FROM scratch\nCOPY rootfs /\nENV PATH=/sbin:/bin\nENTRYPOINT [\"tail\", \"-f\", \"/dev/null\"]\n"},
		{NettoolsHangImage, "FROM scratch\nCOPY rootfs /\nENV PATH=/sbin:/bin PUMBA_STANDIN_TOOLS=hang\nENTRYPOINT [\"tail\", \"-f\", \"/dev/null\"]\n"},
	}
	for _, img := range images {
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(img.dockerfile), 0o644)
		if out, err := exec.Command("docker", "build", "-q", "-t", img.tag, dir).CombinedOutput(); err != nil {
			return fmt.Errorf("docker build %s: %v\n%s", img.tag, err, out)
		}
	}
	return nil
}

// NettoolsTcImage is a nettools image whose tc is Debian's own (the host's
// /usr/sbin/tc, iproute2, with its libraries), the stand-in as its tail:
// what tc answers in it is what the engine's kernel says.
const NettoolsTcImage = "dsplab-test-nettools-tc:dev"

var tcOnce sync.Once
var tcErr error

// BuildNettoolsTcImage builds NettoolsTcImage (after PumbaImage's build,
// for the stand-in binary). It needs the host's tc (Debian's iproute2).
func BuildNettoolsTcImage(t testing.TB) {
	t.Helper()
	BuildPumbaImage(t)
	tcOnce.Do(func() { tcErr = buildNettoolsTcImage() })
	if tcErr != nil {
		t.Fatal(tcErr)
	}
}

func buildNettoolsTcImage() error {
	tc, err := exec.LookPath("tc")
	if err != nil {
		return fmt.Errorf("the host's tc (Debian's iproute2) is needed for %s: %w", NettoolsTcImage, err)
	}
	dir, err := os.MkdirTemp("", "dsplab-nettools-tc-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rootfs := filepath.Join(dir, "rootfs")
	// The stand-in (for tail) comes out of its image; tc and each library
	// ldd names go in at their paths.
	script := `set -e
id=$(docker create ` + PumbaImage + `)
trap 'docker rm -f "$id" >/dev/null' EXIT
mkdir -p "$1/bin"
docker cp "$id:/pumba" "$1/pumba"
ln -s /pumba "$1/bin/tail"
cp --parents -L "$2" "$1/"
ldd "$2" | grep -o '/[^ ]*' | while read -r lib; do cp --parents -L -n "$lib" "$1/"; done
cp -r --parents /usr/lib/x86_64-linux-gnu/tc "$1/" 2>/dev/null || true
`
	if out, err := exec.Command("bash", "-c", script, "build", rootfs, tc).CombinedOutput(); err != nil {
		return fmt.Errorf("lay out %s: %v\n%s", NettoolsTcImage, err, out)
	}
	df := "FROM scratch\nCOPY rootfs /\nENV PATH=/usr/sbin:/usr/bin:/sbin:/bin\nENTRYPOINT [\"tail\", \"-f\", \"/dev/null\"]\n"
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644)
	if out, err := exec.Command("docker", "build", "-q", "-t", NettoolsTcImage, dir).CombinedOutput(); err != nil {
		return fmt.Errorf("docker build %s: %v\n%s", NettoolsTcImage, err, out)
	}
	return nil
}
