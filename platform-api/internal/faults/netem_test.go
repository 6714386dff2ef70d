package faults

import (
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/platform-api/internal/docker"
	"github.com/dsplab/dsplab/platform-api/internal/dockertest"
)

// Network faults run as Pumba job containers. Pumba itself cannot run here
// (no registry, no netem in this kernel): these tests use the stand-in of
// test/standins/pumba/, compared argv by argv with real Pumba 1.1.7 (its
// README.md), which parses Pumba's command line with Pumba's own parser,
// prints the tc commands real Pumba would run, runs Pumba's iptables
// sidecars the way Pumba does (entrypoint tail -f /dev/null, the tool by
// exec; here in dockertest.NettoolsImage, whose tools only print; e2e uses
// Debian's iptables and tc) and honours --duration and SIGTERM. What is
// tested is the platform's orchestration: command, socket mount, stop
// grace, revert, failure detection, reconciliation and cleanup.

func setupNetem(t *testing.T) (*Manager, *docker.Runtime, *dockertest.Project) {
	t.Helper()
	dockertest.BuildPumbaImage(t)
	p := dockertest.NewProject(t)
	p.Run("analyzer-1", "target")
	p.Run("analyzer-2", "target")
	rt, err := docker.New(t.Context(), p.Name)
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	m := New(rt, Limits{MaxDuration: time.Hour, MaxConcurrent: 10}, pumbaConfig(), slog.New(slog.DiscardHandler))
	t.Cleanup(m.Close)
	return m, rt, p
}

func pumbaConfig() Pumba {
	return Pumba{Image: dockertest.PumbaImage, NettoolsImage: dockertest.NettoolsImage, DockerSocket: "/var/run/docker.sock"}
}

func logsOf(t *testing.T, name string) string {
	out, _ := exec.Command("docker", "logs", name).CombinedOutput()
	return string(out)
}

func TestADelayFaultRunsAPumbaJobThatEndsOnTime(t *testing.T) {
	m, _, p := setupNetem(t)
	f, err := m.Start(t.Context(), Spec{Type: Delay, Target: "analyzer-1", Duration: 10 * time.Second, DelayMs: 100, JitterMs: 10, Correlation: 20, Distribution: "normal"})
	require.NoError(t, err)
	job := "dsplab-netem-" + f.ID
	require.Equal(t, "pumba --log-level info netem --duration 10s --tc-image "+dockertest.NettoolsImage+" --pull-image=false delay --time 100 --jitter 10 --correlation 20 --distribution normal "+name(p, "analyzer-1"), f.Command)
	require.Equal(t, "/var/run/docker.sock:/var/run/docker.sock", dockertest.Inspect(t, job, `{{index .HostConfig.Binds 0}}`))
	require.Equal(t, "45", dockertest.Inspect(t, job, "{{.Config.StopTimeout}}"), "Pumba cleans tc rules only on SIGTERM: it gets 45 s")
	require.Equal(t, "netfault", dockertest.Inspect(t, job, `{{index .Config.Labels "dsplab.job.kind"}}`))
	require.Eventually(t, func() bool {
		return strings.Contains(logsOf(t, job), "["+name(p, "analyzer-1")+"] via "+dockertest.NettoolsImage+": tc qdisc add dev eth0 root netem delay 100ms 10ms 20.00 distribution normal")
	}, 30*time.Second, 100*time.Millisecond, "the stand-in runs tc by exec in its sidecar (a busy engine takes seconds)")

	require.Eventually(t, func() bool { g, _ := m.Get(f.ID); return g.State == StateReverted }, 45*time.Second, 100*time.Millisecond)
	require.Empty(t, markers(t, p), "the Pumba job is removed")
}

