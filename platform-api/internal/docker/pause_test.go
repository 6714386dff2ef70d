package docker

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
)

// The engine's answer when runc gives up freezing a busy container (seen in
// the e2e suite beside stress-ng): retried, not final.
var errFreeze = errors.New("pause 08fb514b21fe: Error response from daemon: Cannot pause container 08fb: OCI runtime pause failed: unable to freeze: unknown")

func TestAPauseWhoseFreezeRuncGaveUpOnIsTriedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		err := retryFreeze(context.Background(), 5, func() error {
			calls++
			if calls < 3 {
				return errFreeze
			}
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, 3, calls)
	})
}

func TestAPauseThatKeepsFailingToFreezeStopsAfterItsTriesAndSaysSo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		err := retryFreeze(context.Background(), 5, func() error { calls++; return errFreeze })
		require.ErrorIs(t, err, errFreeze)
		require.ErrorContains(t, err, "after 5 tries")
		require.Equal(t, 5, calls)
	})
}

func TestOtherPauseErrorsAreNotRetried(t *testing.T) {
	calls := 0
	other := errors.New("pause abc: Container abc is not running")
	err := retryFreeze(context.Background(), 5, func() error { calls++; return other })
	require.Equal(t, other, err)
	require.Equal(t, 1, calls)
}

func TestAPauseRetryEndsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		err := retryFreeze(ctx, 5, func() error {
			calls++
			cancel()
			return errFreeze
		})
		require.ErrorIs(t, err, errFreeze)
		require.ErrorContains(t, err, "context canceled")
		require.Equal(t, 1, calls)
	})
}
