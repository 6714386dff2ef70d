package experiments

import (
	"fmt"
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
// the engine refused is reported as such, not as reverted.
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
	})
}
