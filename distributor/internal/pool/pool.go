// Package pool tracks the analyzers: a health probe and a circuit breaker
// for each, drain state, admin weight overrides and consumer lag, and from
// those the members the router may use.
//
// An analyzer is up once a probe has succeeded and while its breaker is
// closed. MaxFailures consecutive failed probes open the breaker; while open
// it is not probed until its backoff passes, then one half-open probe
// decides. The backoff grows only for flapping (see package breaker).
//
// Every change of an analyzer's breaker state and of its up state is
// counted: a breaker may be open for a second, less than one metric export
// and scrape, so the states alone (sampled gauges) cannot tell that it
// opened; the counts can (increase() over any window).
package pool

import (
	"context"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/dsplab/dsplab/distributor/internal/breaker"
	"github.com/dsplab/dsplab/distributor/internal/config"
	"github.com/dsplab/dsplab/distributor/internal/route"
)

// LagReader reads an analyzer's consumer lag (records not yet committed).
type LagReader interface {
	Lag(ctx context.Context, topic, group string) (int64, error)
}

// Status is one analyzer's state as the admin API and metrics show it.
type Status struct {
	ID              string        `json:"id"`
	URL             string        `json:"url"`
	Up              bool          `json:"up"`
	Breaker         string        `json:"breaker"`
	BreakerState    int           `json:"-"`
	Backoff         time.Duration `json:"-"`
	BackoffSeconds  float64       `json:"breaker_backoff_seconds"`
	Drained         bool          `json:"drained"`
	ConfigWeight    float64       `json:"config_weight"`
	Weight          float64       `json:"weight"`           // after admin override
	EffectiveWeight float64       `json:"effective_weight"` // routed weight: 0 when down or drained
	Lag             int64         `json:"lag"`
	LastProbe       time.Time     `json:"last_probe,omitzero"`
	LastError       string        `json:"last_error,omitempty"`
	Topic           string        `json:"topic"`
	// BreakerTransitions counts the breaker's state changes by the state
	// changed to, indexed by breaker.State (closed, half-open, open).
	BreakerTransitions [3]int64 `json:"-"`
	// UpTransitions counts changes of Up: [0] to down, [1] to up (the
	// first successful probe included).
	UpTransitions [2]int64 `json:"-"`
}

type analyzer struct {
	cfg       config.Analyzer
	brk       *breaker.Breaker
	known     bool // a probe has succeeded at least once
	drained   bool
	override  *float64
	lag       int64
	lastProbe time.Time
	lastErr   string
	stop      context.CancelFunc
	// up is the last up state counted; transitions and ups count every
	// change of the breaker's state and of up (see Status).
	up          bool
	transitions [3]int64
	ups         [2]int64
}

// Pool is safe for concurrent use.
type Pool struct {
	mu        sync.Mutex
	analyzers map[string]*analyzer
	health    config.Health
	routing   config.Routing
	kafka     config.Kafka
	client    *http.Client
	lagReader LagReader
	onChange  func()
	log       *slog.Logger
	runCtx    context.Context // set by Run; probes of analyzers added later start under it
}

// Options are the pool's collaborators; all may be nil.
type Options struct {
	LagReader LagReader
	// OnChange is called (without locks held) whenever the routable members
	// may have changed.
	OnChange func()
	Logger   *slog.Logger
	// Client makes the health probes; each probe has its own timeout
	// (Health.Timeout) through its context.
	Client *http.Client
}

// New returns a pool for cfg's analyzers. It probes nothing until Run.
func New(cfg config.Config, o Options) *Pool {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Client == nil {
		o.Client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second}}
	}
	p := &Pool{analyzers: map[string]*analyzer{}, lagReader: o.LagReader, onChange: o.OnChange, log: o.Logger, client: o.Client}
	p.apply(cfg) // no OnChange: the owner may not hold the pool yet
	return p
}

// Update applies a new configuration: analyzers added, removed or changed.
// Drain state and weight overrides of analyzers that stay are kept.
func (p *Pool) Update(cfg config.Config) {
	p.apply(cfg)
	p.changed()
}

