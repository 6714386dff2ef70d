package app

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/devstack"
	"github.com/dsplab/dsplab/platform-api/internal/dockertest"
)

// The real platform-api binary with job images that are not on the
// engine: they are pushed to a real Distribution registry on 127.0.0.1
// (built FROM the test's k6 and Pumba stand-in images, with a layer of
// their own) and removed from the engine, so only a pull brings them back.

// localJobImages points every job image at img, an image on the engine:
// the platform then pulls nothing at start-up (and reaches no registry).
func localJobImages(img string) []string {
	return []string{"K6_IMAGE=" + img, "PUMBA_IMAGE=" + img, "PUMBA_NETTOOLS_IMAGE=" + img}
}

func startPlatform(t *testing.T, proj *dockertest.Project, env ...string) *platform {
	t.Helper()
	port := devstack.FreePort(t)
	p := &platform{t: t, bin: buildPlatform(t), url: "http://127.0.0.1:" + strconv.Itoa(port),
		env: append([]string{"COMPOSE_PROJECT=" + proj.Name, "PORT=" + strconv.Itoa(port), "K6_SCRIPTS_DIR=" + repoDir(t, "k6"),
			"EXPERIMENTS_DIR=" + repoDir(t, "experiments")}, env...)}
	p.start()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Signal(syscall.SIGTERM)
			p.cmd.Wait()
		}
	})
	return p
}

func logsOf(name string) string {
	out, _ := exec.Command("docker", "logs", name).CombinedOutput()
	return string(out)
}

// containerLogs prints a container's logs when a check fails.
type containerLogs string

func (c containerLogs) String() string { return logsOf(string(c)) }

func (p *platform) imageStates() map[string]string {
	var s struct {
		Docker string
		Images map[string]string
	}
	require.NoError(p.t, json.Unmarshal([]byte(p.get("/api/status")), &s))
	require.Equal(p.t, "ok", s.Docker)
	return s.Images
}

func TestJobImagesMissingFromTheEngineArePulledAndTheJobsRun(t *testing.T) {
	dockertest.BuildK6Image(t)
	dockertest.BuildPumbaImage(t)
	reg := dockertest.StartRegistry(t)
	k6 := reg.Push(dockertest.K6Image, "dsplab-img-k6")
	pumba := reg.Push(dockertest.PumbaImage, "dsplab-img-pumba")
	nettools := reg.Push(dockertest.PumbaImage, "dsplab-img-nettools") // the stand-in plays tc/iptables too
	proj := dockertest.NewProject(t)
	proj.Run("analyzer-1", "target")
	a2 := proj.Run("analyzer-2", "target")
	p := startPlatform(t, proj, "K6_IMAGE="+k6, "PUMBA_IMAGE="+pumba, "PUMBA_NETTOOLS_IMAGE="+nettools, "LOG_LEVEL=info")

	states := p.imageStates()
	for _, img := range []string{k6, pumba, nettools} {
		require.Contains(t, states, img, "every job image is listed from start-up on")
	}
	// Straight away: the job waits for the start-up pull if it still runs.
	code, job := p.post("/api/traffic/start", `{"targetUrl":"http://analyzer-1:9001","rps":10,"durationSeconds":2}`)
	require.Equal(t, http.StatusAccepted, code, "%v\n%s", job, &p.logs)
	var got map[string]any
	devstack.Eventually(t, 90*time.Second, func() bool {
		json.Unmarshal([]byte(p.get("/api/traffic/"+job["id"].(string))), &got)
		return got["state"] != "running"
	}, "k6 job did not end")
	require.Equal(t, "finished", got["state"], got)

	// A partition: Pumba's job from the pulled image, its iptables
	// sidecars from the pulled nettools image (Pumba runs them with
	// --pull-image=false).
	code, f := p.post("/api/faults", `{"type":"partition","target":"analyzer-1","peer":"analyzer-2","durationSeconds":60}`)
	require.Equal(t, http.StatusCreated, code, "%v\n%s", f, &p.logs)
	job2 := "dsplab-netem-" + f["id"].(string)
	ip2 := dockertest.Inspect(t, a2, `{{(index .NetworkSettings.Networks "`+proj.Network+`").IPAddress}}`)
	devstack.Eventually(t, 30*time.Second, func() bool {
		return strings.Contains(logsOf(job2), "via "+nettools+": iptables -I INPUT -i eth0 -s "+ip2+"/32") &&
			strings.Contains(logsOf(job2), "(exit 0)")
	}, "Pumba's sidecar ran from the pulled nettools image: %s", containerLogs(job2))
	code, f = p.post("/api/faults/"+f["id"].(string)+"/stop", ``)
	require.Equal(t, http.StatusOK, code, f)
	require.Equal(t, "reverted", f["state"], f)

	require.Equal(t, map[string]string{k6: "present", pumba: "present", nettools: "present"}, p.imageStates())
	for _, img := range []string{k6, pumba, nettools} {
		require.True(t, dockertest.HasImage(img))
	}
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p.cmd.Wait())
	logs := p.logs.String() // once the process ended: its writer is not synchronised
	require.Regexp(t, `"msg":"job image pull started",.*"image":"`+k6+`"`, logs)
	require.Regexp(t, `"msg":"pulling job image",.*"image":"`+k6+`","progress":"\d+% \(\d/\d layers`, logs, "progress lines")
	require.Regexp(t, `"msg":"job image pulled",.*"image":"`+k6+`","layers":3,"bytes":\d{7}`, logs, "layer count and bytes (2 MB of its own)")
}

