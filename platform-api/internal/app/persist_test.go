package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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

// The real platform-api binary is killed with SIGKILL in the middle of an
// experiment that has a config change on the real distributor binary (on
// the kfake Kafka-protocol broker, devkafka), a pause fault on a real
// container and a real k6 traffic job, then started again on the same
// STATE_DIR.

// overlayOf reads the distributor's run-time overlay.
func overlayOf(t *testing.T, distributorURL string) string {
	t.Helper()
	resp, err := http.Get(distributorURL + "/admin/config")
	require.NoError(t, err)
	defer resp.Body.Close()
	var out struct{ Overlay string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out.Overlay
}

// ingest posts n packets at once and counts the answers by status.
func ingest(t *testing.T, distributorURL string, n int) map[int]int {
	t.Helper()
	codes := map[int]int{}
	for i := range n {
		body := fmt.Sprintf(`{"emitter_id":"persist-test","packet_id":%d,"messages":[{"level":"info","message":"m"}]}`, time.Now().UnixNano()+int64(i))
		resp, err := http.Post(distributorURL+"/ingest", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes[resp.StatusCode]++
	}
	return codes
}

func (p *platform) experiment(id string) map[string]any {
	var e map[string]any
	require.NoError(p.t, json.Unmarshal([]byte(p.get("/api/experiments/"+id)), &e))
	return e
}

func timelineKinds(e map[string]any) []string {
	var out []string
	tl, _ := e["timeline"].([]any)
	for _, ev := range tl {
		out = append(out, ev.(map[string]any)["kind"].(string))
	}
	return out
}

func TestAKilledPlatformConcludesItsRunningExperimentAndUndoesIt(t *testing.T) {
	dockertest.BuildK6Image(t)
	proj := dockertest.NewProject(t)
	proj.Run("analyzer-1", "target") // what k6 sends to
	a2 := proj.Run("analyzer-2", "target")
	bins, err := devstack.Build(t.TempDir())
	require.NoError(t, err)
	stack := devstack.Start(t, bins, devstack.Options{Weights: []float64{1}})
	dist := stack.Distributor.URL()

	// The overlay in force before the experiment, which it must put back.
	const before = `{"limits":{"per_tenant":{"rate":1000,"burst":1000}}}`
	req, _ := http.NewRequest(http.MethodPut, dist+"/admin/config", strings.NewReader(before))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	port := devstack.FreePort(t)
	p := &platform{t: t, bin: buildPlatform(t), url: "http://127.0.0.1:" + strconv.Itoa(port),
		env: append([]string{"COMPOSE_PROJECT=" + proj.Name, "PORT=" + strconv.Itoa(port), "STATE_DIR=" + t.TempDir(),
			"DISTRIBUTOR_URL=" + dist, "PROMETHEUS_URL=http://127.0.0.1:" + strconv.Itoa(devstack.FreePort(t)), // nothing there: checks get errors, fast
			"K6_SCRIPTS_DIR=" + repoDir(t, "k6"), "EXPERIMENTS_DIR=" + repoDir(t, "experiments")},
			"K6_IMAGE="+dockertest.K6Image, "PUMBA_IMAGE="+dockertest.Image, "PUMBA_NETTOOLS_IMAGE="+dockertest.Image)}
	p.start()
	running := true
	defer func() {
		if running {
			p.cmd.Process.Signal(syscall.SIGTERM)
			p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("platform logs:\n%s", &p.logs)
		}
	}()

	// An experiment that ends before the kill: its report must survive.
	code, quick := p.post("/api/experiments", `{"definition":{"name":"quick","faults":[],"checks":[],"recoverySeconds":0}}`)
	require.Equal(t, http.StatusAccepted, code, quick)
	quickID := quick["id"].(string)
	devstack.Eventually(t, 60*time.Second, func() bool { return p.experiment(quickID)["state"] == "passed" }, "the quick experiment did not pass")

	code, x := p.post("/api/experiments", `{"definition":{"name":"killed-midway",
		"traffic":{"targetUrl":"http://analyzer-1:9001","rps":5,"durationSeconds":300},
		"faults":[{"atSeconds":0,"type":"pause","target":"analyzer-2","durationSeconds":300}],
		"configChanges":[{"atSeconds":0,"overlay":{"limits":{"global":{"rate":5,"burst":5}}}}],
		"checks":[{"name":"healthy","query":"distributor_healthy_analyzers","comparator":">=","threshold":1,"phase":"after"}],
		"recoverySeconds":10}}`)
	require.Equal(t, http.StatusAccepted, code, x)
	id := x["id"].(string)
	devstack.Eventually(t, 90*time.Second, func() bool {
		k := timelineKinds(p.experiment(id))
		return slices.Contains(k, "traffic-started") && slices.Contains(k, "fault-started") && slices.Contains(k, "config-changed")
	}, "the experiment did not get going: %v", p.get("/api/experiments/"+id))
	k6 := "dsplab-traffic-" + p.experiment(id)["trafficJobId"].(string)
	require.Equal(t, `{"limits":{"global":{"burst":5,"rate":5}}}`, overlayOf(t, dist))

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	p.cmd.Wait()
	running = false
	// What the kill left behind: the experiment's overlay (ingest over
	// 5/s is refused), the paused container, the k6 job.
	require.Equal(t, `{"limits":{"global":{"burst":5,"rate":5}}}`, overlayOf(t, dist))
	require.Positive(t, ingest(t, dist, 20)[http.StatusTooManyRequests], "the experiment's rate limit is in force")
	require.Equal(t, "paused", dockertest.Inspect(t, a2, "{{.State.Status}}"))
	require.Equal(t, "running", dockertest.Inspect(t, k6, "{{.State.Status}}"))
	left := dockertest.Containers(t, "dsplab.job.project="+proj.Name)
	require.NotEmpty(t, left, "the pause's marker and the k6 job are there")

	p.start()
	running = true
	devstack.Eventually(t, 120*time.Second, func() bool { return p.experiment(id)["state"] == "interrupted" }, "not concluded: %v", p.get("/api/experiments/"+id))
	e := p.experiment(id)
	require.Contains(t, e["reason"], "the platform stopped while it ran; at the restart: fault ")
	require.Contains(t, e["reason"], "reverted, the distributor's overlay from before restored, traffic job ")
	require.Equal(t, before, overlayOf(t, dist), "the overlay from before the experiment is back")
	require.Equal(t, map[int]int{http.StatusAccepted: 20}, ingest(t, dist, 20), "ingest is no longer limited to 5/s")
	require.Equal(t, "running", dockertest.Inspect(t, a2, "{{.State.Status}}"), "the pause is reverted")
	devstack.Eventually(t, 60*time.Second, func() bool { return len(dockertest.Containers(t, "dsplab.job.project="+proj.Name)) == 0 },
		"left behind: %v", dockertest.Containers(t, "dsplab.job.project="+proj.Name))
	require.NotContains(t, p.get("/api/faults?state=active"), `"state":"active"`)

	md := p.get("/api/experiments/" + id + "/report.md")
	for _, want := range []string{"# Experiment killed-midway — INTERRUPTED", "| interrupted |", "| fault-stopped |", "| config-restored |", "| traffic-stopped |", "not judged"} {
		require.Contains(t, md, want)
	}
	require.Contains(t, p.get("/api/experiments/"+quickID+"/report.md"), "# Experiment quick — PASSED")

	// A graceful restart (docker compose restart) keeps the history too.
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p.cmd.Wait())
	p.start()
	var list struct{ Experiments []struct{ ID, State string } }
	require.NoError(t, json.NewDecoder(bytes.NewReader([]byte(p.get("/api/experiments")))).Decode(&list))
	require.ElementsMatch(t, []struct{ ID, State string }{{id, "interrupted"}, {quickID, "passed"}}, list.Experiments)
	require.Contains(t, p.get("/metrics"), `platform_state_records_skipped_total 0`)
}
