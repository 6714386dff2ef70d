package pool

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/distributor/internal/config"
)

// fakeAnalyzers answers health probes in memory. The pool's own logic
// (probe schedule, breaker, drain, lag) is what is under test; the HTTP
// round trip to a real analyzer is covered by the distributor's
// integration test.
type fakeAnalyzers struct {
	mu   sync.Mutex
	down map[string]bool
}

func (f *fakeAnalyzers) set(host string, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[host] = down
}

func (f *fakeAnalyzers) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	down := f.down[r.URL.Host]
	f.mu.Unlock()
	if down {
		return nil, errors.New("connection refused")
	}
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(`{"status":"healthy"}`)), Request: r}, nil
}

type fakeLag map[string]int64

func (f fakeLag) Lag(_ context.Context, topic, _ string) (int64, error) { return f[topic], nil }

func testConfig() config.Config {
	c := config.Default()
	c.Analyzers = []config.Analyzer{
		{ID: "a1", URL: "http://a1", Weight: 0.5},
		{ID: "a2", URL: "http://a2", Weight: 0.3},
		{ID: "a3", URL: "http://a3", Weight: 0.2},
	}
	return c
}

func start(t *testing.T, cfg config.Config, lag LagReader) (*Pool, *fakeAnalyzers) {
	f := &fakeAnalyzers{down: map[string]bool{}}
	p := New(cfg, Options{LagReader: lag, Client: &http.Client{Transport: f}, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(t.Context())
	go p.Run(ctx)
	t.Cleanup(cancel)
	return p, f
}

func up(p *Pool) map[string]bool {
	out := map[string]bool{}
	for _, s := range p.Statuses() {
		out[s.ID] = s.Up
	}
	return out
}

func TestAnalyzersAreUpOnlyAfterAProbeSucceeds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAnalyzers{down: map[string]bool{"a2": true}}
		p := New(testConfig(), Options{Client: &http.Client{Transport: f}, Logger: slog.New(slog.DiscardHandler)})
		require.Empty(t, p.Members(), "nothing is routable before probing")
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go p.Run(ctx)
		synctest.Wait()
		require.Equal(t, map[string]bool{"a1": true, "a2": false, "a3": true}, up(p))
	})
}

func TestACrashIsDetectedWithinThreeSecondsAndRecoveryWithinFive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, f := start(t, testConfig(), nil)
		time.Sleep(10 * time.Second)
		require.True(t, up(p)["a2"])

		f.set("a2", true)
		crashed := time.Now()
		for up(p)["a2"] {
			time.Sleep(100 * time.Millisecond)
		}
		require.LessOrEqual(t, time.Since(crashed), 3*time.Second)
		require.Len(t, p.Members(), 2)

		time.Sleep(20 * time.Second) // down for a while
		f.set("a2", false)
		back := time.Now()
		for !up(p)["a2"] {
			time.Sleep(100 * time.Millisecond)
		}
		require.LessOrEqual(t, time.Since(back), 5*time.Second)
	})
}

func TestAFlappingAnalyzerWaitsLongerEachTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, f := start(t, testConfig(), nil)
		time.Sleep(2 * time.Second)
		var backoffs []float64
		for i := 0; i < 4; i++ {
			f.set("a3", true)
			time.Sleep(3 * time.Second)
			for _, s := range p.Statuses() {
				if s.ID == "a3" {
					require.False(t, s.Up)
					backoffs = append(backoffs, s.BackoffSeconds)
				}
			}
			f.set("a3", false)
			for !up(p)["a3"] {
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(2 * time.Second)
		}
		require.Equal(t, []float64{1, 2, 4, 8}, backoffs)
	})
}

