// Package ratelimit holds the distributor's token buckets: one global and
// one per tenant (with per-tenant overrides). A request takes one token from
// both or from neither, and a refusal says which scope refused it and how
// long until a token is free, for Retry-After.
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// Rate is a token bucket setting: Rate tokens per second, Burst capacity.
// A Rate of 0 means unlimited.
type Rate struct {
	Rate  float64 `yaml:"rate" json:"rate"`
	Burst int     `yaml:"burst" json:"burst"`
}

// Config is the whole limiter setting.
type Config struct {
	Global          Rate
	PerTenant       Rate
	TenantOverrides map[string]Rate
}

// Decision is the outcome of Allow.
type Decision struct {
	OK         bool
	Scope      string        // "global" or "tenant" when refused
	RetryAfter time.Duration // until a token is free in the refusing bucket
}

type bucket struct {
	rate   Rate
	tokens float64
	last   time.Time
}

func newBucket(r Rate, now time.Time) *bucket {
	return &bucket{rate: r, tokens: float64(burst(r)), last: now}
}

func burst(r Rate) int { return max(r.Burst, 1) }

func (b *bucket) refill(now time.Time) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(float64(burst(b.rate)), b.tokens+el*b.rate.Rate)
	}
	b.last = now
}

func (b *bucket) wait() time.Duration {
	return time.Duration((1 - b.tokens) / b.rate.Rate * float64(time.Second))
}

// idleTenantTTL: tenant buckets unused this long are dropped, so a stream of
// one-off tenant names cannot grow the map without bound.
const idleTenantTTL = 5 * time.Minute

// Limiter is safe for concurrent use.
type Limiter struct {
	mu        sync.Mutex
	cfg       Config
	global    *bucket
	tenants   map[string]*bucket
	lastSweep time.Time
}

// New returns a limiter for cfg.
func New(cfg Config) *Limiter {
	l := &Limiter{tenants: map[string]*bucket{}, lastSweep: time.Now()}
	l.SetConfig(cfg)
	return l
}

// SetConfig applies a new configuration (on reload). Buckets restart full.
func (l *Limiter) SetConfig(cfg Config) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg = cfg
	l.global = nil
	if cfg.Global.Rate > 0 {
		l.global = newBucket(cfg.Global, time.Now())
	}
	clear(l.tenants)
}

func (l *Limiter) tenantRate(tenant string) Rate {
	if r, ok := l.cfg.TenantOverrides[tenant]; ok {
		return r
	}
	return l.cfg.PerTenant
}

// Allow takes a token for tenant from the tenant bucket and the global one,
// or refuses without taking any.
func (l *Limiter) Allow(tenant string) Decision {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	var tb *bucket
	if r := l.tenantRate(tenant); r.Rate > 0 {
		if tb = l.tenants[tenant]; tb == nil {
			tb = newBucket(r, now)
			l.tenants[tenant] = tb
		}
		tb.refill(now)
		if tb.tokens < 1 {
			return Decision{Scope: "tenant", RetryAfter: tb.wait()}
		}
	}
	if l.global != nil {
		l.global.refill(now)
		if l.global.tokens < 1 {
			return Decision{Scope: "global", RetryAfter: l.global.wait()}
		}
		l.global.tokens--
	}
	if tb != nil {
		tb.tokens--
	}
	return Decision{OK: true}
}

func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Minute {
		return
	}
	l.lastSweep = now
	for t, b := range l.tenants {
		if now.Sub(b.last) > idleTenantTTL {
			delete(l.tenants, t)
		}
	}
}

// Tenants returns how many tenant buckets are held.
func (l *Limiter) Tenants() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.tenants)
}