func TestAPartitionCutsBothDirectionsAndConflictsWithOtherNetworkFaults(t *testing.T) {
	m, _, p := setupNetem(t)
	ip := func(svc string) string {
		return dockertest.Inspect(t, name(p, svc), `{{(index .NetworkSettings.Networks "`+p.Network+`").IPAddress}}`)
	}
	f, err := m.Start(t.Context(), Spec{Type: Partition, Target: "analyzer-1", Peer: "analyzer-2", Duration: time.Minute})
	require.NoError(t, err)
	require.Contains(t, f.Command, "iptables --duration 1m0s --iptables-image "+dockertest.NettoolsImage+" --pull-image=false --source "+ip("analyzer-2")+"/32 --source "+ip("analyzer-1")+"/32 loss --probability 1.0 "+name(p, "analyzer-1")+" "+name(p, "analyzer-2"))
	require.Equal(t, "analyzer-2", f.Peer)
	job := "dsplab-netem-" + f.ID
	for _, side := range [][2]string{{"analyzer-1", "analyzer-2"}, {"analyzer-2", "analyzer-1"}} {
		rule := "[" + name(p, side[0]) + "] via " + dockertest.NettoolsImage + ": iptables -I INPUT -i eth0 -s " + ip(side[1]) + "/32 -m statistic --mode random --probability 1.00 -j DROP (exit 0)"
		require.Eventually(t, func() bool { return strings.Contains(logsOf(t, job), rule) }, 10*time.Second, 100*time.Millisecond,
			"a sidecar in %s's namespace drops what comes from %s: %s", side[0], side[1], logsOf(t, job))
	}

	_, err = m.Start(t.Context(), Spec{Type: Loss, Target: "analyzer-2", Percent: 10, Duration: time.Minute})
	require.ErrorIs(t, err, ErrConflict, "the peer's network is taken too")
	_, err = m.Start(t.Context(), Spec{Type: Pause, Target: "analyzer-2", Duration: time.Minute})
	require.NoError(t, err, "a container fault does not conflict with a network one")

	// Stopped early: Pumba gets SIGTERM and cleans up at once.
	start := time.Now()
	got, err := m.StopFault(t.Context(), f.ID)
	require.NoError(t, err)
	require.Equal(t, StateReverted, got.State)
	require.Less(t, time.Since(start), 20*time.Second, "Pumba ended on SIGTERM, not at the 45 s kill")
}

func TestAPumbaThatFailsMarksTheFaultFailed(t *testing.T) {
	m, _, p := setupNetem(t)
	dockertest.BuildK6Image(t)
	m.pumba.Image = dockertest.K6Image // not Pumba: k6 rejects Pumba's arguments and exits non-zero
	f, err := m.Start(t.Context(), Spec{Type: Rate, Target: "analyzer-1", Rate: "1mbit", Duration: time.Minute})
	require.NoError(t, err)
	require.Eventually(t, func() bool { g, _ := m.Get(f.ID); return g.State == StateFailed }, 20*time.Second, 100*time.Millisecond)
	g, _ := m.Get(f.ID)
	require.Contains(t, g.Error, "pumba exited")
	require.Empty(t, m.Active())
	require.Eventually(t, func() bool { return len(markers(t, p)) == 0 }, 10*time.Second, 100*time.Millisecond)
}

func TestNetworkFaultsAreReconciledAfterARestart(t *testing.T) {
	m1, rt, p := setupNetem(t)
	// Each platform is "killed" (Close: no revert) right after its start,
	// so no timer of theirs can fire, however slow the engine is.
	short, err := m1.Start(t.Context(), Spec{Type: Loss, Target: "analyzer-1", Percent: 5, Duration: 3 * time.Second})
	require.NoError(t, err)
	m1.Close()
	m1b := New(rt, Limits{MaxDuration: time.Hour, MaxConcurrent: 10}, pumbaConfig(), slog.New(slog.DiscardHandler))
	long, err := m1b.Start(t.Context(), Spec{Type: Duplicate, Target: "analyzer-2", Percent: 5, Duration: 60 * time.Second})
	require.NoError(t, err)
	m1b.Close()
	for time.Now().Before(*short.EndsAt) {
		time.Sleep(100 * time.Millisecond)
	}

	m2 := New(rt, Limits{MaxDuration: time.Hour, MaxConcurrent: 10}, pumbaConfig(), slog.New(slog.DiscardHandler))
	defer m2.Close()
	require.NoError(t, m2.Reconcile(t.Context()))
	require.Eventually(t, func() bool { g, _ := m2.Get(short.ID); return g.State == StateReverted }, 30*time.Second, 100*time.Millisecond,
		"expired: removed and its tc rules cleaned in the background")
	got, err := m2.Get(short.ID)
	require.NoError(t, err)
	require.Equal(t, "done", got.Cleanup, "tc qdisc del ran by exec in a tail -f /dev/null sidecar")
	got, err = m2.Get(long.ID)
	require.NoError(t, err)
	require.Equal(t, StateActive, got.State, "still running: taken over")
	_, err = m2.StopFault(t.Context(), long.ID)
	require.NoError(t, err)
	require.Eventually(t, func() bool { g, _ := m2.Get(long.ID); return g.State == StateReverted }, 15*time.Second, 100*time.Millisecond)
	require.Eventually(t, func() bool { return len(markers(t, p)) == 0 }, 10*time.Second, 100*time.Millisecond)
}