func TestDrainAndWeightOverridesShapeTheMembers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := start(t, testConfig(), nil)
		synctest.Wait()
		require.True(t, p.SetDrained("a1", true))
		require.True(t, p.SetWeight("a2", 0.9))
		require.False(t, p.SetWeight("nope", 1))
		got := map[string]float64{}
		for _, m := range p.Members() {
			got[m.ID] = m.Weight
		}
		require.Equal(t, map[string]float64{"a2": 0.9, "a3": 0.2}, got)
		p.Update(testConfig()) // a reload keeps runtime state
		require.Len(t, p.Members(), 2)
		p.SetDrained("a1", false)
		require.Len(t, p.Members(), 3)
	})
}

func TestLagOverTheThresholdReducesTheEffectiveWeight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.Routing.LagThreshold = 1000
		cfg.Routing.MinWeightFactor = 0.1
		lag := fakeLag{"logs.a1": 4000, "logs.a2": 500, "logs.a3": 1_000_000}
		f := &fakeAnalyzers{down: map[string]bool{}}
		p := New(cfg, Options{LagReader: lag, Client: &http.Client{Transport: f}, Logger: slog.New(slog.DiscardHandler)})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go p.Run(ctx)
		time.Sleep(time.Second)
		got := map[string]float64{}
		for _, m := range p.Members() {
			got[m.ID] = m.Weight
		}
		require.InDelta(t, 0.5*0.25, got["a1"], 1e-9)
		require.InDelta(t, 0.3, got["a2"], 1e-9)
		require.InDelta(t, 0.2*0.1, got["a3"], 1e-9, "never below the floor")
	})
}

func TestReloadAddsAndRemovesAnalyzers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := start(t, testConfig(), nil)
		synctest.Wait()
		cfg := testConfig()
		cfg.Analyzers = append(cfg.Analyzers[1:], config.Analyzer{ID: "a4", URL: "http://a4", Weight: 1})
		p.Update(cfg)
		synctest.Wait()
		require.Equal(t, map[string]bool{"a2": true, "a3": true, "a4": true}, up(p))
	})
}

// hangingAnalyzers never answer a3 (a paused or SIGSTOPped process): each
// probe runs into its timeout.
type hangingAnalyzers struct {
	mu   sync.Mutex
	hang bool
}

func (h *hangingAnalyzers) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	hang := h.hang && r.URL.Host == "a3"
	h.mu.Unlock()
	if hang {
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(`{}`)), Request: r}, nil
}

func TestAHungAnalyzerIsDetectedWithinThreeSecondsDespiteProbeTimeouts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &hangingAnalyzers{}
		p := New(testConfig(), Options{Client: &http.Client{Transport: h}, Logger: slog.New(slog.DiscardHandler)})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go p.Run(ctx)
		time.Sleep(5*time.Second + time.Millisecond) // just after a probe: the worst moment
		h.mu.Lock()
		h.hang = true
		h.mu.Unlock()
		hung := time.Now()
		for up(p)["a3"] {
			time.Sleep(10 * time.Millisecond)
		}
		// MaxFailures × interval + timeout; a schedule that waited an
		// interval after each timed-out probe would take 3 s here.
		require.LessOrEqual(t, time.Since(hung), 2500*time.Millisecond)
	})
}

// counts reads id's transition counts once the bubble is idle: a probe
// that woke at the same instant as the test may still be between moving
// the breaker and counting it. Call it inside a synctest bubble only.
func counts(p *Pool, id string) (breakerTo [3]int64, upTo [2]int64) {
	synctest.Wait()
	for _, s := range p.Statuses() {
		if s.ID == id {
			return s.BreakerTransitions, s.UpTransitions
		}
	}
	return
}

