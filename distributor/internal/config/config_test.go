package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultsAreValid(t *testing.T) {
	require.NoError(t, Default().Validate())
}

func TestLogStreamerEnvironmentNamesOverrideTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.yaml")
	require.NoError(t, os.WriteFile(path, []byte("listen: \":9999\"\nkafka:\n  acks: all\n"), 0o644))
	cfg, err := Load(path, env(map[string]string{
		"PORT":                      "8081",
		"ANALYZERS":                 "http://analyzer-1:9001=0.5, a2@http://10.0.0.2:9002=0.3,http://127.0.0.1:9003=0.2",
		"KAFKA_BROKERS":             "kafka:9092, kafka2:9092",
		"HEALTH_CHECK_INTERVAL_SEC": "2",
		"HEALTH_CHECK_TIMEOUT_SEC":  "0.25",
		"MAX_FAILURES":              "3",
	}))
	require.NoError(t, err)
	require.Equal(t, ":8081", cfg.Listen)
	require.Equal(t, "all", cfg.Kafka.Acks, "file value kept")
	require.Equal(t, []string{"kafka:9092", "kafka2:9092"}, cfg.Kafka.Brokers)
	require.Equal(t, []Analyzer{
		{ID: "analyzer-1", URL: "http://analyzer-1:9001", Weight: 0.5},
		{ID: "a2", URL: "http://10.0.0.2:9002", Weight: 0.3},
		{ID: "127.0.0.1-9003", URL: "http://127.0.0.1:9003", Weight: 0.2},
	}, cfg.Analyzers, "ids from id@ or from the host name")
	require.Equal(t, 2*time.Second, cfg.Health.Interval)
	require.Equal(t, 250*time.Millisecond, cfg.Health.Timeout)
	require.Equal(t, 3, cfg.Health.MaxFailures)
}

func TestAnIDThatCannotNameATopicIsRejected(t *testing.T) {
	as, err := ParseAnalyzers("bad/id@http://127.0.0.1:9003=0.2")
	require.NoError(t, err)
	c := Default()
	c.Analyzers = as
	require.ErrorContains(t, c.Validate(), "analyzers[0].id")
}

func TestUnknownFieldsInTheFileAreRejected(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.yaml")
	require.NoError(t, os.WriteFile(path, []byte("lsiten: \":1\"\n"), 0o644))
	_, err := Load(path, env(nil))
	require.ErrorContains(t, err, "lsiten")
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Default()
	c.Kafka.Acks = "2"
	c.Routing.Strategy = "random"
	c.Health.Timeout = 5 * time.Second
	c.Analyzers = append(c.Analyzers, Analyzer{ID: "analyzer-1", URL: "ftp://x", Weight: -1})
	err := c.Validate()
	for _, want := range []string{"kafka.acks", "routing.strategy", "health.timeout", "analyzers[3].id", "analyzers[3].url", "analyzers[3].weight"} {
		require.ErrorContains(t, err, want)
	}
}

func TestBadEnvironmentValuesAreNamed(t *testing.T) {
	_, err := Load("", env(map[string]string{"PORT": "http", "ANALYZERS": "analyzer-1=0.5,http://a:1=x", "MAX_FAILURES": "two"}))
	require.ErrorContains(t, err, "PORT")
	require.ErrorContains(t, err, "analyzer-1=0.5")
	require.ErrorContains(t, err, "weight is not a number")
	require.ErrorContains(t, err, "MAX_FAILURES")
}

func TestRedactedHidesTheSASLPassword(t *testing.T) {
	c := Default()
	c.Kafka.SASLPassword = "hunter2"
	require.Equal(t, "<redacted>", c.Redacted().Kafka.SASLPassword)
	require.Equal(t, "hunter2", c.Kafka.SASLPassword)
}

func TestKafkaWriterChangedIgnoresBreakerAndLayout(t *testing.T) {
	a := Default().Kafka
	b := a
	b.Breaker.Failures = 99
	b.Partitions = 3
	require.False(t, KafkaWriterChanged(a, b))
	b.Acks = "all"
	require.True(t, KafkaWriterChanged(a, b))
}

// The example file documents every field with its default; this keeps it
// from drifting.
func TestTheExampleFileHoldsEveryDefault(t *testing.T) {
	cfg, err := Load("../../distributor.example.yaml", env(nil))
	require.NoError(t, err)
	require.Equal(t, Default(), cfg)
	b, err := os.ReadFile("../../distributor.example.yaml")
	require.NoError(t, err)
	for _, field := range []string{"max_inflight", "lag_threshold", "stable_after", "error_rate_threshold", "tenant_overrides"} {
		require.Contains(t, string(b), field)
	}
}
