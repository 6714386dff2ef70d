// Package config is the distributor's configuration: defaults, a YAML file
// decoded strictly, environment overrides (including the log-streamer
// names PORT, ANALYZERS, HEALTH_CHECK_INTERVAL_SEC, HEALTH_CHECK_TIMEOUT_SEC,
// MAX_FAILURES), and Validate, which reports every problem at once.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/dsplab/dsplab/distributor/internal/ratelimit"
)

// Config is the whole distributor configuration.
type Config struct {
	Listen        string     `yaml:"listen" json:"listen"`
	DefaultTenant string     `yaml:"default_tenant" json:"default_tenant"`
	Limits        Limits     `yaml:"limits" json:"limits"`
	Kafka         Kafka      `yaml:"kafka" json:"kafka"`
	Analyzers     []Analyzer `yaml:"analyzers" json:"analyzers"`
	Routing       Routing    `yaml:"routing" json:"routing"`
	Health        Health     `yaml:"health" json:"health"`
	SLA           SLA        `yaml:"sla" json:"sla"`
	Reload        Reload     `yaml:"reload" json:"reload"`
}

// Reload says what the run-time overlay (PUT /admin/config) may change.
// Only the file and the environment set it: an overlay that touches it is
// refused.
type Reload struct {
	// AllowEndpointChanges lets the overlay change where packets go and
	// who is probed: kafka.brokers, kafka.topic_prefix, kafka.sasl_user,
	// kafka.sasl_password, and the analyzers' ids and URLs. Off, such an
	// overlay is refused: whoever can reach the admin API could otherwise
	// send accepted packets to a broker or topic nobody reads.
	AllowEndpointChanges bool `yaml:"allow_endpoint_changes" json:"allow_endpoint_changes"`
}

// Limits bound requests and their rate.
type Limits struct {
	MaxBodyBytes         int `yaml:"max_body_bytes" json:"max_body_bytes"`
	MaxDecompressedBytes int `yaml:"max_decompressed_bytes" json:"max_decompressed_bytes"`
	MaxMessagesPerPacket int `yaml:"max_messages_per_packet" json:"max_messages_per_packet"`
	MaxMessageBytes      int `yaml:"max_message_bytes" json:"max_message_bytes"`
	// MaxInflight bounds requests being decoded or written to Kafka at
	// once; more get a fast 503. It keeps memory bounded under overload.
	MaxInflight int `yaml:"max_inflight" json:"max_inflight"`
	// MaxConnections caps open client connections (idle keep-alive ones
	// included); a connection beyond it gets a fast 503 with Retry-After and
	// is closed. With MaxInflight it bounds memory under any overload. Read
	// at start-up only.
	MaxConnections int `yaml:"max_connections" json:"max_connections"`
	// BodyReadTimeout bounds the time from the end of a request's headers
	// to the end of its body: a client sending its body slower is cut off
	// with 408 and its connection closed, so slow clients cannot hold
	// connections and memory for long.
	BodyReadTimeout time.Duration `yaml:"body_read_timeout" json:"body_read_timeout"`
	// MaxBytesInFlight is the global memory budget of the ingest path: the
	// estimated bytes of every request being received, decompressed,
	// decoded and written (see package budget). A request that would pass
	// it gets a fast 503 with Retry-After.
	MaxBytesInFlight int64                     `yaml:"max_bytes_in_flight" json:"max_bytes_in_flight"`
	Global           ratelimit.Rate            `yaml:"global" json:"global"`
	PerTenant        ratelimit.Rate            `yaml:"per_tenant" json:"per_tenant"`
	TenantOverrides  map[string]ratelimit.Rate `yaml:"tenant_overrides" json:"tenant_overrides,omitempty"`
}

