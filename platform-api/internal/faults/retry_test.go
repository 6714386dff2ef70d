package faults

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
)

// A revert that fails while the engine is unreachable is not given up:
// the fault stays reverting, holding its container, shows its attempts
// and last error, and is tried again after 1 s, 2 s, 4 s, ... until the
// engine answers. A stop tries again at once and says it failed.
func TestARevertThatFailsIsRetriedWithBackoffUntilTheEngineAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		rt := newFakeRuntime("analyzer-1")
		m := New(rt, Limits{MaxDuration: time.Hour, MaxConcurrent: 10}, Pumba{}, slog.New(slog.DiscardHandler))
		defer m.Close()
		f, err := m.Start(ctx, Spec{Type: Pause, Target: "analyzer-1", Duration: 10 * time.Second})
		require.NoError(t, err)
		rt.setDown(true)

		time.Sleep(10 * time.Second) // the duration elapses; the unpause fails
		synctest.Wait()
		got, _ := m.Get(f.ID)
		require.Equal(t, StateReverting, got.State)
		require.Equal(t, 1, got.RevertAttempts)
		require.Contains(t, got.Error, "Cannot connect to the Docker daemon")
		require.Equal(t, time.Now().Add(time.Second).UTC(), *got.NextRevertAt)
		require.Equal(t, "paused", rt.stateOf("analyzer-1"))

		_, err = m.Start(ctx, Spec{Type: Stop, Target: "analyzer-1", Duration: time.Minute})
		require.ErrorIs(t, err, ErrConflict, "the fault still holds its container")
		require.ErrorContains(t, err, "being reverted (1 attempts")

		time.Sleep(time.Second)
		synctest.Wait()
		got, _ = m.Get(f.ID)
		require.Equal(t, 2, got.RevertAttempts, "retried after 1 s")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		got, _ = m.Get(f.ID)
		require.Equal(t, 3, got.RevertAttempts, "then after 2 s")

		got, err = m.StopFault(ctx, f.ID)
		require.ErrorIs(t, err, ErrRevertFailed, "a stop tries at once, and says it failed")
		require.Equal(t, http.StatusBadGateway, apierr.Status(err))
		require.ErrorContains(t, err, "attempt 4")
		require.Equal(t, StateReverting, got.State)

		rt.setDown(false)
		time.Sleep(8 * time.Second) // the 4th failure waits 8 s
		synctest.Wait()
		got, _ = m.Get(f.ID)
		require.Equal(t, StateReverted, got.State)
		require.Equal(t, 5, got.RevertAttempts)
		require.Empty(t, got.Error)
		require.Nil(t, got.NextRevertAt)
		require.Equal(t, "duration elapsed", got.EndReason)
		require.Equal(t, "running", rt.stateOf("analyzer-1"))
		require.Empty(t, rt.markers, "the marker is removed once reverted")
	})
}

// Close ends the retries: the marker stays for the next start.
func TestCloseEndsTheRetriesAndKeepsTheMarker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newFakeRuntime("analyzer-1")
		m := New(rt, Limits{MaxDuration: time.Hour, MaxConcurrent: 10}, Pumba{}, slog.New(slog.DiscardHandler))
		f, err := m.Start(context.Background(), Spec{Type: Pause, Target: "analyzer-1", Duration: time.Second})
		require.NoError(t, err)
		rt.setDown(true)
		time.Sleep(time.Second)
		synctest.Wait()
		m.Close() // returns: nothing is left running (synctest would wait for it)
		got, _ := m.Get(f.ID)
		require.Equal(t, StateReverting, got.State)
		require.Len(t, rt.markers, 1)
	})
}

// Close waits for what the manager started: a network fault's Pumba
// watcher (which waits for its job to exit) ends with it, instead of
// outliving the manager until the job's time is up.
func TestCloseEndsThePumbaWatchers(t *testing.T) {
	rt := newFakeRuntime("analyzer-1")
	m := New(rt, Limits{MaxDuration: time.Hour, MaxConcurrent: 10}, Pumba{Image: "pumba", NettoolsImage: "nettools"}, slog.New(slog.DiscardHandler))
	_, err := m.Start(context.Background(), Spec{Type: Loss, Target: "analyzer-1", Percent: 10, Duration: time.Hour})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return rt.waits.Load() == 1 }, 5*time.Second, 10*time.Millisecond, "the watcher waits for the job")
	m.Close()
	require.Zero(t, rt.waits.Load(), "Close returned with the watcher still waiting")
}
