// Package breaker is a circuit breaker: closed → open after consecutive
// failures → half-open after a backoff, where one trial decides between
// closed and open again.
//
// The backoff grows for flapping: when a breaker opens again less than
// StableAfter after it last closed, its backoff doubles (up to MaxBackoff);
// once it has stayed closed for StableAfter, the next opening starts from
// BaseBackoff again. A failed half-open trial does not grow the backoff, so
// a target that is simply down for a while is re-admitted within one
// backoff of coming back.
package breaker

import (
	"sync"
	"time"
)

// State is a breaker state; the values are the ones the
// distributor_*_breaker_state gauges export.
type State int

const (
	Closed   State = 0
	HalfOpen State = 1
	Open     State = 2
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half-open"
	default:
		return "open"
	}
}

// Config tunes a Breaker.
type Config struct {
	FailureThreshold int           // consecutive failures that open it
	BaseBackoff      time.Duration // first open period
	MaxBackoff       time.Duration // cap for a flapping target
	StableAfter      time.Duration // closed this long = no longer flapping
}

// Breaker is safe for concurrent use. It reads time with time.Now, so tests
// drive it with testing/synctest.
type Breaker struct {
	mu       sync.Mutex
	cfg      Config
	state    State
	failures int
	backoff  time.Duration
	openedAt time.Time
	closedAt time.Time // last transition to closed; zero if never reopened
	trial    bool      // a half-open trial is in flight
	onChange func(from, to State)
}

// New returns a closed breaker. onChange, if not nil, is called (without
// the breaker's lock held) on every state change.
func New(cfg Config, onChange func(from, to State)) *Breaker {
	if cfg.FailureThreshold < 1 {
		cfg.FailureThreshold = 1
	}
	if cfg.MaxBackoff < cfg.BaseBackoff {
		cfg.MaxBackoff = cfg.BaseBackoff
	}
	return &Breaker{cfg: cfg, backoff: cfg.BaseBackoff, onChange: onChange}
}

// SetConfig changes thresholds and backoffs (on reload); the state is kept.
func (b *Breaker) SetConfig(cfg Config) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cfg = cfg
	b.backoff = min(max(b.backoff, cfg.BaseBackoff), max(cfg.MaxBackoff, cfg.BaseBackoff))
}

// Allow reports whether a call may go through now. In half-open state only
// one trial is allowed until its outcome is reported.
func (b *Breaker) Allow() bool {
	b.mu.Lock()
	var from State
	changed := false
	defer func() {
		b.mu.Unlock()
		if changed {
			b.notify(from, HalfOpen)
		}
	}()
	switch b.state {
	case Closed:
		return true
	case Open:
		if time.Since(b.openedAt) < b.backoff {
			return false
		}
		from, changed = b.state, true
		b.state, b.trial = HalfOpen, true
		return true
	default: // half-open
		if b.trial {
			return false
		}
		b.trial = true
		return true
	}
}

// Success reports a successful call.
func (b *Breaker) Success() {
	b.mu.Lock()
	from := b.state
	b.failures = 0
	if b.state == Closed {
		if !b.closedAt.IsZero() && time.Since(b.closedAt) >= b.cfg.StableAfter {
			b.backoff = b.cfg.BaseBackoff // stable again: forget the flapping
		}
		b.mu.Unlock()
		return
	}
	b.state, b.trial, b.closedAt = Closed, false, time.Now()
	b.mu.Unlock()
	b.notify(from, Closed)
}

// Failure reports a failed call.
func (b *Breaker) Failure() {
	b.mu.Lock()
	from := b.state
	switch b.state {
	case Closed:
		b.failures++
		if b.failures < b.cfg.FailureThreshold {
			b.mu.Unlock()
			return
		}
		switch {
		case b.closedAt.IsZero() || time.Since(b.closedAt) >= b.cfg.StableAfter:
			b.backoff = b.cfg.BaseBackoff
		default: // reopened soon after closing: flapping
			b.backoff = min(2*b.backoff, b.cfg.MaxBackoff)
		}
	case Open:
		b.mu.Unlock()
		return
	}
	b.state, b.trial, b.failures, b.openedAt = Open, false, 0, time.Now()
	b.mu.Unlock()
	if from != Open {
		b.notify(from, Open)
	}
}

// State returns the current state. An open breaker whose backoff has passed
// still reads open until the next Allow.
func (b *Breaker) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// Backoff returns the current open period.
func (b *Breaker) Backoff() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.backoff
}

func (b *Breaker) notify(from, to State) {
	if b.onChange != nil && from != to {
		b.onChange(from, to)
	}
}