// Kafka configures the producer. Changing any field except the breaker's
// rebuilds the writer on reload.
type Kafka struct {
	Brokers      []string      `yaml:"brokers" json:"brokers"`
	TopicPrefix  string        `yaml:"topic_prefix" json:"topic_prefix"`
	GroupPrefix  string        `yaml:"group_prefix" json:"group_prefix"`
	Partitions   int           `yaml:"partitions" json:"partitions"`
	Replication  int           `yaml:"replication" json:"replication"`
	Acks         string        `yaml:"acks" json:"acks"` // "1" or "all"
	BatchTimeout time.Duration `yaml:"batch_timeout" json:"batch_timeout"`
	BatchSize    int           `yaml:"batch_size" json:"batch_size"`
	WriteTimeout time.Duration `yaml:"write_timeout" json:"write_timeout"`
	// RequestTimeout is the deadline of one produce, retries included.
	RequestTimeout time.Duration `yaml:"request_timeout" json:"request_timeout"`
	Breaker        Breaker       `yaml:"breaker" json:"breaker"`
	// SASLPassword is never shown by /configz.
	SASLUser     string `yaml:"sasl_user" json:"sasl_user,omitempty"`
	SASLPassword string `yaml:"sasl_password" json:"sasl_password,omitempty"`
}

// Topic is the topic of the analyzer with the given id: the prefix and the id.
func (k Kafka) Topic(analyzerID string) string { return k.TopicPrefix + analyzerID }

// Backoff tunes how long an open breaker waits: BaseBackoff, doubled up
// to MaxBackoff each time the target fails again within StableAfter of
// recovering (flapping).
type Backoff struct {
	BaseBackoff time.Duration `yaml:"base_backoff" json:"base_backoff"`
	MaxBackoff  time.Duration `yaml:"max_backoff" json:"max_backoff"`
	StableAfter time.Duration `yaml:"stable_after" json:"stable_after"`
}

// Breaker tunes a circuit breaker that opens after Failures consecutive
// faults.
type Breaker struct {
	Failures int `yaml:"failures" json:"failures"`
	Backoff  `yaml:",inline"`
}

// Analyzer is one routing target.
type Analyzer struct {
	ID     string  `yaml:"id" json:"id"`
	URL    string  `yaml:"url" json:"url"`
	Weight float64 `yaml:"weight" json:"weight"`
}

// Routing chooses the strategy and the capacity-aware weight reduction.
type Routing struct {
	Strategy string `yaml:"strategy" json:"strategy"` // weighted | tenant-hash
	// LagThreshold is the consumer lag (messages) above which an analyzer's
	// effective weight shrinks: weight × threshold / lag, never below
	// MinWeightFactor × weight. 0 disables capacity awareness.
	LagThreshold    int64         `yaml:"lag_threshold" json:"lag_threshold"`
	MinWeightFactor float64       `yaml:"min_weight_factor" json:"min_weight_factor"`
	LagPollInterval time.Duration `yaml:"lag_poll_interval" json:"lag_poll_interval"`
}

// Health tunes analyzer probing; its breaker decides up and down.
type Health struct {
	Interval    time.Duration `yaml:"interval" json:"interval"`
	Timeout     time.Duration `yaml:"timeout" json:"timeout"`
	MaxFailures int           `yaml:"max_failures" json:"max_failures"`
	Breaker     Backoff       `yaml:"breaker" json:"breaker"`
}

// SLA tunes the health / SLA loop.
type SLA struct {
	EvalPeriod                time.Duration `yaml:"eval_period" json:"eval_period"`
	Window                    time.Duration `yaml:"window" json:"window"`
	ErrorRateThreshold        float64       `yaml:"error_rate_threshold" json:"error_rate_threshold"`
	MaxConsecutiveKafkaErrors int           `yaml:"max_consecutive_kafka_errors" json:"max_consecutive_kafka_errors"`
}