// A breaker open for a second leaves no trace in the state a scrape reads
// a few seconds later; the transition counts keep it.
func TestEveryBreakerAndUpTransitionIsCountedEvenWhenShort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, f := start(t, testConfig(), nil)
		synctest.Wait()
		brk, ups := counts(p, "a2")
		require.Equal(t, [3]int64{0, 0, 0}, brk, "closed from the start: no change")
		require.Equal(t, [2]int64{0, 1}, ups, "the first successful probe: down → up")

		f.set("a2", true)
		for up(p)["a2"] {
			time.Sleep(100 * time.Millisecond)
		}
		f.set("a2", false) // back at once: open for one backoff (1 s)
		for !up(p)["a2"] {
			time.Sleep(100 * time.Millisecond)
		}
		brk, ups = counts(p, "a2")
		require.Equal(t, [3]int64{1, 1, 1}, brk, "closed → open → half-open → closed, one each")
		require.Equal(t, [2]int64{1, 2}, ups, "up → down → up")

		// Down for long: every failed half-open trial opens the breaker
		// again (counted) while up stays down (not counted again).
		f.set("a2", true)
		time.Sleep(10 * time.Second)
		brk, ups = counts(p, "a2")
		require.Greater(t, brk[2], int64(2), "failed trials reopen the breaker")
		require.Equal(t, brk[1], brk[2]-1, "each reopening followed a half-open trial")
		require.Equal(t, [2]int64{2, 2}, ups)

		brk1, ups1 := counts(p, "a1")
		require.Equal(t, [3]int64{}, brk1, "the others are untouched")
		require.Equal(t, [2]int64{0, 1}, ups1)
	})
}

func TestANewAddressCountsAsDownUntilItsFirstProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, f := start(t, testConfig(), nil)
		synctest.Wait()
		f.set("a2-new", true)
		cfg := testConfig()
		cfg.Analyzers[1].URL = "http://a2-new"
		p.Update(cfg)
		_, ups := counts(p, "a2")
		require.Equal(t, [2]int64{1, 1}, ups, "a new address must prove itself: down")
		f.set("a2-new", false)
		for !up(p)["a2"] {
			time.Sleep(100 * time.Millisecond)
		}
		_, ups = counts(p, "a2")
		require.Equal(t, [2]int64{1, 2}, ups)
	})
}

// gatedAnalyzers hold the probes of one host until released; the others
// answer as fakeAnalyzers do.
type gatedAnalyzers struct {
	fakeAnalyzers
	host    string
	entered chan struct{}
	release chan struct{}
}

func (g *gatedAnalyzers) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == g.host {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.fakeAnalyzers.RoundTrip(r)
}

// A probe of the old address that answers after a reload moved the
// analyzer elsewhere must not vouch for the new address: before, the old
// address's late success marked the unproven (here: dead) new one up, and
// packets were routed to it.
func TestALateProbeOfTheOldAddressDoesNotMakeTheNewOneUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &gatedAnalyzers{fakeAnalyzers: fakeAnalyzers{down: map[string]bool{"a2-new": true}}, host: "a2", entered: make(chan struct{}), release: make(chan struct{})}
		p := New(testConfig(), Options{Client: &http.Client{Transport: g}, Logger: slog.New(slog.DiscardHandler)})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go p.Run(ctx)
		<-g.entered
		close(g.release) // first probe of a2 answers: a2 is up
		synctest.Wait()
		require.True(t, up(p)["a2"])

		g.release = make(chan struct{})
		time.Sleep(time.Second) // the next probe of the old address is out
		<-g.entered
		cfg := testConfig()
		cfg.Analyzers[1].URL = "http://a2-new"
		p.Update(cfg)
		require.False(t, up(p)["a2"], "a new address is down until proven")
		close(g.release) // the old address answers 200, late
		synctest.Wait()
		require.False(t, up(p)["a2"], "the old address's answer must not count for the new one")
		time.Sleep(3 * time.Second) // the new address's own probes fail
		require.False(t, up(p)["a2"])
		require.NotContains(t, memberIDs(p), "a2")
		g.set("a2-new", false)
		time.Sleep(3 * time.Second)
		require.True(t, up(p)["a2"], "it comes up by its own probes")
	})
}

func memberIDs(p *Pool) []string {
	var ids []string
	for _, m := range p.Members() {
		ids = append(ids, m.ID)
	}
	return ids
}
