package faults

import (
	"context"
	"log/slog"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
	"github.com/dsplab/dsplab/platform-api/internal/docker"
	"github.com/dsplab/dsplab/platform-api/internal/dockertest"
)

// tcIn runs Debian's tc (dockertest.NettoolsTcImage) in container's network
// namespace ("none": a namespace of its own) and returns its words and
// whether it succeeded.
func tcIn(t *testing.T, container string, args ...string) (string, bool) {
	t.Helper()
	net := "container:" + container
	if container == "none" {
		net = "none"
	}
	argv := append([]string{"run", "--rm", "--network", net, "--cap-add", "NET_ADMIN", "--entrypoint", "tc", dockertest.NettoolsTcImage}, args...)
	out, err := exec.Command("docker", argv...).CombinedOutput()
	return strings.TrimSpace(string(out)), err == nil
}

// This runs on the real engine and its kernel with Debian's tc, and with
// the Pumba stand-in (test/standins/pumba/, which applies netem through its
// sidecar as Pumba 1.1.7 does). What the kernel has is asked directly
// first, then the platform must agree: on a kernel without netem (this
// project's machines) the start is refused with ErrNetemMissing (501)
// carrying tc's words and the way out, and nothing is left behind; on a
// kernel with netem (the VM of make e2e-netem) the qdisc is really in the
// target's namespace while the fault is active, and gone after its stop.
func TestANetemFaultIsRefusedClearlyOnAKernelWithoutNetemAndAppliedOnOneWithIt(t *testing.T) {
	dockertest.BuildNettoolsTcImage(t)
	p := dockertest.NewProject(t)
	p.Run("analyzer-1", "target")
	rt, err := docker.New(t.Context(), p.Name)
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	cfg := pumbaConfig()
	cfg.NettoolsImage = dockertest.NettoolsTcImage
	m := New(rt, Limits{MaxDuration: time.Hour, MaxConcurrent: 10}, cfg, slog.New(slog.DiscardHandler))
	t.Cleanup(m.Close)

	said, hasNetem := tcIn(t, "none", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms")
	uname, _ := exec.Command("uname", "-r").Output()
	t.Logf("kernel %s: tc qdisc add dev lo root netem delay 1ms: ok=%v %q", strings.TrimSpace(string(uname)), hasNetem, said)

	f, err := m.Start(t.Context(), Spec{Type: Loss, Target: "analyzer-1", Duration: time.Minute, Percent: 30})
	if !hasNetem {
		require.ErrorIs(t, err, ErrNetemMissing)
		require.Equal(t, http.StatusNotImplemented, apierr.Status(err))
		require.ErrorContains(t, err, "netem is missing in this kernel")
		require.ErrorContains(t, err, said, "tc's own words are in the answer")
		require.ErrorContains(t, err, "make e2e-netem")
		require.Empty(t, m.List(), "no fault is recorded")
		require.Empty(t, markers(t, p), "no Pumba job was made")
		left, _ := exec.Command("docker", "ps", "-aq", "--filter", "label="+docker.LabelJobKind+"=nettools", "--filter", "label=com.docker.compose.project="+p.Name).Output()
		require.Empty(t, strings.TrimSpace(string(left)), "the probe's sidecar is removed")
		return
	}
	require.NoError(t, err)
	target := name(p, "analyzer-1")
	require.Eventually(t, func() bool {
		out, _ := tcIn(t, target, "qdisc", "show", "dev", "eth0")
		return strings.Contains(out, "netem") && strings.Contains(out, "loss 30%")
	}, time.Minute, time.Second, "the netem qdisc is in the target's namespace")
	_, err = m.StopFault(t.Context(), f.ID)
	require.NoError(t, err)
	out, _ := tcIn(t, target, "qdisc", "show", "dev", "eth0")
	require.NotContains(t, out, "netem", "the qdisc is gone after the stop")
}

// netemAnswers is the fake engine with a tc that answers as told.
type netemAnswers struct {
	*fakeRuntime
	code  int64
	out   string
	err   error
	asked atomic.Int64
}

func (r *netemAnswers) RunInNetns(_ context.Context, target, _ string, cmd []string) (int64, string, error) {
	if target == docker.OwnNetns && cmd[0] == "tc" {
		r.asked.Add(1)
	}
	return r.code, r.out, r.err
}

// Only tc's words for a missing netem refuse a fault; no answer, or
// another one, lets it go on (logged); a kernel seen with netem is not
// asked again. (The refusal on a real kernel is the test above.)
func TestOnlyTcsWordsForAMissingNetemRefuseANetemFault(t *testing.T) {
	cases := []struct {
		name    string
		rt      *netemAnswers
		refused bool
	}{
		{"unknown qdisc kind", &netemAnswers{code: 2, out: "Error: Specified qdisc kind is unknown."}, true},
		{"operation not supported", &netemAnswers{code: 2, out: "RTNETLINK answers: Operation not supported"}, true},
		{"no answer", &netemAnswers{code: -1, err: context.DeadlineExceeded}, false},
		{"another answer", &netemAnswers{code: 1, out: "Error: Exclusivity flag on, cannot modify."}, false},
		{"netem present", &netemAnswers{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.rt.fakeRuntime = newFakeRuntime("analyzer-1", "analyzer-2")
			m := New(c.rt, Limits{MaxDuration: time.Hour, MaxConcurrent: 10}, Pumba{Image: "pumba", NettoolsImage: "nettools"}, slog.New(slog.DiscardHandler))
			defer m.Close()
			_, err := m.Start(t.Context(), Spec{Type: Delay, Target: "analyzer-1", Duration: time.Minute, DelayMs: 100})
			if c.refused {
				require.ErrorIs(t, err, ErrNetemMissing)
				require.ErrorContains(t, err, c.rt.out)
				require.Empty(t, m.List())
				return
			}
			require.NoError(t, err)
			_, err = m.Start(t.Context(), Spec{Type: Partition, Target: "analyzer-2", Peer: "analyzer-1", Duration: time.Minute})
			require.ErrorIs(t, err, ErrConflict, "a partition needs no netem: no check, and a conflict answers")
			_, err = m.Start(t.Context(), Spec{Type: Rate, Target: "analyzer-2", Duration: time.Minute, Rate: "1mbit"})
			require.NoError(t, err)
			want := int64(2)
			if c.rt.err == nil && c.rt.code == 0 {
				want = 1 // seen with netem: not asked again
			}
			require.Equal(t, want, c.rt.asked.Load())
		})
	}
}

// slowNetem is the fake engine whose netem check (tc in a sidecar) takes
// took to answer yes, as on an emulated or busy engine.
type slowNetem struct {
	*fakeRuntime
	took  time.Duration
	asked atomic.Int64
}

func (r *slowNetem) RunInNetns(ctx context.Context, target, _ string, cmd []string) (int64, string, error) {
	if target == docker.OwnNetns && cmd[0] == "tc" {
		r.asked.Add(1)
		select {
		case <-time.After(r.took):
		case <-ctx.Done():
			return -1, "", ctx.Err()
		}
	}
	return 0, "", nil
}

// One netem check at a time: fault starts that come while it runs wait
// for its answer instead of starting their own. A check slower than
// CleanupTimeout lets the start go on (as no answer does) but is not
// abandoned: it ends in the background, and the next start uses its
// answer instead of waiting again. Prepare (an experiment's start) asks
// it before any fault, so the faults at their offsets do not wait at all.
func TestOneNetemCheckServesEveryStartAndASlowOneIsNotAskedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := &slowNetem{fakeRuntime: newFakeRuntime("analyzer-1", "analyzer-2", "analyzer-3"), took: 50 * time.Second}
		m := New(rt, Limits{MaxDuration: time.Hour, MaxConcurrent: 10}, Pumba{Image: "pumba", NettoolsImage: "nettools", CleanupTimeout: 30 * time.Second}, slog.New(slog.DiscardHandler))
		defer m.Close()
		t0 := time.Now()
		var wg sync.WaitGroup
		for _, target := range []string{"analyzer-1", "analyzer-2"} {
			wg.Go(func() {
				_, err := m.Start(t.Context(), Spec{Type: Delay, Target: target, Duration: time.Minute, DelayMs: 100})
				require.NoError(t, err)
			})
		}
		wg.Wait()
		require.Equal(t, 30*time.Second, time.Since(t0), "both waited CleanupTimeout, then went on")
		require.EqualValues(t, 1, rt.asked.Load(), "one check for both")
		time.Sleep(25 * time.Second) // the check answers at 50 s
		t1 := time.Now()
		_, err := m.Start(t.Context(), Spec{Type: Loss, Target: "analyzer-3", Duration: time.Minute, Percent: 10})
		require.NoError(t, err)
		require.Zero(t, time.Since(t1), "netem was seen: no wait")
		require.EqualValues(t, 1, rt.asked.Load(), "not asked again")
	})
	synctest.Test(t, func(t *testing.T) {
		rt := &slowNetem{fakeRuntime: newFakeRuntime("analyzer-1"), took: 50 * time.Second}
		m := New(rt, Limits{MaxDuration: time.Hour, MaxConcurrent: 10}, Pumba{Image: "pumba", NettoolsImage: "nettools", CleanupTimeout: 30 * time.Second}, slog.New(slog.DiscardHandler))
		defer m.Close()
		what, err := m.Prepare(t.Context(), []Type{Kill, Pause})
		require.NoError(t, err)
		require.Empty(t, what, "container faults need nothing")
		require.Zero(t, rt.asked.Load())
		what, err = m.Prepare(t.Context(), []Type{Kill, Partition})
		require.NoError(t, err)
		require.Equal(t, "Pumba's images", what, "a partition needs Pumba, not netem")
		require.Zero(t, rt.asked.Load())
		t0 := time.Now()
		what, err = m.Prepare(t.Context(), []Type{Kill, Delay})
		require.NoError(t, err)
		require.Equal(t, 50*time.Second, time.Since(t0), "Prepare waits for the whole check")
		require.Contains(t, what, "netem (checked)")
		t1 := time.Now()
		_, err = m.Start(t.Context(), Spec{Type: Delay, Target: "analyzer-1", Duration: time.Minute, DelayMs: 100})
		require.NoError(t, err)
		require.Zero(t, time.Since(t1), "the fault at its offset does not wait")
		require.EqualValues(t, 1, rt.asked.Load())
	})
}

// A check refused for a missing netem in Prepare is the same clear error
// a fault's start answers.
func TestPrepareSaysNetemIsMissing(t *testing.T) {
	rt := &netemAnswers{fakeRuntime: newFakeRuntime("analyzer-1"), code: 2, out: "Error: Specified qdisc kind is unknown."}
	m := New(rt, Limits{MaxDuration: time.Hour, MaxConcurrent: 10}, Pumba{Image: "pumba", NettoolsImage: "nettools"}, slog.New(slog.DiscardHandler))
	defer m.Close()
	_, err := m.Prepare(t.Context(), []Type{Rate})
	require.ErrorIs(t, err, ErrNetemMissing)
	require.ErrorContains(t, err, "make e2e-netem")
}