// Default returns the configuration used when nothing is set: the dev stack
// (Kafka on 127.0.0.1:9092, analyzer-1..3 on 9001..9003).
func Default() Config {
	return Config{
		Listen:        ":8080",
		DefaultTenant: "default",
		Limits: Limits{
			MaxBodyBytes: 5 << 20, MaxDecompressedBytes: 20 << 20,
			MaxMessagesPerPacket: 10_000, MaxMessageBytes: 256 << 10, MaxInflight: 1024, MaxConnections: 2048,
			BodyReadTimeout: 10 * time.Second, MaxBytesInFlight: 64 << 20,
			TenantOverrides: map[string]ratelimit.Rate{},
		},
		Kafka: Kafka{
			Brokers: []string{"127.0.0.1:9092"}, TopicPrefix: "logs.", Partitions: 1, Replication: 1,
			Acks: "1", BatchTimeout: time.Millisecond, BatchSize: 200,
			WriteTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second,
			Breaker: Breaker{Failures: 5, Backoff: Backoff{BaseBackoff: 2 * time.Second, MaxBackoff: 30 * time.Second, StableAfter: time.Minute}},
		},
		Analyzers: []Analyzer{
			{ID: "analyzer-1", URL: "http://127.0.0.1:9001", Weight: 0.5},
			{ID: "analyzer-2", URL: "http://127.0.0.1:9002", Weight: 0.3},
			{ID: "analyzer-3", URL: "http://127.0.0.1:9003", Weight: 0.2},
		},
		Routing: Routing{Strategy: "weighted", LagThreshold: 5_000, MinWeightFactor: 0.1, LagPollInterval: 2 * time.Second},
		Health: Health{
			Interval: time.Second, Timeout: 500 * time.Millisecond, MaxFailures: 2,
			Breaker: Backoff{BaseBackoff: time.Second, MaxBackoff: 30 * time.Second, StableAfter: 30 * time.Second},
		},
		SLA: SLA{EvalPeriod: 5 * time.Second, Window: time.Minute, ErrorRateThreshold: 0.05, MaxConsecutiveKafkaErrors: 5},
	}
}

// Load builds the effective configuration: defaults, then the YAML file at
// path (if path is not empty), then environment overrides read with
// getenv. It validates the result.
func Load(path string, getenv func(string) string) (Config, error) {
	return LoadWithOverlay(path, getenv, nil)
}

// LoadWithOverlay is Load with one more layer on top: overlay, a YAML (or
// JSON) document of the file's shape, usually partial, set at run time
// through the admin API. Its fields win over file and environment; a
// list (analyzers) replaces the list below it.
func LoadWithOverlay(path string, getenv func(string) string, overlay []byte) (Config, error) {
	cfg := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("read config: %w", err)
		}
		if err := decodeStrict(b, &cfg); err != nil {
			return Config{}, err
		}
	}
	if err := applyEnv(&cfg, getenv); err != nil {
		return Config{}, err
	}
	var errs []error
	if len(bytes.TrimSpace(overlay)) > 0 {
		base := endpointsOf(cfg)
		if err := decodeStrict(overlay, &cfg); err != nil {
			return Config{}, fmt.Errorf("overlay: %w", err)
		}
		errs = base.changes(cfg)
	}
	if err := errors.Join(append([]error{cfg.Validate()}, errs...)...); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// decodeStrict decodes YAML into cfg, rejecting unknown fields.
func decodeStrict(b []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("parse config: %w", err)
	}
	return nil
}

// Redacted returns a copy safe to show: secrets replaced (the SASL
// password by Redaction, the password of an analyzer URL by xxxxx).
func (c Config) Redacted() Config {
	if c.Kafka.SASLPassword != "" {
		c.Kafka.SASLPassword = Redaction
	}
	c.Analyzers = append([]Analyzer(nil), c.Analyzers...)
	for i := range c.Analyzers {
		c.Analyzers[i].URL = RedactURL(c.Analyzers[i].URL)
	}
	return c
}

// RateLimits returns the limiter configuration.
func (c Config) RateLimits() ratelimit.Config {
	return ratelimit.Config{Global: c.Limits.Global, PerTenant: c.Limits.PerTenant, TenantOverrides: c.Limits.TenantOverrides}
}
