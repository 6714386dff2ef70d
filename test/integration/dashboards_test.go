package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/devstack"
	"go.yaml.in/yaml/v3"
)

// designMetrics are the metric names the product promises (README's
// metric tables; as Prometheus shows them, before _bucket/_sum/_count) and
// the recording rules: a dashboard may use these.
// TestEveryDesignMetricNameIsExposed proves the names are real.
var designMetrics = map[string]bool{}

func init() {
	for _, n := range []string{
		"distributor_requests_total", "distributor_request_duration_seconds", "distributor_request_bytes_total",
		"distributor_packets_total", "distributor_messages_total", "distributor_routed_packets_total", "distributor_routed_messages_total",
		"distributor_kafka_write_duration_seconds", "distributor_kafka_write_errors_total", "distributor_kafka_consecutive_errors", "distributor_kafka_batch_records",
		"distributor_rate_limited_total", "distributor_analyzer_up", "distributor_healthy_analyzers", "distributor_analyzers",
		"distributor_analyzer_breaker_state", "distributor_analyzer_weight", "distributor_queue_depth", "distributor_health_up",
		"distributor_sla_success_ratio", "distributor_config_last_reload_successful", "distributor_build_info",
		"distributor_analyzer_breaker_transitions_total", "distributor_analyzer_up_transitions_total",
		"analyzer_packets_processed_total", "analyzer_messages_processed_total", "analyzer_duplicate_packets_total",
		"analyzer_processing_duration_seconds", "analyzer_end_to_end_latency_seconds", "analyzer_consumer_lag",
		"platform_fault_active", "platform_faults_total", "platform_traffic_jobs_active", "platform_experiments_total", "platform_experiment_ledger_packets",
		"dsplab:distributor_requests:rate1m", "dsplab:distributor_error_ratio:rate5m", "dsplab:distributor_sla:ratio_rate15m",
		"dsplab:distributor_request_duration_seconds:p95_5m", "dsplab:distributor_kafka_error_ratio:rate5m", "dsplab:distributor_message_share:rate1m",
	} {
		designMetrics[n] = true
	}
}

var metricRef = regexp.MustCompile(`\b((?:distributor|analyzer|platform)_[a-z0-9_]+|dsplab:[a-z0-9_:]+)`)

// panelQuery is one PromQL target of a dashboard panel.
type panelQuery struct{ File, Panel, Expr string }

// dashboardQueries reads every dashboard, requires valid JSON with a uid,
// and returns every panel target's expression.
func dashboardQueries(t *testing.T) []panelQuery {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "grafana", "dashboards", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var out []panelQuery
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
				if tg.Expr != "" {
					out = append(out, panelQuery{strings.TrimSuffix(filepath.Base(f), ".json"), p.Title, tg.Expr})
				}
			}
		}
	}
	return out
}

// Every dashboard is valid JSON with a uid, and every distributor,
// analyzer, platform or recorded metric its queries name is a real one.
func TestDashboardsAreValidAndUseRealMetricNames(t *testing.T) {
	for _, q := range dashboardQueries(t) {
		for _, m := range metricRef.FindAllString(q.Expr, -1) {
			m = regexp.MustCompile(`_(bucket|sum|count)$`).ReplaceAllString(m, "")
			require.True(t, designMetrics[m], "%s, panel %q: %s is not a known metric", q.File, q.Panel, m)
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

// grafanaVars are the dashboards' variables, replaced by values of the
// same kind so that the expressions are PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h", "${job_id}", "x", "$job_id", "x", "${service}", "x", "$service", "x")

// Every PromQL expression of every dashboard panel parses with
// Prometheus's own parser: they become recording rules of a scratch file
// that `promtool check rules` (Debian's Prometheus) must accept. The
// alert and recording rules themselves are checked by make check-config.
func TestDashboardQueriesParseWithPromtool(t *testing.T) {
	promtool := devstack.Command(t, "promtool", "prometheus")
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboards\n    rules:\n")
	n := 0
	for _, q := range dashboardQueries(t) {
		n++
		expr, _ := json.Marshal(grafanaVars.Replace(q.Expr)) // a JSON string is a YAML string
		fmt.Fprintf(&rules, "      - record: dashboard:%s:%d\n        expr: %s\n", strings.ReplaceAll(q.File, "-", "_"), n, expr)
	}
	require.Greater(t, n, 30, "panel queries found")
	file := filepath.Join(t.TempDir(), "dashboards.rules.yml")
	require.NoError(t, os.WriteFile(file, []byte(rules.String()), 0o644))
	out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s", out)
	require.Contains(t, string(out), fmt.Sprintf("%d rules found", n))
	t.Logf("%d dashboard queries parse", n)
}

// presetVars replaces the experiment runner's $__range (the experiment so
// far) and $__recovery (the recovery so far) by durations, so that a
// preset's queries are PromQL.
var presetVars = strings.NewReplacer("$__range", "95s", "$__recovery", "40s")

// Every query of every shipped preset (experiments/*.yaml) names real
// metrics and parses with Prometheus's own parser (promtool check rules,
// as for the dashboards).
func TestPresetQueriesUseRealMetricNamesAndParseWithPromtool(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "experiments", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var queries []panelQuery
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var d struct {
			DetectQuery string `yaml:"detectQuery"`
			Checks      []struct {
				Name  string `yaml:"name"`
				Query string `yaml:"query"`
			} `yaml:"checks"`
		}
		require.NoError(t, yaml.Unmarshal(b, &d), f)
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		for _, c := range d.Checks {
			queries = append(queries, panelQuery{name, c.Name, c.Query})
		}
		if d.DetectQuery != "" {
			queries = append(queries, panelQuery{name, "detectQuery", d.DetectQuery})
		}
	}
	known := func(m string) bool { return designMetrics[m] || m == "analyzer_tenant_packets_processed_total" }
	for _, q := range queries {
		for _, m := range metricRef.FindAllString(q.Expr, -1) {
			m = regexp.MustCompile(`_(bucket|sum|count)$`).ReplaceAllString(m, "")
			require.True(t, known(m), "%s, check %q: %s is not a known metric", q.File, q.Panel, m)
		}
	}
	promtool := devstack.Command(t, "promtool", "prometheus")
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: presets\n    rules:\n")
	for i, q := range queries {
		expr, _ := json.Marshal(presetVars.Replace(q.Expr))
		fmt.Fprintf(&rules, "      - record: preset:%s:%d\n        expr: %s\n", strings.ReplaceAll(q.File, "-", "_"), i, expr)
	}
	file := filepath.Join(t.TempDir(), "presets.rules.yml")
	require.NoError(t, os.WriteFile(file, []byte(rules.String()), 0o644))
	out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s", out)
	require.Contains(t, string(out), fmt.Sprintf("%d rules found", len(queries)))
	t.Logf("%d preset queries parse", len(queries))
}
