package traffic

import (
	"context"
	"encoding/json"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
	"github.com/dsplab/dsplab/platform-api/internal/docker"
	"github.com/dsplab/dsplab/platform-api/internal/dockertest"
)

// These tests run real k6 job containers on the real Docker engine, from a
// k6 v1.8.1 image built FROM scratch (grafana/k6 cannot be pulled here),
// against a target container on the project's network.

func scriptsDir(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	require.NoError(t, err)
	return filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), "k6")
}

func setup(t *testing.T) (*Manager, *docker.Runtime, *dockertest.Project) {
	t.Helper()
	dockertest.BuildK6Image(t)
	p := dockertest.NewProject(t)
	p.Run("analyzer-1", "target")
	rt, err := docker.New(t.Context(), p.Name)
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	m := New(ctx, rt, Config{Image: dockertest.K6Image, ScriptsDir: scriptsDir(t), MaxRPS: 1000, MaxDuration: time.Hour, MaxJobs: 3}, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { cancel(); m.Wait() })
	return m, rt, p
}

type summary struct {
	Script   string `json:"script"`
	JobID    string `json:"job_id"`
	Overview struct {
		Requests float64        `json:"requests"`
		ByStatus map[string]int `json:"by_status"`
	} `json:"overview"`
}

func waitEnded(t *testing.T, m *Manager, id string, within time.Duration) Job {
	t.Helper()
	var j Job
	require.Eventually(t, func() bool {
		j, _ = m.Get(id)
		return j.State != StateRunning
	}, within, 200*time.Millisecond, "job %s still running", id)
	return j
}

func TestAJobRunsTheScriptInAContainerAndReportsItsSummary(t *testing.T) {
	m, _, p := setup(t)
	// The seed's body: targetUrl with the endpoint, rps, durationSeconds.
	j, err := m.Start(t.Context(), Spec{TargetURL: "http://analyzer-1:9001/ingest", RPS: 20, Duration: 3 * time.Second})
	require.NoError(t, err)
	require.Equal(t, "http://analyzer-1:9001", j.TargetURL, "the endpoint path is the script's to add")
	require.Equal(t, StateRunning, j.State)
	require.Contains(t, j.Command, "-e RATE=20")
	require.Len(t, dockertest.Containers(t, "dsplab.job.project="+p.Name), 1, "this project's one job (other packages' tests run jobs beside it)")

	j = waitEnded(t, m, j.ID, 60*time.Second)
	require.Equal(t, StateFinished, j.State, j.Error)
	var s summary
	require.NoError(t, json.Unmarshal(j.Summary, &s))
	require.Equal(t, "ingest-packets.js", s.Script)
	require.Equal(t, j.ID, s.JobID)
	require.InDelta(t, 60, s.Overview.Requests, 8, "20/s for 3 s")
	require.Equal(t, int(s.Overview.Requests), s.Overview.ByStatus["404"], "the analyzer has no /ingest: every request reached it and got 404")
	require.Equal(t, 1.0, j.Progress(time.Now()))
	require.Empty(t, dockertest.Containers(t, "dsplab.job.project="+p.Name), "the job container is removed once harvested")
}

func TestStoppingAJobEarlyStillCollectsItsSummary(t *testing.T) {
	m, _, _ := setup(t)
	j, err := m.Start(t.Context(), Spec{TargetURL: "http://analyzer-1:9001", RPS: 10, Duration: 5 * time.Minute, Profile: "ramp", Params: map[string]string{"RAMP_TO": "30"}})
	require.NoError(t, err)
	time.Sleep(3 * time.Second)
	running, _ := m.Get(j.ID)
	require.Greater(t, running.Progress(time.Now()), 0.0)
	_, err = m.Stop(t.Context(), j.ID)
	require.NoError(t, err)
	j = waitEnded(t, m, j.ID, 45*time.Second)
	require.Equal(t, StateStopped, j.State)
	var s summary
	require.NoError(t, json.Unmarshal(j.Summary, &s), "k6 writes its summary on SIGTERM: %s", j.Error)
	require.Positive(t, s.Overview.Requests)
}

func TestAfterARestartRunningJobsAreWatchedAgain(t *testing.T) {
	m, rt, _ := setup(t)
	j, err := m.Start(t.Context(), Spec{TargetURL: "http://analyzer-1:9001", RPS: 5, Duration: 3 * time.Second, Script: "loki-push"})
	require.NoError(t, err)

	m2 := New(context.Background(), rt, m.cfg, slog.New(slog.DiscardHandler)) // a new platform process
	require.NoError(t, m2.Reconcile(t.Context()))
	got, err := m2.Get(j.ID)
	require.NoError(t, err)
	require.Equal(t, "loki-push", got.Script)
	ended := waitEnded(t, m2, j.ID, 60*time.Second)
	require.NotEmpty(t, ended.Summary)
	m2.Wait()
}

func TestInvalidJobsListEveryProblem(t *testing.T) {
	m := New(context.Background(), nil, Config{MaxRPS: 100, MaxDuration: time.Minute, MaxJobs: 1}, slog.New(slog.DiscardHandler))
	_, err := m.Start(t.Context(), Spec{TargetURL: "ftp://x", RPS: 1000, Duration: time.Hour, Script: "nope", Profile: "wavy",
		Params: map[string]string{"lower": "1", "RATE": "5", "RAMP_TO": "10"}})
	var ve *apierr.ValidationError
	require.ErrorAs(t, err, &ve)
	fields := map[string]bool{}
	for _, p := range ve.Problems {
		fields[p.Field] = true
	}
	require.Equal(t, map[string]bool{"targetUrl": true, "rps": true, "durationSeconds": true, "script": true, "profile": true,
		"params.lower": true, "params.RATE": true}, fields)
}

// The job id is the k6 scripts' packet id prefix (DSPLAB_JOB_ID): the
// delivery ledger finds a job's packets in Kafka by it, so a request
// cannot set it.
func TestTheJobIDIsThePacketIDPrefixAndCannotBeSetByParams(t *testing.T) {
	m := New(context.Background(), nil, Config{MaxRPS: 100, MaxDuration: time.Minute, MaxJobs: 1}, slog.New(slog.DiscardHandler))
	spec := m.jobSpec(&Job{ID: "t-abc", Script: "ingest-packets", TargetURL: "http://distributor:8080", RPS: 5, Duration: time.Minute}, "net")
	require.Contains(t, spec.Env, "DSPLAB_JOB_ID=t-abc")
	require.Contains(t, strings.Join(spec.Cmd, " "), "-e DSPLAB_JOB_ID=t-abc")
	_, err := m.Start(t.Context(), Spec{TargetURL: "http://distributor:8080", RPS: 5, Duration: time.Minute, Script: "ingest-packets",
		Params: map[string]string{"DSPLAB_JOB_ID": "mine"}})
	var ve *apierr.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "params.DSPLAB_JOB_ID", ve.Problems[0].Field)
}
