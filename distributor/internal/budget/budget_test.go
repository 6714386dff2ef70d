package budget

import (
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLargeHoldsShareSevenEighthsAndSmallOnesKeepTheirEighth(t *testing.T) {
	b := New(8 << 20) // small pool 1 MiB, large pool 7 MiB
	big := b.Open()
	require.NoError(t, big.Reserve(6<<20))
	other := b.Open()
	require.ErrorIs(t, other.Reserve(2<<20), ErrExhausted, "the large pool is full")
	require.Zero(t, other.Held(), "a refused reservation holds nothing")
	small := b.Open()
	require.NoError(t, small.Reserve(4<<10), "small requests are still served")
	require.Equal(t, int64(6<<20+4<<10), b.InUse())

	require.ErrorIs(t, b.Open().Reserve(8<<20), ErrTooLarge, "never room: not a Retry-After")
	big.Release()
	big.Release() // twice is harmless
	require.NoError(t, other.Reserve(2<<20))
	other.Release()
	small.Release()
	require.Zero(t, b.InUse())
	require.EqualValues(t, 2, b.Refused())
}

func TestAHoldGrowingPastSmallHoldCountsAsLarge(t *testing.T) {
	b := New(8 << 20)
	h := b.Open()
	require.NoError(t, h.Reserve(SmallHold))
	require.Zero(t, b.large)
	require.NoError(t, h.Reserve(1))
	require.Equal(t, int64(SmallHold+1), b.large)
	require.NoError(t, h.Reserve(10))
	require.Equal(t, int64(SmallHold+11), b.large)
	h.Release()
	require.Zero(t, b.InUse())
	require.Zero(t, b.large)
}

// Small holds may use what large ones leave free, not only their eighth;
// large ones never take that eighth.
func TestSmallHoldsMayUseTheWholeBudgetWhenNoLargeOneNeedsIt(t *testing.T) {
	b := New(8 << 20)
	var holds []*Hold
	for range 200 { // 200 × 40 KiB = 7.8 MiB, far over an eighth
		h := b.Open()
		require.NoError(t, h.Reserve(40<<10))
		holds = append(holds, h)
	}
	require.ErrorIs(t, b.Open().Reserve(1<<20), ErrExhausted, "the budget is full")
	for _, h := range holds {
		h.Release()
	}
	require.Zero(t, b.InUse())
	big := b.Open()
	require.NoError(t, big.Reserve(7<<20))
	require.ErrorIs(t, b.Open().Reserve(128<<10), ErrExhausted, "large holds are at their seven eighths")
	require.NoError(t, b.Open().Reserve(40<<10), "the last eighth is the small ones'")
}

func TestNoBudgetRefusesNothing(t *testing.T) {
	var nilBudget *Budget
	h := nilBudget.Open()
	require.NoError(t, h.Reserve(1<<40))
	h.Release()
	u := New(0).Open()
	require.NoError(t, u.Reserve(1<<40))
	u.Release()
}

func TestConcurrentHoldsNeverPassThePools(t *testing.T) {
	b := New(1 << 20)
	var wg sync.WaitGroup
	var mu sync.Mutex
	most := int64(0)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				h := b.Open()
				for range 8 {
					if err := h.Reserve(40 << 10); err != nil {
						require.True(t, errors.Is(err, ErrExhausted) || errors.Is(err, ErrTooLarge))
						break
					}
					mu.Lock()
					most = max(most, b.InUse())
					mu.Unlock()
				}
				h.Release()
			}
		}()
	}
	wg.Wait()
	require.LessOrEqual(t, most, int64(1<<20))
	require.Zero(t, b.InUse())
}
