package app

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/devstack"
	"github.com/dsplab/dsplab/platform-api/internal/dockertest"
)

// The real platform-api binary against the real Docker engine.

func buildPlatform(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "platform-api")
	root, err := exec.Command("go", "env", "GOMOD").Output()
	require.NoError(t, err)
	cmd := exec.Command("go", "build", "-o", out, "./platform-api/cmd/platform-api")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(root)))
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, string(b))
	return out
}

type platform struct {
	t    *testing.T
	bin  string
	env  []string
	url  string
	cmd  *exec.Cmd
	logs strings.Builder
}

func (p *platform) start() {
	p.t.Helper()
	// The platform pulls its job images at start-up: a test that left one
	// at its default (grafana/k6, ghcr.io/...) would make the engine reach
	// a public registry. Every test names its images (local, or in the
	// test's own registry on 127.0.0.1).
	for _, k := range []string{"K6_IMAGE=", "PUMBA_IMAGE=", "PUMBA_NETTOOLS_IMAGE="} {
		if !slices.ContainsFunc(p.env, func(e string) bool { return strings.HasPrefix(e, k) }) {
			p.t.Fatalf("the test must set %s to a local image: the platform would pull the default from a public registry", strings.TrimSuffix(k, "="))
		}
	}
	p.cmd = exec.Command(p.bin)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.logs, &p.logs
	require.NoError(p.t, p.cmd.Start())
	devstack.Eventually(p.t, 20*time.Second, func() bool {
		resp, err := http.Get(p.url + "/health")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}, "platform-api did not come up:\n%s", &p.logs)
}

