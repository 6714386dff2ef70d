package route

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

var all = map[string]float64{"analyzer-1": 0.5, "analyzer-2": 0.3, "analyzer-3": 0.2}

func membersOf(up map[string]bool) []Member {
	var ms []Member
	for id, w := range all {
		if up[id] {
			ms = append(ms, Member{ID: id, Weight: w})
		}
	}
	return ms
}

func expectedShares(up map[string]bool) map[string]float64 {
	var total float64
	for id, w := range all {
		if up[id] {
			total += w
		}
	}
	out := map[string]float64{}
	for id, w := range all {
		if up[id] {
			out[id] = w / total
		}
	}
	return out
}

// route sends packets of random size 1..50 until at least n messages went
// out and returns each member's share of messages.
func route(t *testing.T, r *Router, rng *rand.Rand, n int) map[string]float64 {
	t.Helper()
	got, total := map[string]int{}, 0
	for total < n {
		size := 1 + rng.IntN(50)
		id, ok := r.Pick("tenant", size)
		require.True(t, ok)
		got[id] += size
		total += size
	}
	out := map[string]float64{}
	for id, c := range got {
		out[id] = float64(c) / float64(total)
	}
	return out
}

// Property: after every random membership change, the message shares over
// the next 20k messages are within ±2 points of the re-normalised weights.
func TestWeightedSharesFollowRenormalisedWeightsAfterEveryChange(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed))
			r := New(Weighted)
			up := map[string]bool{"analyzer-1": true, "analyzer-2": true, "analyzer-3": true}
			for change := 0; change < 25; change++ {
				r.SetMembers(membersOf(up))
				if len(membersOf(up)) > 0 {
					got := route(t, r, rng, 20_000)
					for id, want := range expectedShares(up) {
						require.InDelta(t, want, got[id], 0.02, "change %d, %s, up=%v, got %v", change, id, up, got)
					}
					for id := range got {
						require.True(t, up[id], "routed to %s which is down", id)
					}
				} else {
					_, ok := r.Pick("t", 1)
					require.False(t, ok)
				}
				id := fmt.Sprintf("analyzer-%d", 1+rng.IntN(3))
				up[id] = !up[id]
			}
		})
	}
}

// Property: a rejoining analyzer gets no more than its share plus 10 points
// in every short window right after it rejoins (no catch-up flood), even
// after a long absence.
func TestRejoiningAnalyzerIsNotFlooded(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		r := New(Weighted)
		up := map[string]bool{"analyzer-1": true, "analyzer-2": true, "analyzer-3": true}
		r.SetMembers(membersOf(up))
		route(t, r, rng, 10_000)
		gone := fmt.Sprintf("analyzer-%d", 1+rng.IntN(3))
		up[gone] = false
		r.SetMembers(membersOf(up))
		route(t, r, rng, 50_000+rng.IntN(50_000)) // a long absence
		up[gone] = true
		r.SetMembers(membersOf(up))
		want := expectedShares(up)[gone]
		// "The seconds after a rejoin" at a few thousand messages/s: look at
		// ten consecutive windows of 1,000 messages.
		for w := 0; w < 10; w++ {
			got := route(t, r, rng, 1_000)
			require.LessOrEqual(t, got[gone], want+0.10, "seed %d window %d: %s got %.3f, share %.3f", seed, w, gone, got[gone], want)
		}
	}
}

func TestPacketsAreNeverSplitAndZeroWeightsAreIgnored(t *testing.T) {
	r := New(Weighted)
	r.SetMembers([]Member{{ID: "a", Weight: 1}, {ID: "b", Weight: 0}, {ID: "c", Weight: math.NaN()}})
	require.Equal(t, map[string]float64{"a": 1}, r.Members())
	for i := 0; i < 100; i++ {
		id, ok := r.Pick("t", 50)
		require.True(t, ok)
		require.Equal(t, "a", id)
	}
}

func TestSettingTheSameMembersKeepsRoutingState(t *testing.T) {
	r := New(Weighted)
	ms := []Member{{ID: "a", Weight: 0.5}, {ID: "b", Weight: 0.5}}
	r.SetMembers(ms)
	first, _ := r.Pick("t", 10)
	r.SetMembers([]Member{ms[1], ms[0]}) // same set, other order
	second, _ := r.Pick("t", 10)
	require.NotEqual(t, first, second, "credits were reset although nothing changed")
}

func TestTenantHashKeepsATenantOnOneAnalyzerAndSpreadsByWeight(t *testing.T) {
	r := New(TenantHash)
	up := map[string]bool{"analyzer-1": true, "analyzer-2": true, "analyzer-3": true}
	r.SetMembers(membersOf(up))
	counts := map[string]int{}
	owner := map[string]string{}
	const tenants = 20_000
	for i := 0; i < tenants; i++ {
		tenant := fmt.Sprintf("tenant-%d", i)
		id, _ := r.Pick(tenant, 1)
		again, _ := r.Pick(tenant, 7)
		require.Equal(t, id, again)
		counts[id]++
		owner[tenant] = id
	}
	for id, w := range all {
		require.InDelta(t, w, float64(counts[id])/tenants, 0.02, id)
	}
	// Removing analyzer-3 moves only analyzer-3's tenants.
	up["analyzer-3"] = false
	r.SetMembers(membersOf(up))
	for tenant, was := range owner {
		now, _ := r.Pick(tenant, 1)
		if was != "analyzer-3" {
			require.Equal(t, was, now, tenant)
		}
	}
}

func BenchmarkPickWeighted(b *testing.B) {
	r := New(Weighted)
	r.SetMembers(membersOf(map[string]bool{"analyzer-1": true, "analyzer-2": true, "analyzer-3": true}))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Pick("t", 1+i%50)
	}
}

func BenchmarkPickTenantHash(b *testing.B) {
	r := New(TenantHash)
	r.SetMembers(membersOf(map[string]bool{"analyzer-1": true, "analyzer-2": true, "analyzer-3": true}))
	b.ReportAllocs()
	for b.Loop() {
		r.Pick("tenant-42", 5)
	}
}
