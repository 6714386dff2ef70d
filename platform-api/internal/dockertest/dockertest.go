// Package dockertest builds a throwaway compose-like project on the real
// Docker engine for tests, with testcontainers-go: images built FROM
// scratch from the project's own binaries (no registry is needed, nor
// reachable on the machines this is built on), a network and containers
// labelled as compose labels them, started with a wait strategy and
// removed in t.Cleanup.
//
// Ryuk, testcontainers' reaper, is disabled (its image cannot be pulled
// here): every container and network is removed by t.Cleanup instead, and
// so are the job containers the platform under test starts for a project.
package dockertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	mobynet "github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

func init() {
	// Before testcontainers reads its configuration (once, at first use).
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	// The engine is on this host and ports are published on 127.0.0.1.
	// Without this, testcontainers sees /.dockerenv (the machines this is
	// built on are containers themselves) and waits on the bridge
	// gateway's address instead of loopback.
	if os.Getenv("TESTCONTAINERS_HOST_OVERRIDE") == "" {
		os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "localhost")
	}
}

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
		if buildErr = goBuild(filepath.Join(dir, "analyzer"), "./services/analyzer/cmd/analyzer"); buildErr != nil {
			return
		}
		buildErr = buildImage(dir, "FROM scratch\nCOPY analyzer /analyzer\nENTRYPOINT [\"/analyzer\"]\n", Image)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// goBuild builds a static binary of the module's package pkg into out.
func goBuild(out, pkg string) error {
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return err
	}
	build := exec.Command("go", "build", "-o", out, pkg)
	build.Dir = filepath.Dir(strings.TrimSpace(string(root)))
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// buildImage writes dockerfile into the build context dir and builds it
// as tag through testcontainers (the engine's build API; FROM scratch
// needs no registry). The image is kept for the rest of the test binary.
func buildImage(dir, dockerfile, tag string) error {
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	repo, version, _ := strings.Cut(tag, ":")
	provider, err := testcontainers.NewDockerProvider()
	if err != nil {
		return fmt.Errorf("docker provider: %w", err)
	}
	defer provider.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req := &testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
		Context: dir, Repo: repo, Tag: version, KeepImage: true}}
	if _, err := provider.BuildImage(ctx, req); err != nil {
		return fmt.Errorf("build %s: %w", tag, err)
	}
	return nil
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
	// network.New names networks with a UUID; the platform finds a
	// project's network by compose's name, so the named request it wraps.
	//nolint:staticcheck // GenericNetwork is the only way to name the network.
	nw, err := testcontainers.GenericNetwork(context.Background(), testcontainers.GenericNetworkRequest{
		NetworkRequest: testcontainers.NetworkRequest{Name: p.Network, Driver: "bridge",
			Labels: map[string]string{"com.docker.compose.project": p.Name}}})
	testcontainers.CleanupNetwork(t, nw)
	if err != nil {
		t.Fatalf("create network %s: %v", p.Network, err)
	}
	// Cleanups run last first: the containers Run started, then the
	// platform's job containers, then the network.
	t.Cleanup(p.removeJobs)
	return p
}

// Run starts a service container (named <project>-<service>-1, as compose
// names them) with the role label, and waits until it serves HTTP.
func (p *Project) Run(service, role string) string {
	p.t.Helper()
	return p.RunWith(service, role)
}

// RunWith is Run with more testcontainers options (e.g. StopSignal).
func (p *Project) RunWith(service, role string, opts ...testcontainers.ContainerCustomizer) string {
	p.t.Helper()
	name := p.Name + "-" + service + "-1"
	base := []testcontainers.ContainerCustomizer{
		testcontainers.WithName(name),
		tcnetwork.WithNetworkName([]string{service}, p.Network),
		testcontainers.WithLabels(map[string]string{"com.docker.compose.project": p.Name,
			"com.docker.compose.service": service, "dsplab.role": role}),
		testcontainers.WithEnv(map[string]string{"PORT": "9001", "ANALYZER_ID": service,
			"KAFKA_BROKERS": "127.0.0.1:1", "LOG_LEVEL": "error"}),
		// Published on loopback only, for the wait strategy: the target is
		// up once its HTTP server answers (any status: it has no Kafka).
		testcontainers.WithExposedPorts("9001/tcp"),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = mobynet.PortMap{mobynet.MustParsePort("9001/tcp"): {{HostIP: netip.MustParseAddr("127.0.0.1")}}}
		}),
		testcontainers.WithWaitStrategyAndDeadline(60*time.Second, wait.ForHTTP("/health").WithPort("9001/tcp").
			WithStatusCodeMatcher(func(int) bool { return true }).WithPollInterval(50*time.Millisecond)),
	}
	ctr, err := testcontainers.Run(context.Background(), Image, append(base, opts...)...)
	testcontainers.CleanupContainer(p.t, ctr)
	if err != nil {
		p.t.Fatalf("run %s: %v", name, err)
	}
	return name
}

// StopSignal makes the container's stop signal sig (docker run
// --stop-signal): a Go program ignores SIGUSR1, so a stop takes the full
// stop timeout.
func StopSignal(sig string) testcontainers.ContainerCustomizer {
	return testcontainers.WithConfigModifier(func(c *container.Config) { c.StopSignal = sig })
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

// WaitState polls a container's state until it is want: for the state
// changes the platform under test makes (testcontainers' wait strategies
// are for a container's start).
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

// removeJobs removes what the platform under test started for the
// project (k6 jobs, Pumba jobs and their sidecars, labelled
// dsplab.job.project) and anything else left with the project's label:
// testcontainers only knows the containers it started.
func (p *Project) removeJobs() {
	for _, label := range []string{"com.docker.compose.project=" + p.Name, "dsplab.job.project=" + p.Name} {
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label="+label).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			exec.Command("docker", append([]string{"rm", "-f", "-v"}, ids...)...).Run()
		}
	}
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
		k6Err = buildImage(dir, "FROM scratch\nCOPY k6 /usr/bin/k6\nCOPY tmp /tmp\nENV HOME=/tmp\nENTRYPOINT [\"/usr/bin/k6\"]\n", K6Image)
	})
	if k6Err != nil {
		t.Fatal(k6Err)
	}
}

// PumbaImage is the tag of the Pumba stand-in image (test/standins/pumba/): the
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
// FROM scratch from test/standins/pumba.
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
	if err := goBuild(filepath.Join(rootfs, "pumba"), "./test/standins/pumba/cmd/pumba-standin"); err != nil {
		return err
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
		if err := buildImage(dir, img.dockerfile, img.tag); err != nil {
			return err
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