func TestAJobWhoseImageCannotBePulledIsRefusedWith503AndLeavesNothing(t *testing.T) {
	dockertest.BuildK6Image(t)
	dockertest.BuildPumbaImage(t)
	reg := dockertest.StartRegistry(t)
	k6 := reg.Push(dockertest.K6Image, "dsplab-img-k6")
	pumba := reg.Push(dockertest.PumbaImage, "dsplab-img-pumba")
	nettools := reg.Addr + "/dsplab-img-nettools:never-pushed"
	reg.Stop() // no network: the registry does not answer
	proj := dockertest.NewProject(t)
	proj.Run("analyzer-1", "target")
	p := startPlatform(t, proj, "K6_IMAGE="+k6, "PUMBA_IMAGE="+pumba, "PUMBA_NETTOOLS_IMAGE="+nettools)

	code, body := p.post("/api/traffic/start", `{"targetUrl":"http://analyzer-1:9001","rps":10,"durationSeconds":2}`)
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	msg := body["error"].(string)
	require.True(t, strings.HasPrefix(msg, "image "+k6+" is not available: pull: "), msg)
	require.Contains(t, msg, "connection refused", "the cause")
	code, body = p.post("/api/faults", `{"type":"delay","target":"analyzer-1","durationSeconds":30,"delayMs":100}`)
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Contains(t, body["error"], "image "+pumba+" is not available: pull: ")
	require.Contains(t, p.imageStates()[k6], "failed: pull: ")

	// The registry back, but the nettools image unknown to it: Pumba is
	// pulled, the fault is still refused before any Pumba job exists.
	reg.Start()
	code, body = p.post("/api/faults", `{"type":"delay","target":"analyzer-1","durationSeconds":30,"delayMs":100}`)
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.True(t, strings.HasPrefix(body["error"].(string), "image "+nettools+" is not available: pull: "), body)
	require.Contains(t, body["error"], "not found")
	require.True(t, dockertest.HasImage(pumba))

	require.Empty(t, dockertest.Containers(t, "dsplab.job.project="+proj.Name), "no job container, no marker:\n%s", &p.logs)
	require.JSONEq(t, `{"faults":[]}`, p.get("/api/faults"))
	require.JSONEq(t, `{"jobs":[]}`, p.get("/api/traffic"))
	metrics := p.get("/metrics")
	require.NotContains(t, metrics, "platform_faults_total{")
}
