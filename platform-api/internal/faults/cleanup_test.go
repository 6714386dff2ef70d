package faults

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/platform-api/internal/dockertest"
)

// The cleanup sidecar against the real engine, with nettools images whose
// ENTRYPOINT is tail -f /dev/null as upstream's is; their tc and iptables
// are the pumba stand-in's (print and succeed, or hang). Debian's real tc
// in the e2e image answers "Cannot delete qdisc with handle of zero" (exit
// 2) when there is nothing to delete: checked by hand, see
// test/standins/pumba/README.md.

// sidecars lists the project's nettools sidecars.
func sidecars(t *testing.T, p *dockertest.Project) []string {
	ours := markers(t, p)
	var out []string
	for _, c := range dockertest.Containers(t, "dsplab.job.kind=nettools") {
		if slices.Contains(ours, c) {
			out = append(out, c)
		}
	}
	return out
}

func TestTheCleanupSidecarExecsItsToolInAnImageWhoseEntrypointIsTail(t *testing.T) {
	_, rt, p := setupNetem(t)
	require.Equal(t, "[tail -f /dev/null]", dockertest.Inspect(t, dockertest.NettoolsImage, "{{.Config.Entrypoint}}"))
	code, out, err := rt.RunInNetns(t.Context(), name(p, "analyzer-1"), dockertest.NettoolsImage, []string{"tc", "qdisc", "del", "dev", "eth0", "root"})
	require.NoError(t, err)
	require.EqualValues(t, 0, code)
	require.Equal(t, "nettools stand-in: tc qdisc del dev eth0 root", out, "the tool ran, not tail with the tool as arguments")
	require.Empty(t, sidecars(t, p), "the sidecar is removed")
}

func TestACleanupToolThatHangsEndsAtItsDeadlineAndLeavesNoSidecar(t *testing.T) {
	_, rt, p := setupNetem(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, _, err := rt.RunInNetns(ctx, name(p, "analyzer-1"), dockertest.NettoolsHangImage, []string{"tc", "qdisc", "del", "dev", "eth0", "root"})
		done <- err
	}()
	require.Eventually(t, func() bool { return len(sidecars(t, p)) == 1 }, 20*time.Second, 100*time.Millisecond, "the sidecar runs")
	select {
	case err := <-done:
		t.Fatalf("returned while its tool hangs: %v", err)
	default:
	}
	cancel() // the deadline
	require.ErrorIs(t, <-done, context.Canceled)
	require.Eventually(t, func() bool { return len(sidecars(t, p)) == 0 }, 20*time.Second, 100*time.Millisecond, "removed after all")
}

func TestAnExpiredNetworkFaultWhoseCleanupHangsIsReportedAndKeptForTheNextStart(t *testing.T) {
	m1, rt, p := setupNetem(t)
	f, err := m1.Start(t.Context(), Spec{Type: Loss, Target: "analyzer-1", Percent: 5, Duration: 2 * time.Second})
	require.NoError(t, err)
	m1.Close() // killed
	job := "dsplab-netem-" + f.ID
	dockertest.WaitState(t, job, "exited", 30*time.Second) // Pumba's duration passed

	cfg := pumbaConfig()
	cfg.NettoolsImage, cfg.CleanupTimeout = dockertest.NettoolsHangImage, time.Second
	m2 := New(rt, Limits{MaxDuration: time.Hour, MaxConcurrent: 10}, cfg, slog.New(slog.DiscardHandler))
	defer m2.Close()
	require.NoError(t, m2.Reconcile(t.Context()), "returns while the cleanup is blocked")
	got, err := m2.Get(f.ID)
	require.NoError(t, err)
	require.Equal(t, "pending", got.Cleanup)
	require.Equal(t, "reverting", got.State)
	require.Eventually(t, func() bool { return len(sidecars(t, p)) == 1 }, 20*time.Second, 100*time.Millisecond, "the cleanup is blocked in its sidecar")
	_, err = m2.Start(t.Context(), Spec{Type: Delay, Target: "analyzer-1", DelayMs: 10, Duration: time.Minute})
	require.ErrorIs(t, err, ErrConflict, "its container is not free while the cleanup may delete a root qdisc")

	require.Eventually(t, func() bool { g, _ := m2.Get(f.ID); return g.State == StateFailed }, 60*time.Second, 200*time.Millisecond)
	got, _ = m2.Get(f.ID)
	require.True(t, strings.HasPrefix(got.Cleanup, "failed: tc qdisc del dev eth0 root in "), got.Cleanup)
	require.Contains(t, got.Cleanup, "(3 tries)")
	require.Contains(t, got.Cleanup, "deadline exceeded")
	require.Contains(t, got.Error, "leftover network rules not removed")
	require.Eventually(t, func() bool { return len(sidecars(t, p)) == 0 }, 20*time.Second, 100*time.Millisecond)
	require.Equal(t, []string{job}, markers(t, p), "the marker stays: the next start tries again")

	// The next start, with a nettools image that works, finishes the job.
	m3 := New(rt, Limits{MaxDuration: time.Hour, MaxConcurrent: 10}, pumbaConfig(), slog.New(slog.DiscardHandler))
	defer m3.Close()
	require.NoError(t, m3.Reconcile(t.Context()))
	require.Eventually(t, func() bool { g, _ := m3.Get(f.ID); return g.State == StateReverted }, 30*time.Second, 100*time.Millisecond)
	got, _ = m3.Get(f.ID)
	require.Equal(t, "done", got.Cleanup)
	require.Empty(t, markers(t, p))
}
