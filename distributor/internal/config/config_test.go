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
	for _, field := range []string{"max_inflight", "lag_threshold", "stable_after", "error_rate_threshold", "tenant_overrides", "body_read_timeout", "max_bytes_in_flight", "allow_endpoint_changes"} {
		require.Contains(t, string(b), field)
	}
}

func problemsOf(t *testing.T, overlay string) error {
	t.Helper()
	_, err := LoadWithOverlay("", env(nil), []byte(overlay))
	return err
}

// Each of these was accepted before: an infinite or NaN weight or rate, a
// probe every 2ns with a 1ns timeout, all weights zero. Each is refused
// with its field named, all at once.
func TestNonFiniteNumbersTinyPeriodsAndAllZeroWeightsAreRefused(t *testing.T) {
	err := problemsOf(t, `
analyzers:
  - {id: analyzer-1, url: "http://127.0.0.1:9001", weight: .inf}
  - {id: analyzer-2, url: "http://127.0.0.1:9002", weight: .nan}
health: {interval: 2ns, timeout: 1ns}
routing: {min_weight_factor: .nan, lag_poll_interval: 1ms}
limits: {global: {rate: .inf, burst: 1}, per_tenant: {rate: .nan}, tenant_overrides: {acme: {rate: 1, burst: -1}}}
sla: {error_rate_threshold: .nan, eval_period: 1ms, window: 1m}
`)
	require.Error(t, err)
	for _, want := range []string{
		"analyzers[0].weight: must be a number from 0 to 1e+06, is +Inf",
		"analyzers[1].weight: must be a number from 0 to 1e+06, is NaN",
		"health.interval: must be at least 100ms, is 2ns",
		"health.timeout: must be at least 10ms, is 1ns",
		"routing.min_weight_factor", "routing.lag_poll_interval: must be at least 100ms",
		"limits.global.rate: must be a finite number", "limits.per_tenant.rate", `limits.tenant_overrides["acme"].burst`,
		"sla.error_rate_threshold", "sla.eval_period: must be at least 100ms",
	} {
		require.ErrorContains(t, err, want)
	}
	err = problemsOf(t, `{"analyzers":[{"id":"analyzer-1","url":"http://127.0.0.1:9001","weight":0},{"id":"analyzer-2","url":"http://127.0.0.1:9002","weight":0}]}`)
	require.ErrorContains(t, err, "analyzers: every weight is 0")
	err = problemsOf(t, `{"health":{"interval":"1s","timeout":"1s"}}`)
	require.ErrorContains(t, err, "health.timeout: must be shorter than health.interval")
	require.NoError(t, problemsOf(t, `{"analyzers":[{"id":"analyzer-1","url":"http://127.0.0.1:9001","weight":0},{"id":"analyzer-2","url":"http://127.0.0.1:9002","weight":1}]}`),
		"a zero weight is fine while another analyzer has one")
}

