package breaker

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

var cfg = Config{FailureThreshold: 2, BaseBackoff: time.Second, MaxBackoff: 8 * time.Second, StableAfter: 30 * time.Second}

func TestBreakerOpensAfterConsecutiveFailuresOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(cfg, nil)
		b.Failure()
		b.Success() // resets the count
		b.Failure()
		require.Equal(t, Closed, b.State())
		b.Failure()
		require.Equal(t, Open, b.State())
		require.False(t, b.Allow())
	})
}

func TestBreakerHalfOpensAfterBackoffAndAllowsOneTrial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var changes []string
		b := New(cfg, func(from, to State) { changes = append(changes, from.String()+">"+to.String()) })
		b.Failure()
		b.Failure()
		time.Sleep(999 * time.Millisecond)
		require.False(t, b.Allow())
		time.Sleep(time.Millisecond)
		require.True(t, b.Allow())
		require.Equal(t, HalfOpen, b.State())
		require.False(t, b.Allow(), "only one trial at a time")
		b.Success()
		require.Equal(t, Closed, b.State())
		require.True(t, b.Allow())
		require.Equal(t, []string{"closed>open", "open>half-open", "half-open>closed"}, changes)
	})
}

func TestAFailedTrialReopensWithoutGrowingTheBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(cfg, nil)
		b.Failure()
		b.Failure()
		for i := 0; i < 5; i++ { // down for a while: every trial fails
			time.Sleep(b.Backoff())
			require.True(t, b.Allow())
			b.Failure()
			require.Equal(t, Open, b.State())
		}
		require.Equal(t, time.Second, b.Backoff(), "a target that is just down is retried every base backoff")
	})
}

func TestFlappingGrowsTheBackoffAndStabilityResetsIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(cfg, nil)
		flap := func() {
			b.Failure()
			b.Failure()
			time.Sleep(b.Backoff())
			require.True(t, b.Allow())
			b.Success()
			time.Sleep(2 * time.Second) // up briefly, then down again
		}
		var seen []time.Duration
		for i := 0; i < 5; i++ {
			flap()
			seen = append(seen, b.Backoff())
		}
		require.Equal(t, []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}, seen)

		time.Sleep(31 * time.Second) // stable for longer than StableAfter
		b.Success()
		b.Failure()
		b.Failure()
		require.Equal(t, time.Second, b.Backoff())
	})
}
