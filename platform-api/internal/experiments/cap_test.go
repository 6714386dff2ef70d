package experiments

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
)

// Experiments run one at a time: a second one would judge the first one's
// faults, count its traffic, and put the distributor's overlays back out
// of order. It is refused while the first runs, and accepted after.
func TestASecondExperimentIsRefusedWhileOneRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, m, _ := newWorld(analyzerCrash)
		first, err := m.Start(crashDefinition())
		require.NoError(t, err)
		_, err = m.Start(crashDefinition())
		require.ErrorIs(t, err, apierr.ErrTooMany)
		require.ErrorContains(t, err, first.ID)
		require.Equal(t, 429, apierr.Status(err))
		require.Len(t, m.List(), 1, "nothing was started")

		m.Wait()
		_, err = m.Start(crashDefinition())
		require.NoError(t, err, "once the first has its verdict")
		m.Wait()
	})
}

// Ended experiments are remembered up to MaxFinished; the oldest are
// forgotten (a running one never is).
func TestOnlyTheLastMaxFinishedExperimentsAreRemembered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, m, _ := newWorld(analyzerCrash)
		d := Definition{Name: "quick", RecoverySeconds: 0}
		require.NoError(t, d.Validate(600))
		var first string
		for i := range MaxFinished + 5 {
			e, err := m.Start(d)
			require.NoError(t, err)
			if i == 0 {
				first = e.ID
			}
			m.Wait()
			time.Sleep(time.Second) // distinct start times
		}
		require.Len(t, m.List(), MaxFinished)
		_, err := m.Get(first)
		require.ErrorIs(t, err, apierr.ErrNotFound, "the oldest is forgotten")
	})
}

// The end of an aborted experiment says what became of its fault: a revert
// the engine refused is reported as such, not as reverted, in the
// timeline, the record's cleanup errors and the reason; the verdict stays
// the one the run reached.
func TestAnAbortedExperimentSaysWhenItsFaultCouldNotBeReverted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, m, _ := newWorld(analyzerCrash)
		w.stopErr = fmt.Errorf("%w: kill on analyzer-2, attempt 1: engine unreachable", apierr.ErrRevertFailed)
		e, err := m.Start(crashDefinition())
		require.NoError(t, err)
		time.Sleep(15 * time.Second)
		_, err = m.Stop(e.ID)
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		var said []string
		for _, ev := range e.Timeline {
			if strings.HasPrefix(ev.Kind, "fault-stop") {
				said = append(said, ev.Kind+": "+ev.Message)
			}
		}
		require.Len(t, said, 1)
		require.Contains(t, said[0], "fault-stop-failed: kill on analyzer-2 (f-analyzer-2) not reverted: revert failed")
		require.Equal(t, Aborted, e.State)
		require.Len(t, e.CleanupErrors, 1)
		require.Contains(t, e.CleanupErrors[0], "fault kill on analyzer-2 (f-analyzer-2) NOT reverted: revert failed")
		require.True(t, strings.HasPrefix(e.Reason, "stopped by request; cleanup failed: fault kill on analyzer-2 (f-analyzer-2) NOT reverted"), e.Reason)
		kinds := timelineKinds(e)
		require.Equal(t, "verdict", kinds[len(kinds)-1])
		require.Contains(t, kinds, "cleanup-failed")
	})
}

// An overlay the distributor refuses to take back at the end is a cleanup
// error: the checks passed, so the verdict stays passed, and the reason,
// the timeline and the record name what was not put back.
func TestAnOverlayNotPutBackIsACleanupErrorThatKeepsTheVerdict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, _, store := newWorld(func(q string, at float64) (float64, bool) { return analyzerCrash(q, 0) })
		dist := &distWorld{overlay: `{"bad":"an overlay the distributor no longer takes"}`, start: time.Now()}
		m := NewManager(Options{Querier: w, Faults: w, Traffic: trafficWorld{w}, Alerts: store, Distributor: dist, MaxFaultSeconds: 600, Logger: slog.New(slog.DiscardHandler)})
		d := Definition{
			Name:            "rate-limit",
			ConfigChanges:   []ConfigChange{{AtSeconds: 1, Overlay: map[string]any{"limits": map[string]any{"global": map[string]any{"rate": 100}}}}},
			Checks:          []Check{{Name: "all healthy after", Query: "distributor_healthy_analyzers", Comparator: ">=", Threshold: 3, Phase: "after"}},
			RecoverySeconds: 30,
		}
		e, err := m.Start(d)
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Passed, e.State, e.Reason)
		require.Equal(t, []string{"the distributor's overlay NOT restored: distributor answered 400: limits.global.rate: must not be negative"}, e.CleanupErrors)
		require.Equal(t, "cleanup failed: "+e.CleanupErrors[0], e.Reason)
		require.Contains(t, timelineKinds(e), "cleanup-failed")
		require.NotContains(t, timelineKinds(e), "config-restored")
	})
}

// timelineKinds are the kinds of e's timeline, in order.
func timelineKinds(e Experiment) []string {
	var out []string
	for _, ev := range e.Timeline {
		out = append(out, ev.Kind)
	}
	return out
}
