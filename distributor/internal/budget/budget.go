// Package budget bounds the memory of the distributor's ingest path. Each
// request opens a Hold and reserves the bytes it is about to hold —
// received, decompressed, decoded, encoded — before it holds them; a
// reservation that does not fit is refused at once, so the distributor
// answers a fast 503 instead of growing until the collector starves
// everything else (health probes included).
//
// The budget is split in two pools, so that a few large requests cannot
// shut out the many small ones:
//
//   - the small pool, an eighth of the limit, serves holds of at most
//     SmallHold bytes in total: ordinary packets;
//   - the large pool, the rest, serves a hold from the moment its total
//     passes SmallHold (its reservation moves there).
//
// Invariant: the bytes reserved in each pool never pass the pool's size.
// A hold that would need more than the whole large pool can never be
// served and gets ErrTooLarge rather than a Retry-After that would lie.
package budget

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// SmallHold is the largest hold served from the small pool.
const SmallHold = 64 << 10

// ErrExhausted means the budget has no room now: try again later (503).
var ErrExhausted = errors.New("memory budget of requests in flight exhausted")

// ErrTooLarge means one request alone would need more than the budget.
var ErrTooLarge = errors.New("request needs more memory than the budget allows one request")

// Budget is safe for concurrent use. The zero value and nil refuse
// nothing.
type Budget struct {
	limit   atomic.Int64 // 0: no budget
	small   atomic.Int64 // bytes reserved by small holds
	large   atomic.Int64 // bytes reserved by large holds
	refused atomic.Int64
}

// New returns a budget of limit bytes (0: unlimited).
func New(limit int64) *Budget {
	b := &Budget{}
	b.SetLimit(limit)
	return b
}

// SetLimit changes the limit; holds already open keep what they have.
func (b *Budget) SetLimit(limit int64) { b.limit.Store(max(limit, 0)) }

func (b *Budget) pools() (small, large int64) {
	l := b.limit.Load()
	return l / 8, l - l/8
}

// InUse is the number of bytes reserved now.
func (b *Budget) InUse() int64 {
	if b == nil {
		return 0
	}
	return b.small.Load() + b.large.Load()
}

// Refused is the number of reservations refused (ErrExhausted or
// ErrTooLarge) so far.
func (b *Budget) Refused() int64 {
	if b == nil {
		return 0
	}
	return b.refused.Load()
}

// Hold is one request's reservation. It is not safe for concurrent use:
// one request, one goroutine.
type Hold struct {
	b     *Budget
	n     int64
	large bool
}

// Open starts a hold on b (b may be nil: no budget).
func (b *Budget) Open() *Hold { return &Hold{b: b} }

// Reserve adds n bytes to the hold, or returns ErrExhausted (no room now)
// or ErrTooLarge (never room) and reserves nothing.
func (h *Hold) Reserve(n int64) error {
	b := h.b
	if b == nil || n <= 0 || b.limit.Load() == 0 {
		return nil // nothing to bound, nothing to give back
	}
	smallSize, largeSize := b.pools()
	if !h.large && h.n+n <= SmallHold {
		if !add(&b.small, n, smallSize) {
			b.refused.Add(1)
			return ErrExhausted
		}
		h.n += n
		return nil
	}
	total := h.n + n
	if total > largeSize {
		b.refused.Add(1)
		return fmt.Errorf("%w: %d bytes estimated, the budget allows one request %d (limits.max_bytes_in_flight)", ErrTooLarge, total, largeSize)
	}
	if h.large {
		if !add(&b.large, n, largeSize) {
			b.refused.Add(1)
			return ErrExhausted
		}
	} else {
		// Moving to the large pool: reserve the whole there, then give
		// back what the small pool held.
		if !add(&b.large, total, largeSize) {
			b.refused.Add(1)
			return ErrExhausted
		}
		b.small.Add(-h.n)
		h.large = true
	}
	h.n = total
	return nil
}

// add reserves n in pool if it stays within size.
func add(pool *atomic.Int64, n, size int64) bool {
	for {
		used := pool.Load()
		if used+n > size {
			return false
		}
		if pool.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// Held is the number of bytes this hold has reserved.
func (h *Hold) Held() int64 { return h.n }

// Release gives everything back. It may be called more than once.
func (h *Hold) Release() {
	if h.b != nil && h.n > 0 {
		if h.large {
			h.b.large.Add(-h.n)
		} else {
			h.b.small.Add(-h.n)
		}
	}
	h.n, h.large = 0, false
}
