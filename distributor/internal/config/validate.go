package config

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"time"

	"github.com/dsplab/dsplab/distributor/internal/ratelimit"
)

// MaxWeight is the largest analyzer weight (the admin API's bound too).
const MaxWeight = 1e6

// minPeriod and minTimeout are the floors of loop periods and timeouts.
const (
	minPeriod  = 100 * time.Millisecond
	minTimeout = 10 * time.Millisecond
)

// topicSafe are the characters Kafka allows in topic names; analyzer ids
// become part of topic names.
var topicSafe = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

// problems collects a configuration's problems, each naming its field.
type problems []error

// add records that field's value is bad, saying how.
func (p *problems) add(field, format string, a ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
}

// Validate returns every problem in c at once (errors.Join), or nil.
func (c Config) Validate() error {
	var p problems
	if c.Listen == "" {
		p.add("listen", "is empty")
	}
	if c.DefaultTenant == "" {
		p.add("default_tenant", "is empty")
	}
	c.validateBounds(&p)
	c.validateKafkaAndRouting(&p)
	c.validateRates(&p)
	p = append(p, c.validateAnalyzers()...)
	return errors.Join(p...)
}

// validateBounds checks the counts, durations and their floors.
func (c Config) validateBounds(p *problems) {
	positive := map[string]int{
		"limits.max_body_bytes": c.Limits.MaxBodyBytes, "limits.max_decompressed_bytes": c.Limits.MaxDecompressedBytes,
		"limits.max_messages_per_packet": c.Limits.MaxMessagesPerPacket, "limits.max_message_bytes": c.Limits.MaxMessageBytes, "limits.max_inflight": c.Limits.MaxInflight, "limits.max_connections": c.Limits.MaxConnections,
		"kafka.partitions": c.Kafka.Partitions, "kafka.replication": c.Kafka.Replication, "kafka.batch_size": c.Kafka.BatchSize,
		"kafka.breaker.failures": c.Kafka.Breaker.Failures, "health.max_failures": c.Health.MaxFailures,
		"sla.max_consecutive_kafka_errors": c.SLA.MaxConsecutiveKafkaErrors,
	}
	for f, v := range positive {
		if v <= 0 {
			p.add(f, "must be positive, is %d", v)
		}
	}
	durations := map[string]time.Duration{
		"kafka.write_timeout":   c.Kafka.WriteTimeout,
		"kafka.request_timeout": c.Kafka.RequestTimeout, "kafka.breaker.base_backoff": c.Kafka.Breaker.BaseBackoff,
		"health.interval": c.Health.Interval, "health.timeout": c.Health.Timeout,
		"health.breaker.base_backoff": c.Health.Breaker.BaseBackoff, "routing.lag_poll_interval": c.Routing.LagPollInterval,
		"sla.eval_period": c.SLA.EvalPeriod, "sla.window": c.SLA.Window,
	}
	for f, d := range durations {
		if d <= 0 {
			p.add(f, "must be a positive duration, is %s", d)
		}
	}
	// The least time a produce batch gathers from its first record
	// (produce/gather.go): 0 is none; more than a second would hold every
	// request at light load for it.
	if b := c.Kafka.BatchTimeout; b < 0 || b > time.Second {
		p.add("kafka.batch_timeout", "must be between 0 and 1s, is %s", b)
	}
	// Floors for the loops' periods: a probe every 2ns with a 1ns timeout
	// (or a lag poll, an SLA evaluation) would spin a core and fail every
	// probe. 100ms is ten times finer than any default.
	for f, d := range map[string]time.Duration{"health.interval": c.Health.Interval, "routing.lag_poll_interval": c.Routing.LagPollInterval, "sla.eval_period": c.SLA.EvalPeriod} {
		if d > 0 && d < minPeriod {
			p.add(f, "must be at least %s, is %s", minPeriod, d)
		}
	}
	for f, d := range map[string]time.Duration{"health.timeout": c.Health.Timeout, "kafka.request_timeout": c.Kafka.RequestTimeout, "kafka.write_timeout": c.Kafka.WriteTimeout,
		"health.breaker.base_backoff": c.Health.Breaker.BaseBackoff, "kafka.breaker.base_backoff": c.Kafka.Breaker.BaseBackoff} {
		if d > 0 && d < minTimeout {
			p.add(f, "must be at least %s, is %s", minTimeout, d)
		}
	}
	if c.Health.Timeout >= c.Health.Interval && c.Health.Interval > 0 {
		p.add("health.timeout", "must be shorter than health.interval (%s)", c.Health.Interval)
	}
	if c.Limits.BodyReadTimeout < 100*time.Millisecond {
		p.add("limits.body_read_timeout", "must be at least 100ms, is %s", c.Limits.BodyReadTimeout)
	}
	if c.Limits.MaxBytesInFlight < 1<<20 {
		p.add("limits.max_bytes_in_flight", "must be at least 1 MiB (1048576), is %d", c.Limits.MaxBytesInFlight)
	}
	if c.SLA.Window < c.SLA.EvalPeriod {
		p.add("sla.window", "must be at least sla.eval_period")
	}
}

