package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// designMetrics are DESIGN.md §4's names (as Prometheus shows them, before
// _bucket/_sum/_count) and the recording rules: a dashboard may use these.
// TestEveryDesignMetricNameIsExposed proves the DESIGN names are real.
var designMetrics = map[string]bool{}

func init() {
	for _, n := range []string{
		"distributor_requests_total", "distributor_request_duration_seconds", "distributor_request_bytes_total",
		"distributor_packets_total", "distributor_messages_total", "distributor_routed_packets_total", "distributor_routed_messages_total",
		"distributor_kafka_write_duration_seconds", "distributor_kafka_write_errors_total", "distributor_kafka_consecutive_errors",
		"distributor_rate_limited_total", "distributor_analyzer_up", "distributor_healthy_analyzers", "distributor_analyzers",
		"distributor_analyzer_breaker_state", "distributor_analyzer_weight", "distributor_queue_depth", "distributor_health_up",
		"distributor_sla_success_ratio", "distributor_config_last_reload_successful", "distributor_build_info",
		"analyzer_packets_processed_total", "analyzer_messages_processed_total", "analyzer_duplicate_packets_total",
		"analyzer_processing_duration_seconds", "analyzer_end_to_end_latency_seconds", "analyzer_consumer_lag",
		"platform_fault_active", "platform_faults_total", "platform_traffic_jobs_active", "platform_experiments_total",
		"dsplab:distributor_requests:rate1m", "dsplab:distributor_error_ratio:rate5m", "dsplab:distributor_sla:ratio_rate15m",
		"dsplab:distributor_request_duration_seconds:p95_5m", "dsplab:distributor_kafka_error_ratio:rate5m", "dsplab:distributor_message_share:rate1m",
	} {
		designMetrics[n] = true
	}
}

var metricRef = regexp.MustCompile(`\b((?:distributor|analyzer|platform)_[a-z0-9_]+|dsplab:[a-z0-9_:]+)`)

// Every dashboard is valid JSON with a uid, and every distributor,
// analyzer, platform or recorded metric its queries name is a real one.
func TestDashboardsAreValidAndUseRealMetricNames(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "grafana", "dashboards", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var d struct {
			UID    string `json:"uid"`
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		require.NoError(t, json.Unmarshal(b, &d), f)
		require.NotEmpty(t, d.UID, f)
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				for _, m := range metricRef.FindAllString(tg.Expr, -1) {
					m = regexp.MustCompile(`_(bucket|sum|count)$`).ReplaceAllString(m, "")
					require.True(t, designMetrics[m], "%s, panel %q: %s is not a known metric", filepath.Base(f), p.Title, m)
				}
			}
		}
	}
}

// The alert and recording rules name only real metrics too.
func TestRulesUseRealMetricNames(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "prometheus", "rules", "*.yml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range metricRef.FindAllString(string(b), -1) {
			m = regexp.MustCompile(`_(bucket|sum|count)$`).ReplaceAllString(m, "")
			require.True(t, designMetrics[m], "%s: %s is not a known metric", filepath.Base(f), m)
		}
	}
}
