// Package sla is the distributor's health / SLA loop. Requests are counted
// in one-second buckets; every evaluation period the tracker computes over
// the window:
//
//   - error rate = server faults / requests (4xx answers, rate limiting
//     included, are the client's and do not count as faults);
//   - SLA success ratio = (requests - server faults) / requests;
//   - health_up = 0 when the error rate passes its threshold or the
//     consecutive Kafka errors pass theirs.
//
// With no requests in the window, every verdict keeps its last value.
package sla

import (
	"context"
	"sync"
	"time"
)

// Config tunes the tracker.
type Config struct {
	EvalPeriod, Window        time.Duration
	ErrorRateThreshold        float64
	MaxConsecutiveKafkaErrors int64
}

type bucket struct {
	sec          int64
	total, fault int64
}

// Verdict is the outcome of one evaluation.
type Verdict struct {
	HealthUp     bool
	SuccessRatio float64
	ErrorRate    float64
	Requests     int64
}

// Tracker is safe for concurrent use.
type Tracker struct {
	mu      sync.Mutex
	cfg     Config
	buckets []bucket
	last    Verdict
}

// maxWindow bounds the bucket ring.
const maxWindow = time.Hour

// New returns a tracker that starts healthy with a success ratio of 1.
func New(cfg Config) *Tracker {
	return &Tracker{cfg: cfg, buckets: make([]bucket, int(maxWindow/time.Second)), last: Verdict{HealthUp: true, SuccessRatio: 1}}
}

// SetConfig applies a new configuration (on reload).
func (t *Tracker) SetConfig(cfg Config) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cfg = cfg
}

// Record counts one answered request.
func (t *Tracker) Record(serverFault bool) {
	sec := time.Now().Unix()
	t.mu.Lock()
	b := &t.buckets[sec%int64(len(t.buckets))]
	if b.sec != sec {
		*b = bucket{sec: sec}
	}
	b.total++
	if serverFault {
		b.fault++
	}
	t.mu.Unlock()
}

// Evaluate computes the verdict now, given the current count of consecutive
// Kafka errors.
func (t *Tracker) Evaluate(consecutiveKafkaErrors int64) Verdict {
	now := time.Now().Unix()
	t.mu.Lock()
	defer t.mu.Unlock()
	secs := min(int64(t.cfg.Window/time.Second), int64(len(t.buckets)))
	var total, fault int64
	for s := now - secs + 1; s <= now; s++ {
		if b := t.buckets[s%int64(len(t.buckets))]; b.sec == s {
			total += b.total
			fault += b.fault
		}
	}
	if total == 0 {
		return t.last // no traffic: keep the last verdict
	}
	v := Verdict{Requests: total, ErrorRate: float64(fault) / float64(total)}
	v.SuccessRatio = 1 - v.ErrorRate
	v.HealthUp = v.ErrorRate <= t.cfg.ErrorRateThreshold && consecutiveKafkaErrors < t.cfg.MaxConsecutiveKafkaErrors
	t.last = v
	return v
}

// Last returns the most recent verdict.
func (t *Tracker) Last() Verdict {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

// Run evaluates every period until ctx ends.
func (t *Tracker) Run(ctx context.Context, consecutiveKafkaErrors func() int64) error {
	for {
		t.mu.Lock()
		period := t.cfg.EvalPeriod
		t.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(period):
			t.Evaluate(consecutiveKafkaErrors())
		}
	}
}
