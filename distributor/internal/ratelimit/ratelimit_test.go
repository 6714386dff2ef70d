package ratelimit

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestUnlimitedByDefault(t *testing.T) {
	l := New(Config{})
	for i := 0; i < 10_000; i++ {
		require.True(t, l.Allow("t").OK)
	}
}

func TestGlobalLimitAllowsBurstThenRateAndSaysWhenToRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(Config{Global: Rate{Rate: 10, Burst: 5}})
		for i := 0; i < 5; i++ {
			require.True(t, l.Allow("a").OK)
		}
		d := l.Allow("b")
		require.False(t, d.OK)
		require.Equal(t, "global", d.Scope)
		require.Equal(t, 100*time.Millisecond, d.RetryAfter)

		time.Sleep(time.Second) // 10 tokens/s refills up to the burst of 5
		n := 0
		for l.Allow("a").OK {
			n++
		}
		require.Equal(t, 5, n)

		// Over 10 s at a steady 20 req/s, exactly 10/s get through.
		ok := 0
		for i := 0; i < 200; i++ {
			time.Sleep(50 * time.Millisecond)
			if l.Allow("a").OK {
				ok++
			}
		}
		require.InDelta(t, 100, ok, 1)
	})
}

func TestTenantLimitIsPerTenantWithOverrides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(Config{PerTenant: Rate{Rate: 1, Burst: 2}, TenantOverrides: map[string]Rate{"vip": {Rate: 100, Burst: 100}}})
		require.True(t, l.Allow("a").OK)
		require.True(t, l.Allow("a").OK)
		d := l.Allow("a")
		require.Equal(t, Decision{Scope: "tenant", RetryAfter: time.Second}, d)
		require.True(t, l.Allow("b").OK, "another tenant has its own bucket")
		for i := 0; i < 100; i++ {
			require.True(t, l.Allow("vip").OK)
		}
	})
}

func TestATenantRefusalTakesNoGlobalToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(Config{Global: Rate{Rate: 1, Burst: 3}, PerTenant: Rate{Rate: 1, Burst: 1}})
		require.True(t, l.Allow("noisy").OK)
		for i := 0; i < 10; i++ {
			require.Equal(t, "tenant", l.Allow("noisy").Scope)
		}
		require.True(t, l.Allow("quiet-1").OK)
		require.True(t, l.Allow("quiet-2").OK)
		require.Equal(t, "global", l.Allow("quiet-3").Scope)
	})
}

func TestIdleTenantBucketsAreDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(Config{PerTenant: Rate{Rate: 1, Burst: 1}})
		for i := 0; i < 1000; i++ {
			l.Allow(fmt.Sprintf("t-%d", i))
		}
		require.Equal(t, 1000, l.Tenants())
		time.Sleep(idleTenantTTL + 2*time.Minute)
		l.Allow("fresh")
		require.Equal(t, 1, l.Tenants())
	})
}