// validateKafkaAndRouting checks the choices among named values.
func (c Config) validateKafkaAndRouting(p *problems) {
	if !(c.SLA.ErrorRateThreshold > 0 && c.SLA.ErrorRateThreshold <= 1) { // NaN too
		p.add("sla.error_rate_threshold", "must be in (0, 1], is %v", c.SLA.ErrorRateThreshold)
	}
	if len(c.Kafka.Brokers) == 0 {
		p.add("kafka.brokers", "needs at least one broker")
	}
	if c.Kafka.Acks != "1" && c.Kafka.Acks != "all" {
		p.add("kafka.acks", "must be \"1\" or \"all\", is %q", c.Kafka.Acks)
	}
	if c.Kafka.TopicPrefix != "" && !topicSafe.MatchString(c.Kafka.TopicPrefix) {
		p.add("kafka.topic_prefix", "may hold only letters, digits, '.', '_' and '-'")
	}
	if c.Routing.Strategy != "weighted" && c.Routing.Strategy != "tenant-hash" {
		p.add("routing.strategy", "must be weighted or tenant-hash, is %q", c.Routing.Strategy)
	}
	if c.Routing.LagThreshold < 0 {
		p.add("routing.lag_threshold", "must not be negative")
	}
	if !(c.Routing.MinWeightFactor > 0 && c.Routing.MinWeightFactor <= 1) {
		p.add("routing.min_weight_factor", "must be in (0, 1], is %v", c.Routing.MinWeightFactor)
	}
}

// validateRates checks the rate limits: finite, not negative.
func (c Config) validateRates(p *problems) {
	rates := map[string]ratelimit.Rate{"limits.global": c.Limits.Global, "limits.per_tenant": c.Limits.PerTenant}
	for t, r := range c.Limits.TenantOverrides {
		rates[fmt.Sprintf("limits.tenant_overrides[%q]", t)] = r
	}
	for name, r := range rates {
		if !(r.Rate >= 0) || math.IsInf(r.Rate, 0) {
			p.add(name+".rate", "must be a finite number, not negative (0 means unlimited), is %v", r.Rate)
		}
		if r.Burst < 0 {
			p.add(name+".burst", "must not be negative, is %d", r.Burst)
		}
	}
}

// validateAnalyzers checks the analyzer list: ids usable in topic names
// and unique, http(s) URLs, weights in range and at least one positive.
func (c Config) validateAnalyzers() []error {
	var errs []error
	if len(c.Analyzers) == 0 {
		errs = append(errs, errors.New("analyzers: needs at least one analyzer"))
	}
	seen := map[string]bool{}
	anyWeight := false
	for i, a := range c.Analyzers {
		f := fmt.Sprintf("analyzers[%d]", i)
		if !topicSafe.MatchString(a.ID) || len(a.ID) > 200 {
			errs = append(errs, fmt.Errorf("%s.id: %q must be 1-200 letters, digits, '.', '_' or '-'", f, a.ID))
		}
		if seen[a.ID] {
			errs = append(errs, fmt.Errorf("%s.id: %q is used twice", f, a.ID))
		}
		seen[a.ID] = true
		if u, err := url.Parse(a.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s.url: %q must be an http(s) URL", f, RedactURL(a.URL)))
		}
		if !(a.Weight >= 0 && a.Weight <= MaxWeight) { // NaN and ±Inf too
			errs = append(errs, fmt.Errorf("%s.weight: must be a number from 0 to %g, is %v", f, float64(MaxWeight), a.Weight))
		}
		if a.Weight > 0 {
			anyWeight = true
		}
	}
	if len(c.Analyzers) > 0 && !anyWeight {
		errs = append(errs, errors.New("analyzers: every weight is 0 or invalid: at least one analyzer needs a positive weight, or nothing could be routed"))
	}
	return errs
}

// KafkaWriterChanged reports whether the fields that shape the Kafka writer
// differ between a and b (the breaker and topic layout do not).
func KafkaWriterChanged(a, b Kafka) bool {
	a.Breaker, b.Breaker = Breaker{}, Breaker{}
	a.TopicPrefix, b.TopicPrefix = "", ""
	a.GroupPrefix, b.GroupPrefix = "", ""
	a.Partitions, b.Partitions, a.Replication, b.Replication = 0, 0, 0, 0
	return fmt.Sprint(a) != fmt.Sprint(b)
}
