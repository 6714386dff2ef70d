package faults

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/platform-api/internal/docker"
	"github.com/dsplab/dsplab/platform-api/internal/dockertest"
)

// These tests drive the real Docker engine: the faults are real pauses,
// stops, kills and cgroup limits on real containers.

func setup(t *testing.T, lim Limits) (*Manager, *docker.Runtime, *dockertest.Project) {
	t.Helper()
	p := dockertest.NewProject(t)
	p.Run("analyzer-1", "target")
	p.Run("analyzer-2", "target")
	p.Run("prometheus", "infra")
	rt, err := docker.New(t.Context(), p.Name)
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	if lim.MaxDuration == 0 {
		lim = Limits{MaxDuration: 10 * time.Minute, MaxConcurrent: 10}
	}
	m := New(rt, lim, Pumba{}, slog.New(slog.DiscardHandler))
	t.Cleanup(m.Close)
	return m, rt, p
}

func name(p *dockertest.Project, svc string) string { return p.Name + "-" + svc + "-1" }

func markers(t *testing.T, p *dockertest.Project) []string {
	return dockertest.Containers(t, "dsplab.job.project="+p.Name)
}

func TestStateFaultsApplyAndRevertAfterTheirDuration(t *testing.T) {
	m, _, p := setup(t, Limits{})
	for _, tc := range []struct {
		spec    Spec
		during  string
		command string
	}{
		{Spec{Type: Pause, Target: "analyzer-1", Duration: 2 * time.Second}, "paused", "docker pause " + name(p, "analyzer-1")},
		{Spec{Type: Stop, Target: "analyzer-2", Duration: 2 * time.Second}, "exited", "docker stop " + name(p, "analyzer-2")},
		{Spec{Type: Kill, Target: "analyzer-1", Duration: 2 * time.Second}, "exited", "docker kill --signal SIGKILL " + name(p, "analyzer-1")},
	} {
		t.Run(string(tc.spec.Type), func(t *testing.T) {
			f, err := m.Start(t.Context(), tc.spec)
			require.NoError(t, err)
			require.Equal(t, StateActive, f.State)
			require.Equal(t, tc.command, f.Command)
			c := name(p, tc.spec.Target)
			require.Equal(t, tc.during, dockertest.Inspect(t, c, "{{.State.Status}}"))
			require.Len(t, markers(t, p), 1, "the fault is recorded in a marker container")
			dockertest.WaitState(t, c, "running", 10*time.Second)
			require.Eventually(t, func() bool { g, _ := m.Get(f.ID); return g.State == StateReverted }, 5*time.Second, 50*time.Millisecond)
			require.Empty(t, markers(t, p), "the marker is removed after the revert")
		})
	}
}

