// Package budget bounds the memory of the distributor's ingest path. Each
// request opens a Hold and reserves the bytes it is about to hold —
// received, decompressed, decoded, encoded — before it holds them; a
// reservation that does not fit is refused at once, so the distributor
// answers a fast 503 instead of growing until the collector starves
// everything else (health probes included).
//
// Large requests cannot shut out the many small ones: a hold whose total
// passes SmallHold is large, and large holds together may take at most
// seven eighths of the limit, while small holds may take whatever is
// free. So an eighth is always there for ordinary packets, and the whole
// budget when no large request needs it.
//
// Invariant: reserved ≤ limit, and reserved by large holds ≤ 7/8 limit.
// A hold that alone would need more than 7/8 of the limit can never be
// served and gets ErrTooLarge rather than a Retry-After that would lie.
package budget

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// SmallHold is the largest hold that counts as small.
const SmallHold = 64 << 10

// ErrExhausted means the budget has no room now: try again later (503).
var ErrExhausted = errors.New("memory budget of requests in flight exhausted")

// ErrTooLarge means one request alone would need more than the budget.
var ErrTooLarge = errors.New("request needs more memory than the budget allows one request")

// Budget is safe for concurrent use. A nil Budget, or a limit of 0,
// refuses nothing.
type Budget struct {
	mu      sync.Mutex
	set     atomic.Int64 // the limit last set, read without the lock: SetLimit runs per request
	limit   int64
	used    int64 // reserved by every hold
	large   int64 // reserved by large holds
	refused int64
}

// New returns a budget of limit bytes (0: unlimited).
func New(limit int64) *Budget {
	b := &Budget{}
	b.SetLimit(limit)
	return b
}

// SetLimit changes the limit; holds already open keep what they have.
func (b *Budget) SetLimit(limit int64) {
	limit = max(limit, 0)
	if b.set.Load() == limit && limit != 0 { // unchanged: no lock (0 is also the zero value, so it is set)
		return
	}
	b.mu.Lock()
	b.limit = limit
	b.set.Store(limit)
	b.mu.Unlock()
}

// InUse is the number of bytes reserved now.
func (b *Budget) InUse() int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// Refused is the number of reservations refused (ErrExhausted or
// ErrTooLarge) so far.
func (b *Budget) Refused() int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.refused
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
	if b == nil || n <= 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.limit == 0 {
		return nil // nothing to bound, nothing to give back
	}
	largeSize := b.limit - b.limit/8
	total := h.n + n
	large := h.large || total > SmallHold
	// What the large holds would hold: a hold turning large brings what
	// it had.
	largeAfter := b.large
	if large {
		largeAfter += total - h.n
		if !h.large {
			largeAfter += h.n
		}
	}
	switch {
	case large && total > largeSize:
		b.refused++
		return fmt.Errorf("%w: %d bytes estimated, the budget allows one request %d (limits.max_bytes_in_flight)", ErrTooLarge, total, largeSize)
	case b.used+n > b.limit, largeAfter > largeSize:
		b.refused++
		return ErrExhausted
	}
	b.used += n
	b.large = largeAfter
	h.n, h.large = total, large
	return nil
}

// Held is the number of bytes this hold has reserved.
func (h *Hold) Held() int64 { return h.n }

// Release gives everything back. It may be called more than once.
func (h *Hold) Release() {
	if b := h.b; b != nil && h.n > 0 {
		b.mu.Lock()
		b.used -= h.n
		if h.large {
			b.large -= h.n
		}
		b.mu.Unlock()
	}
	h.n, h.large = 0, false
}