func (p *platform) post(path, body string) (int, map[string]any) {
	resp, err := http.Post(p.url+path, "application/json", strings.NewReader(body))
	require.NoError(p.t, err)
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (p *platform) get(path string) string {
	resp, err := http.Get(p.url + path)
	require.NoError(p.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func repoDir(t *testing.T, name string) string {
	root, err := exec.Command("go", "env", "GOMOD").Output()
	require.NoError(t, err)
	return filepath.Join(filepath.Dir(strings.TrimSpace(string(root))), name)
}

func TestAKilledPlatformLeavesNoFaultBehindAfterItRestarts(t *testing.T) {
	proj := dockertest.NewProject(t)
	a1 := proj.Run("analyzer-1", "target")
	a2 := proj.Run("analyzer-2", "target")
	port := devstack.FreePort(t)
	p := &platform{t: t, bin: buildPlatform(t), url: "http://127.0.0.1:" + strconv.Itoa(port),
		env: append([]string{"COMPOSE_PROJECT=" + proj.Name, "PORT=" + strconv.Itoa(port), "LOG_LEVEL=warn", "EXPERIMENTS_DIR=" + repoDir(t, "experiments")},
			localJobImages(dockertest.Image)...)}
	p.start()
	require.Contains(t, p.get("/api/experiments/presets"), `"name":"analyzer-crash"`, "presets are loaded from EXPERIMENTS_DIR")

	pausedAt := time.Now()
	code, f := p.post("/api/faults", `{"type":"pause","target":"analyzer-1","durationSeconds":5}`)
	require.Equal(t, http.StatusCreated, code, f)
	code, f = p.post("/api/faults", `{"type":"cpu","target":"analyzer-2","durationSeconds":120,"cpus":0.3}`)
	require.Equal(t, http.StatusCreated, code, f)
	require.Equal(t, "paused", dockertest.Inspect(t, a1, "{{.State.Status}}"))
	require.Equal(t, "300000000", dockertest.Inspect(t, a2, "{{.HostConfig.NanoCpus}}"))
	metrics := p.get("/metrics")
	require.Contains(t, metrics, `platform_fault_active{target="analyzer-1",type="pause"} 1`)
	require.Contains(t, metrics, `platform_faults_total{target="analyzer-2",type="cpu"} 1`)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	p.cmd.Wait()
	time.Sleep(time.Until(pausedAt.Add(5500 * time.Millisecond))) // the pause expires while nobody watches
	require.Equal(t, "paused", dockertest.Inspect(t, a1, "{{.State.Status}}"))

	p.start()
	require.Equal(t, "running", dockertest.Inspect(t, a1, "{{.State.Status}}"), "the expired pause was reverted at start-up")
	active := p.get("/api/faults?state=active")
	require.Contains(t, active, `"type":"cpu"`, "the running cpu fault was taken over")
	require.NotContains(t, active, `"type":"pause"`)

	// A graceful stop reverts what is still active.
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p.cmd.Wait())
	require.NotEqual(t, "300000000", dockertest.Inspect(t, a2, "{{.HostConfig.NanoCpus}}"))
	require.Empty(t, dockertest.Containers(t, "dsplab.job.project="+proj.Name), "no marker left:\n%s", &p.logs)
}

func TestTrafficThroughTheAPIRunsAK6JobAndReportsItsSummary(t *testing.T) {
	dockertest.BuildK6Image(t)
	proj := dockertest.NewProject(t)
	proj.Run("analyzer-1", "target")
	port := devstack.FreePort(t)
	root, _ := exec.Command("go", "env", "GOMOD").Output()
	p := &platform{t: t, bin: buildPlatform(t), url: "http://127.0.0.1:" + strconv.Itoa(port),
		env: []string{"COMPOSE_PROJECT=" + proj.Name, "PORT=" + strconv.Itoa(port), "LOG_LEVEL=warn",
			"K6_SCRIPTS_DIR=" + filepath.Join(filepath.Dir(strings.TrimSpace(string(root))), "k6")}}
	p.env = append(p.env, localJobImages(dockertest.K6Image)...)
	p.start()
	defer func() { p.cmd.Process.Signal(syscall.SIGTERM); p.cmd.Wait() }()

	code, job := p.post("/api/traffic/start", `{"targetUrl":"http://analyzer-1:9001","rps":10,"durationSeconds":2}`)
	require.Equal(t, http.StatusAccepted, code, job)
	id := job["id"].(string)
	require.Contains(t, p.get("/metrics"), "platform_traffic_jobs_active 1")
	var got map[string]any
	devstack.Eventually(t, 60*time.Second, func() bool {
		json.Unmarshal([]byte(p.get("/api/traffic/"+id)), &got)
		return got["state"] != "running"
	}, "job did not end")
	require.Equal(t, "finished", got["state"], got)
	require.EqualValues(t, 1, got["progress"])
	overview := got["summary"].(map[string]any)["overview"].(map[string]any)
	require.InDelta(t, 20, overview["requests"], 4)

	code, bad := p.post("/api/traffic/start", `{"targetUrl":"nope","rps":-1}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.Len(t, bad["problems"], 3, "targetUrl, rps and durationSeconds: %v", bad)
}

func TestAPlatformServesAtOnceWhileALeftoverFaultsCleanupHangs(t *testing.T) {
	// Pumba is the stand-in (test/standins/pumba/). The fault is applied and
	// expires with working tools; the platform restarts with a nettools
	// image whose tools never return, as a wedged tc or iptables would not,
	// so its cleanup of the leftover hangs. (The stand-in applies netem
	// through the nettools image itself, as Pumba does: with the hanging
	// image from the start the Pumba job would hang, not expire.)
	dockertest.BuildPumbaImage(t)
	proj := dockertest.NewProject(t)
	proj.Run("analyzer-1", "target")
	port := devstack.FreePort(t)
	p := &platform{t: t, bin: buildPlatform(t), url: "http://127.0.0.1:" + strconv.Itoa(port),
		env: []string{"COMPOSE_PROJECT=" + proj.Name, "PORT=" + strconv.Itoa(port), "LOG_LEVEL=warn", "EXPERIMENTS_DIR=" + repoDir(t, "experiments"),
			"K6_IMAGE=" + dockertest.PumbaImage, // present: nothing is pulled, no registry is reached
			"PUMBA_IMAGE=" + dockertest.PumbaImage, "PUMBA_NETTOOLS_IMAGE=" + dockertest.NettoolsImage, "PUMBA_CLEANUP_TIMEOUT_SECONDS=2"}}
	p.start()
	code, f := p.post("/api/faults", `{"type":"loss","target":"analyzer-1","percent":5,"durationSeconds":2}`)
	require.Equal(t, http.StatusCreated, code, f)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	p.cmd.Wait()
	dockertest.WaitState(t, "dsplab-netem-"+f["id"].(string), "exited", 30*time.Second) // expired while nobody watched

	for i, e := range p.env {
		if strings.HasPrefix(e, "PUMBA_NETTOOLS_IMAGE=") {
			p.env[i] = "PUMBA_NETTOOLS_IMAGE=" + dockertest.NettoolsHangImage
		}
	}
	p.start() // serves (/health) though the cleanup below is blocked
	stopped := false
	defer func() {
		if !stopped {
			p.cmd.Process.Signal(syscall.SIGTERM)
			p.cmd.Wait()
		}
	}()
	sidecar := func() bool {
		for _, c := range dockertest.Containers(t, "dsplab.job.kind=nettools") {
			if dockertest.Inspect(t, c, `{{index .Config.Labels "dsplab.job.project"}}`) == proj.Name {
				return true
			}
		}
		return false
	}
	devstack.Eventually(t, 20*time.Second, sidecar, "no cleanup sidecar:\n%s", &p.logs)
	faults := p.get("/api/faults")
	require.Contains(t, faults, `"cleanup":"pending"`, "the API answers while the cleanup is blocked in its sidecar")
	require.Contains(t, faults, `"state":"reverting"`)

	devstack.Eventually(t, 60*time.Second, func() bool { return strings.Contains(p.get("/api/faults"), `"state":"failed"`) }, "cleanup never gave up")
	faults = p.get("/api/faults")
	require.Contains(t, faults, `"cleanup":"failed: tc qdisc del dev eth0 root in `)
	require.Contains(t, faults, "leftover network rules not removed")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p.cmd.Wait())
	stopped = true
	require.Contains(t, p.logs.String(), "leftover network rules not removed; the next start retries")
}