func TestResourceFaultsLimitAndRestore(t *testing.T) {
	m, rt, p := setup(t, Limits{})
	c := name(p, "analyzer-1")
	cpu, err := m.Start(t.Context(), Spec{Type: CPU, Target: "analyzer-1", Duration: time.Minute, CPUs: 0.25})
	require.NoError(t, err)
	mem, err := m.Start(t.Context(), Spec{Type: Memory, Target: "analyzer-1", Duration: time.Minute, MemoryMB: 32})
	require.NoError(t, err, "cpu and memory faults do not conflict")
	require.Equal(t, "250000000", dockertest.Inspect(t, c, "{{.HostConfig.NanoCpus}}"))
	require.Equal(t, "33554432 33554432", dockertest.Inspect(t, c, "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}"))

	_, err = m.StopFault(t.Context(), cpu.ID)
	require.NoError(t, err)
	_, err = m.StopFault(t.Context(), mem.ID)
	require.NoError(t, err)
	// There was no limit: Docker cannot remove one, so the host's whole
	// capacity is set, which is no limit in effect.
	h := rt.Host()
	require.Equal(t, itoa(int64(h.NCPU)*1e9), dockertest.Inspect(t, c, "{{.HostConfig.NanoCpus}}"))
	require.Equal(t, itoa(h.MemTotal), dockertest.Inspect(t, c, "{{.HostConfig.Memory}}"))
	require.Equal(t, "running", dockertest.Inspect(t, c, "{{.State.Status}}"))
	require.Empty(t, markers(t, p))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestRestartCompletesAtOnce(t *testing.T) {
	m, _, p := setup(t, Limits{})
	c := name(p, "analyzer-2")
	before := dockertest.Inspect(t, c, "{{.State.StartedAt}}")
	f, err := m.Start(t.Context(), Spec{Type: Restart, Target: "analyzer-2"})
	require.NoError(t, err)
	got, _ := m.Get(f.ID)
	require.Equal(t, StateCompleted, got.State)
	require.NotEqual(t, before, dockertest.Inspect(t, c, "{{.State.StartedAt}}"))
	require.Empty(t, markers(t, p))
}

func TestConflictsCapsInfraAndValidation(t *testing.T) {
	m, _, _ := setup(t, Limits{MaxDuration: time.Minute, MaxConcurrent: 2})
	_, err := m.Start(t.Context(), Spec{Type: Pause, Target: "analyzer-1", Duration: time.Minute})
	require.NoError(t, err)
	_, err = m.Start(t.Context(), Spec{Type: Stop, Target: "analyzer-1", Duration: time.Minute})
	require.ErrorIs(t, err, ErrConflict, "pause and stop on one target conflict")

	_, err = m.Start(t.Context(), Spec{Type: Pause, Target: "prometheus", Duration: time.Minute})
	require.ErrorIs(t, err, ErrInfra)
	_, err = m.Start(t.Context(), Spec{Type: CPU, Target: "prometheus", Duration: time.Minute, CPUs: 0.5, AllowInfra: true})
	require.NoError(t, err, "infra only when asked explicitly")
	_, err = m.Start(t.Context(), Spec{Type: Pause, Target: "analyzer-2", Duration: time.Minute})
	require.ErrorIs(t, err, ErrTooMany)

	_, err = m.Start(t.Context(), Spec{Type: Pause, Target: "nope", Duration: time.Minute})
	require.ErrorIs(t, err, ErrNotFound)

	err = (&Spec{Type: "explode", Duration: time.Hour}).Validate(Limits{MaxDuration: time.Minute}, 2)
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Problems, 3, "type, target and duration at once: %v", ve)
	err = (&Spec{Type: Kill, Target: "x", Duration: time.Second, Signal: "SIGNOPE"}).Validate(Limits{MaxDuration: time.Minute}, 2)
	require.ErrorContains(t, err, "signal")
	err = (&Spec{Type: CPU, Target: "x", Duration: time.Second, CPUs: 64}).Validate(Limits{MaxDuration: time.Minute}, 2)
	require.ErrorContains(t, err, "cpus")

	reverted, err := m.Reset(t.Context())
	require.NoError(t, err)
	require.Len(t, reverted, 2)
	require.Empty(t, m.Active())
}

// A platform that dies (no revert, timers gone) and starts again finds its
// faults in the markers: an expired one is reverted at once, a running one
// is taken over and reverted on time.
func TestReconcileRevertsExpiredFaultsAndTakesOverRunningOnes(t *testing.T) {
	m1, rt, p := setup(t, Limits{})
	a1, a2 := name(p, "analyzer-1"), name(p, "analyzer-2")
	// Each platform is "killed" (Close: nothing is reverted) right after
	// its start, so none of their timers can fire however slow the engine.
	pause, err := m1.Start(t.Context(), Spec{Type: Pause, Target: "analyzer-1", Duration: 2 * time.Second})
	require.NoError(t, err)
	m1.Close()
	m1b := New(rt, Limits{MaxDuration: time.Minute, MaxConcurrent: 10}, Pumba{}, slog.New(slog.DiscardHandler))
	_, err = m1b.Start(t.Context(), Spec{Type: Memory, Target: "analyzer-2", Duration: 6 * time.Second, MemoryMB: 48})
	require.NoError(t, err)
	m1b.Close()
	for time.Now().Before(*pause.EndsAt) {
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, "paused", dockertest.Inspect(t, a1, "{{.State.Status}}"), "nobody reverted it")

	m2 := New(rt, Limits{MaxDuration: time.Minute, MaxConcurrent: 10}, Pumba{}, slog.New(slog.DiscardHandler))
	defer m2.Close()
	require.NoError(t, m2.Reconcile(context.Background()))
	require.Equal(t, "running", dockertest.Inspect(t, a1, "{{.State.Status}}"), "the expired pause was reverted at start-up")
	require.Len(t, m2.Active(), 1, "the memory fault is still on")
	require.Equal(t, "50331648", dockertest.Inspect(t, a2, "{{.HostConfig.Memory}}"))
	require.Eventually(t, func() bool {
		for _, f := range m2.List() {
			if f.State != StateReverted {
				return false
			}
		}
		return true
	}, 15*time.Second, 100*time.Millisecond)
	require.Equal(t, itoa(rt.Host().MemTotal), dockertest.Inspect(t, a2, "{{.HostConfig.Memory}}"))
	require.Empty(t, markers(t, p))
}