func (p *Pool) apply(cfg config.Config) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.health, p.routing, p.kafka = cfg.Health, cfg.Routing, cfg.Kafka
	seen := map[string]bool{}
	for _, ac := range cfg.Analyzers {
		seen[ac.ID] = true
		a, ok := p.analyzers[ac.ID]
		if !ok {
			a = &analyzer{cfg: ac}
			a.brk = breaker.New(p.breakerConfig(), p.breakerChanged(a))
			p.analyzers[ac.ID] = a
			if p.runCtx != nil {
				p.startProbe(a)
			}
			continue
		}
		a.brk.SetConfig(p.breakerConfig())
		if a.cfg.URL != ac.URL {
			// A new address must prove itself, with a breaker of its own:
			// the old address's failures or trial say nothing about it.
			a.known, a.lastErr = false, ""
			a.brk = breaker.New(p.breakerConfig(), p.breakerChanged(a))
		}
		a.cfg = ac
		p.countUp(a)
	}
	for id, a := range p.analyzers {
		if !seen[id] {
			if a.stop != nil {
				a.stop()
			}
			delete(p.analyzers, id)
		}
	}
}

func (p *Pool) breakerConfig() breaker.Config {
	b := p.health.Breaker
	return breaker.Config{FailureThreshold: p.health.MaxFailures, BaseBackoff: b.BaseBackoff, MaxBackoff: b.MaxBackoff, StableAfter: b.StableAfter}
}

// breakerChanged is a's breaker's onChange. The breaker calls it without
// its own lock and never with p.mu held (Allow, Success and Failure are
// called outside p.mu).
func (p *Pool) breakerChanged(a *analyzer) func(from, to breaker.State) {
	return func(from, to breaker.State) {
		p.mu.Lock()
		a.transitions[to]++
		id := a.cfg.ID
		p.mu.Unlock()
		p.log.Warn("analyzer breaker", "analyzer", id, "from", from.String(), "to", to.String())
		p.changed()
	}
}

// countUp counts a change of a's up state since the last call; it is
// called, with p.mu held, after everything that may change it (a probe's
// outcome, a new address).
func (p *Pool) countUp(a *analyzer) {
	up := a.known && a.brk.State() == breaker.Closed
	if up != a.up {
		a.up = up
		a.ups[b2i(up)]++
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (p *Pool) changed() {
	if p.onChange != nil {
		p.onChange()
	}
}

// Run probes every analyzer and polls lag until ctx ends.
func (p *Pool) Run(ctx context.Context) error {
	p.mu.Lock()
	p.runCtx = ctx
	for _, a := range p.analyzers {
		p.startProbe(a)
	}
	p.mu.Unlock()
	p.pollLag(ctx)
	return nil
}

// startProbe must be called with p.mu held.
func (p *Pool) startProbe(a *analyzer) {
	ctx, cancel := context.WithCancel(p.runCtx)
	a.stop = cancel
	go p.probeLoop(ctx, a)
}

// probeLoop probes on a fixed schedule: a probe that times out does not
// push the next one back, so a hung analyzer (paused, SIGSTOPped) is found
// within MaxFailures × interval + timeout. Timeout < interval is validated,
// so probes never overlap.
func (p *Pool) probeLoop(ctx context.Context, a *analyzer) {
	p.probeOnce(ctx, a) // at once: do not wait an interval to learn the state
	p.mu.Lock()
	interval := p.health.Interval
	p.mu.Unlock()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.probeOnce(ctx, a)
		p.mu.Lock()
		if p.health.Interval != interval { // changed by a reload
			interval = p.health.Interval
			t.Reset(interval)
		}
		p.mu.Unlock()
	}
}

func (p *Pool) probeOnce(ctx context.Context, a *analyzer) {
	p.mu.Lock()
	brk, url, timeout := a.brk, a.cfg.URL+"/health", p.health.Timeout
	p.mu.Unlock()
	if !brk.Allow() {
		return // open: wait for the backoff
	}
	err := p.probe(ctx, url, timeout)
	if ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	if a.brk != brk {
		// The address changed (a reload) while this probe was out: its
		// answer says nothing about the new address, which must prove
		// itself with a probe of its own (and has a new breaker).
		p.mu.Unlock()
		return
	}
	a.lastProbe = time.Now()
	becameKnown := false
	if err == nil {
		becameKnown, a.known, a.lastErr = !a.known, true, ""
	} else {
		a.lastErr = err.Error()
	}
	p.mu.Unlock()
	if err == nil {
		brk.Success()
	} else {
		brk.Failure()
	}
	p.mu.Lock()
	p.countUp(a)
	p.mu.Unlock()
	if becameKnown {
		p.changed()
	}
}

func (p *Pool) probe(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return &statusError{resp.StatusCode}
	}
	return nil
}

