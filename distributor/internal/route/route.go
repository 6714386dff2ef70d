// Package route picks the analyzer for each packet.
//
// The weighted strategy shares MESSAGES (not packets) in proportion to the
// members' weights with a smooth weighted round-robin on message credit:
// every pick adds weight×size to each member's credit, the member with the
// most credit wins and pays size. Credits always sum to zero, so each
// member's error is bounded by about one packet, over any window.
//
// When membership or weights change the credits are reset: shares
// re-normalise at once and a rejoining analyzer starts level with the others.
// Nothing is owed for the time it was away, so it is never flooded (the
// cumulative-counter flaw of the log-streamer distributor, which compared
// lifetime totals and sent a returning analyzer everything until it caught
// up).
//
// The tenant-hash strategy uses weighted rendezvous hashing of the tenant:
// a tenant's packets stay on one analyzer (in order) while membership is
// stable, tenants spread in proportion to weight, and a membership change
// moves only the tenants of the members that came or went.
package route

import (
	"math"
	"slices"
	"sync"
)

// Strategy names.
const (
	Weighted   = "weighted"
	TenantHash = "tenant-hash"
)

// Member is one analyzer eligible for traffic, with its effective weight
// (after health, drain and capacity adjustments; must be > 0).
type Member struct {
	ID     string
	Weight float64
}

type member struct {
	Member
	share  float64 // normalised weight
	credit float64
}

// Router is safe for concurrent use.
type Router struct {
	mu       sync.Mutex
	strategy string
	members  []member
}

// New returns a router with the given strategy and no members.
func New(strategy string) *Router { return &Router{strategy: strategy} }

// SetStrategy switches strategy (on reload).
func (r *Router) SetStrategy(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.strategy = s
}

// SetMembers replaces the eligible members. Members with weight <= 0 are
// ignored. If nothing changed, routing state is kept; otherwise credits reset.
func (r *Router) SetMembers(ms []Member) {
	ms = slices.DeleteFunc(slices.Clone(ms), func(m Member) bool { return !(m.Weight > 0) || math.IsInf(m.Weight, 0) })
	slices.SortFunc(ms, func(a, b Member) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if sameMembers(r.members, ms) {
		return
	}
	var total float64
	for _, m := range ms {
		total += m.Weight
	}
	next := make([]member, len(ms))
	for i, m := range ms {
		next[i] = member{Member: m, share: m.Weight / total}
	}
	r.members = next
}

func sameMembers(cur []member, ms []Member) bool {
	if len(cur) != len(ms) {
		return false
	}
	for i := range ms {
		if cur[i].Member != ms[i] {
			return false
		}
	}
	return true
}

// Members returns the current members and their normalised shares.
func (r *Router) Members() map[string]float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]float64, len(r.members))
	for _, m := range r.members {
		out[m.ID] = m.share
	}
	return out
}

// Pick chooses the analyzer for a packet of size messages from tenant.
// It returns false when no member is eligible.
func (r *Router) Pick(tenant string, size int) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.members) == 0 {
		return "", false
	}
	if r.strategy == TenantHash {
		return r.pickRendezvous(tenant), true
	}
	n := float64(max(size, 1))
	best := 0
	for i := range r.members {
		m := &r.members[i]
		m.credit += m.share * n
		if m.credit > r.members[best].credit {
			best = i
		}
	}
	r.members[best].credit -= n
	return r.members[best].ID, true
}

// pickRendezvous is weighted rendezvous hashing: score = -w / ln(u) with u
// a uniform hash of (tenant, member) in (0,1).
func (r *Router) pickRendezvous(tenant string) string {
	best, bestScore := "", math.Inf(-1)
	for _, m := range r.members {
		u := (float64(hash2(tenant, m.ID)>>11) + 0.5) / (1 << 53)
		score := -m.Weight / math.Log(u)
		if score > bestScore {
			best, bestScore = m.ID, score
		}
	}
	return best
}

// hash2 is FNV-1a over a, a zero byte and b, finished with the splitmix64
// mixer: FNV alone leaves the high bits poorly mixed by the last bytes, and
// member ids differ only in their last byte.
func hash2(a, b string) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for i := 0; i < len(a); i++ {
		h = (h ^ uint64(a[i])) * prime
	}
	h *= prime // the separator byte 0
	for i := 0; i < len(b); i++ {
		h = (h ^ uint64(b[i])) * prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}