func TestNetworkFaultValidation(t *testing.T) {
	lim := Limits{MaxDuration: time.Minute}
	for _, tc := range []struct {
		spec  Spec
		field string
	}{
		{Spec{Type: Delay, Target: "a", Duration: time.Second}, "delayMs"},
		{Spec{Type: Delay, Target: "a", Duration: time.Second, DelayMs: 10, JitterMs: 20}, "jitterMs"},
		{Spec{Type: Delay, Target: "a", Duration: time.Second, DelayMs: 10, Distribution: "zipf"}, "distribution"},
		{Spec{Type: Loss, Target: "a", Duration: time.Second, Percent: 150}, "percent"},
		{Spec{Type: Corrupt, Target: "a", Duration: time.Second, Percent: 5, Correlation: 101}, "correlation"},
		{Spec{Type: Rate, Target: "a", Duration: time.Second, Rate: "fast"}, "rate"},
		// Pumba 1.1.7 refuses every rate but ^[0-9]+[gmk]?bit$ (exit 1;
		// see test/standins/pumba/README.md), though tc knows these units.
		{Spec{Type: Rate, Target: "a", Duration: time.Second, Rate: "1tbit"}, "rate"},
		{Spec{Type: Rate, Target: "a", Duration: time.Second, Rate: "100kbps"}, "rate"},
		{Spec{Type: Rate, Target: "a", Duration: time.Second, Rate: "1mbps"}, "rate"},
		{Spec{Type: Rate, Target: "a", Duration: time.Second, Rate: "8bps"}, "rate"},
		{Spec{Type: Rate, Target: "a", Duration: time.Second, Rate: "1Mbit"}, "rate"},
		// Without jitter, Pumba's delay command means something else to tc.
		{Spec{Type: Delay, Target: "a", Duration: time.Second, DelayMs: 100, Distribution: "normal"}, "distribution"},
		{Spec{Type: Delay, Target: "a", Duration: time.Second, DelayMs: 100, Correlation: 20}, "correlation"},
		{Spec{Type: Partition, Target: "a", Duration: time.Second}, "peer"},
		{Spec{Type: Partition, Target: "a", Peer: "a", Duration: time.Second}, "peer"},
	} {
		err := tc.spec.Validate(lim, 2)
		var ve *ValidationError
		require.ErrorAs(t, err, &ve, "%+v", tc.spec)
		require.Equal(t, tc.field, ve.Problems[0].Field)
	}
	for _, ok := range []Spec{
		{Type: Rate, Target: "a", Duration: time.Second, Rate: "100bit"},
		{Type: Rate, Target: "a", Duration: time.Second, Rate: "100kbit"},
		{Type: Rate, Target: "a", Duration: time.Second, Rate: "1mbit"},
		{Type: Rate, Target: "a", Duration: time.Second, Rate: "1gbit"},
		{Type: Delay, Target: "a", Duration: time.Second, DelayMs: 100},
		{Type: Delay, Target: "a", Duration: time.Second, DelayMs: 100, JitterMs: 100, Correlation: 20, Distribution: "normal"},
	} {
		require.NoError(t, ok.Validate(lim, 2), "%+v", ok)
	}
}

func TestARateOutsidePumbasGrammarIsRefusedNamingTheAcceptedForms(t *testing.T) {
	err := (&Spec{Type: Rate, Target: "a", Duration: time.Second, Rate: "1mbps"}).Validate(Limits{MaxDuration: time.Minute}, 2)
	require.ErrorContains(t, err, "bit, kbit, mbit or gbit")
}