type statusError struct{ code int }

func (e *statusError) Error() string { return "health answered " + http.StatusText(e.code) }

func (p *Pool) pollLag(ctx context.Context) {
	for {
		p.mu.Lock()
		interval := p.routing.LagPollInterval
		type target struct {
			a                *analyzer
			id, topic, group string // copied: a.cfg changes on reload
		}
		var ts []target
		for _, a := range p.analyzers {
			ts = append(ts, target{a, a.cfg.ID, p.kafka.Topic(a.cfg.ID), p.kafka.GroupPrefix + a.cfg.ID})
		}
		p.mu.Unlock()
		if p.lagReader != nil {
			changed := false
			for _, t := range ts {
				lctx, cancel := context.WithTimeout(ctx, interval)
				lag, err := p.lagReader.Lag(lctx, t.topic, t.group)
				cancel()
				if err != nil {
					p.log.Debug("read lag", "analyzer", t.id, "err", err)
					continue
				}
				p.mu.Lock()
				before := p.lagFactor(t.a.lag)
				t.a.lag = lag
				changed = changed || before != p.lagFactor(lag)
				p.mu.Unlock()
			}
			if changed {
				p.changed()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// lagFactor is the capacity-aware weight multiplier: 1 up to the threshold,
// then threshold/lag, floored at MinWeightFactor and rounded to 5% steps so
// that small lag changes do not reset routing every poll.
func (p *Pool) lagFactor(lag int64) float64 {
	th := p.routing.LagThreshold
	if th <= 0 || lag <= th {
		return 1
	}
	f := math.Max(p.routing.MinWeightFactor, float64(th)/float64(lag))
	return math.Max(p.routing.MinWeightFactor, math.Round(f*20)/20)
}

// Members returns the routable analyzers with their effective weights.
func (p *Pool) Members() []route.Member {
	var ms []route.Member
	for _, s := range p.Statuses() {
		if s.EffectiveWeight > 0 {
			ms = append(ms, route.Member{ID: s.ID, Weight: s.EffectiveWeight})
		}
	}
	return ms
}

// Statuses returns every analyzer's state, sorted by id.
func (p *Pool) Statuses() []Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Status, 0, len(p.analyzers))
	for _, a := range p.analyzers {
		// A probe sets known and moves the breaker in separate steps and
		// counts the change after both: count here too, so the Up we
		// report is always counted in UpTransitions.
		p.countUp(a)
		st := a.brk.State()
		s := Status{
			ID: a.cfg.ID, URL: config.RedactURL(a.cfg.URL), Up: a.up,
			Breaker: st.String(), BreakerState: int(st), Backoff: a.brk.Backoff(),
			Drained: a.drained, ConfigWeight: a.cfg.Weight, Weight: a.cfg.Weight, Lag: a.lag,
			LastProbe: a.lastProbe, LastError: a.lastErr, Topic: p.kafka.Topic(a.cfg.ID),
			BreakerTransitions: a.transitions, UpTransitions: a.ups,
		}
		s.BackoffSeconds = s.Backoff.Seconds()
		if a.override != nil {
			s.Weight = *a.override
		}
		if s.Up && !s.Drained {
			s.EffectiveWeight = s.Weight * p.lagFactor(a.lag)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(x, y Status) int {
		if x.ID < y.ID {
			return -1
		}
		return 1
	})
	return out
}

// SetWeight overrides an analyzer's configured weight. Overrides and drain
// state are runtime state: a reload keeps them, a restart clears them. It
// returns false for an unknown id.
func (p *Pool) SetWeight(id string, w float64) bool {
	return p.edit(id, func(a *analyzer) { a.override = &w })
}

// SetDrained drains (no new packets) or undrains an analyzer.
func (p *Pool) SetDrained(id string, drained bool) bool {
	return p.edit(id, func(a *analyzer) { a.drained = drained })
}

func (p *Pool) edit(id string, fn func(*analyzer)) bool {
	p.mu.Lock()
	a, ok := p.analyzers[id]
	if ok {
		fn(a)
	}
	p.mu.Unlock()
	if ok {
		p.changed()
	}
	return ok
}