// An overlay may tune the distributor, but where packets go (brokers,
// topic prefix, SASL credentials, analyzer ids and URLs) stays as file and
// environment say, unless the file allows it; and the overlay cannot allow
// it itself.
func TestTheOverlayMayNotMoveEndpointsUnlessTheFileAllowsIt(t *testing.T) {
	moves := map[string]string{
		"kafka.brokers":                 `{"kafka":{"brokers":["evil.example:9092"]}}`,
		"kafka.topic_prefix":            `{"kafka":{"topic_prefix":"nobody."}}`,
		"kafka.sasl_user":               `{"kafka":{"sasl_user":"me"}}`,
		"kafka.sasl_password":           `{"kafka":{"sasl_password":"pw"}}`,
		"analyzers[0].url":              `{"analyzers":[{"id":"analyzer-1","url":"http://evil.example:9001","weight":1}]}`,
		"analyzers[1].id":               `{"analyzers":[{"id":"analyzer-1","url":"http://127.0.0.1:9001","weight":1},{"id":"evil","url":"http://127.0.0.1:9001","weight":1}]}`,
		"reload.allow_endpoint_changes": `{"reload":{"allow_endpoint_changes":true},"kafka":{"brokers":["evil.example:9092"]}}`,
	}
	for field, overlay := range moves {
		t.Run(field, func(t *testing.T) {
			err := problemsOf(t, overlay)
			require.ErrorContains(t, err, field+":")
			require.NotContains(t, err.Error(), "pw", "a secret is never echoed")
		})
	}
	_, err := LoadWithOverlay("", env(nil), []byte(moves["reload.allow_endpoint_changes"]))
	require.ErrorContains(t, err, "kafka.brokers", "the overlay's own allow does not count")

	cfg, err := LoadWithOverlay("", env(nil), []byte(`{"analyzers":[{"id":"analyzer-2","url":"http://127.0.0.1:9002","weight":0.7}],"limits":{"global":{"rate":5,"burst":5}}}`))
	require.NoError(t, err, "dropping analyzers and changing weights and limits is tuning")
	require.Len(t, cfg.Analyzers, 1)

	path := filepath.Join(t.TempDir(), "d.yaml")
	require.NoError(t, os.WriteFile(path, []byte("reload:\n  allow_endpoint_changes: true\n"), 0o644))
	for field, overlay := range moves {
		if field == "reload.allow_endpoint_changes" {
			continue
		}
		_, err := LoadWithOverlay(path, env(nil), []byte(overlay))
		require.NoError(t, err, "%s: the file allows endpoint changes", field)
	}
	_, err = LoadWithOverlay(path, env(nil), []byte(`{"reload":{"allow_endpoint_changes":false}}`))
	require.ErrorContains(t, err, "reload.allow_endpoint_changes: can be set only in the config file")
}

func TestSecretsAreRedactedInTheConfigAndTheOverlayAndComeBackWhenResent(t *testing.T) {
	c := Default()
	c.Kafka.SASLPassword = "hunter2"
	c.Analyzers[0].URL = "http://probe:s3cret@127.0.0.1:9001"
	r := c.Redacted()
	require.Equal(t, "<redacted>", r.Kafka.SASLPassword)
	require.Equal(t, "http://probe:xxxxx@127.0.0.1:9001", r.Analyzers[0].URL)
	require.Equal(t, "http://probe:s3cret@127.0.0.1:9001", c.Analyzers[0].URL, "the original is untouched")

	overlay := []byte(`{"kafka":{"sasl_password":"hunter2"},"analyzers":[{"id":"analyzer-1","url":"http://probe:s3cret@127.0.0.1:9001","weight":1}]}`)
	shown := RedactOverlay(overlay)
	require.NotContains(t, string(shown), "hunter2")
	require.NotContains(t, string(shown), "s3cret")
	require.Contains(t, string(shown), "<redacted>")
	require.Contains(t, string(shown), "http://probe:xxxxx@127.0.0.1:9001")
	plain := []byte(`{"limits":{"global":{"rate":5}}}`)
	require.Equal(t, plain, RedactOverlay(plain), "an overlay without secrets is shown as it was sent")

	back, err := ResolveRedacted(shown, c)
	require.NoError(t, err)
	var got Config
	require.NoError(t, decodeStrict(back, &got))
	require.Equal(t, "hunter2", got.Kafka.SASLPassword, "the placeholder keeps the value in force")
	require.Equal(t, "http://probe:s3cret@127.0.0.1:9001", got.Analyzers[0].URL)
	require.Equal(t, plain, must(ResolveRedacted(plain, c)))
	_, err = ResolveRedacted([]byte(`{"analyzers":[{"id":"x","url":"http://u:xxxxx@elsewhere:1","weight":1}]}`), c)
	require.ErrorContains(t, err, "no analyzer in force has that URL")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// kafka.batch_timeout is the least time a produce batch gathers from its
// first record (produce/gather.go): 0 is allowed and means none.
func TestBatchTimeoutMayBeZeroButNotNegativeOrLong(t *testing.T) {
	c := Default()
	c.Kafka.BatchTimeout = 0
	require.NoError(t, c.Validate())
	for _, d := range []time.Duration{-time.Millisecond, 2 * time.Second} {
		c.Kafka.BatchTimeout = d
		require.ErrorContains(t, c.Validate(), "kafka.batch_timeout")
	}
}
