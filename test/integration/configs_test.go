package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// Tempo and Grafana cannot be pulled nor built on this project's machines
// (AGPL, and no registry here), so their configs are checked statically: valid YAML, and
// every cross-reference between them, the collector, the compose file and
// the dashboards agrees. A stand-in, not the programs themselves.
func TestTempoAndGrafanaConfigsAgreeWithTheStack(t *testing.T) {
	root := repoRoot(t)
	read := func(p string, v any) {
		b, err := os.ReadFile(filepath.Join(root, p))
		require.NoError(t, err, p)
		require.NoError(t, yaml.Unmarshal(b, v), p)
	}

	var tempo struct {
		Server struct {
			Port int `yaml:"http_listen_port"`
		} `yaml:"server"`
		Distributor struct {
			Receivers struct {
				OTLP struct {
					Protocols struct {
						GRPC struct{ Endpoint string } `yaml:"grpc"`
					} `yaml:"protocols"`
				} `yaml:"otlp"`
			} `yaml:"receivers"`
		} `yaml:"distributor"`
		MetricsGenerator struct {
			Storage struct {
				RemoteWrite []struct{ URL string } `yaml:"remote_write"`
			} `yaml:"storage"`
		} `yaml:"metrics_generator"`
	}
	read("otel/tempo.yaml", &tempo)
	require.Equal(t, 3200, tempo.Server.Port, "Grafana's Tempo datasource and compose use :3200")
	require.Equal(t, "0.0.0.0:4317", tempo.Distributor.Receivers.OTLP.Protocols.GRPC.Endpoint, "the collector exports to tempo:4317")
	require.NotEmpty(t, tempo.MetricsGenerator.Storage.RemoteWrite)
	require.Equal(t, "http://prometheus:9090/api/v1/write", tempo.MetricsGenerator.Storage.RemoteWrite[0].URL)

	var collector struct {
		Exporters map[string]struct{ Endpoint string } `yaml:"exporters"`
	}
	read("otel/collector.yaml", &collector)
	require.Equal(t, "tempo:4317", collector.Exporters["otlp_grpc/tempo"].Endpoint)

	var ds struct {
		Datasources []struct {
			UID, Type, URL string
			JSONData       map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	read("grafana/provisioning/datasources/datasources.yaml", &ds)
	uids := map[string]string{}
	for _, d := range ds.Datasources {
		uids[d.UID] = d.URL
	}
	require.Equal(t, map[string]string{"prometheus": "http://prometheus:9090", "tempo": "http://tempo:3200", "alertmanager": "http://alertmanager:9093"}, uids)

	var prov struct {
		Providers []struct {
			Options struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	read("grafana/provisioning/dashboards/dashboards.yaml", &prov)
	require.Len(t, prov.Providers, 1)
	var compose struct {
		Services map[string]struct{ Volumes []string } `yaml:"services"`
	}
	read("docker-compose.yml", &compose)
	require.Contains(t, compose.Services["grafana"].Volumes, "./grafana/dashboards:"+prov.Providers[0].Options.Path+":ro")
	require.Contains(t, compose.Services["tempo"].Volumes, "./otel/tempo.yaml:/etc/tempo/tempo.yaml:ro")

	// Every datasource a dashboard names is provisioned.
	files, _ := filepath.Glob(filepath.Join(root, "grafana", "dashboards", "*.json"))
	ref := regexp.MustCompile(`"datasource":\s*\{[^}]*"uid":\s*"([^"]+)"`)
	refs := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		require.True(t, json.Valid(b), f)
		for _, m := range ref.FindAllStringSubmatch(string(b), -1) {
			if m[1] == "-- Grafana --" {
				continue
			}
			refs++
			_, ok := uids[m[1]]
			require.True(t, ok, "%s uses datasource %q, which is not provisioned", filepath.Base(f), m[1])
		}
	}
	require.Greater(t, refs, 50, "datasource references found")
}

// The settings of issue 20 that Tempo and Grafana (not runnable here) and
// the compose file carry, checked statically against the names in their
// sources (README, "Telemetry and dashboards"): nothing phones home,
// Tempo searches up to now and gets time to stop, and exemplars of both
// the collector (trace_id) and Tempo's generator (traceID) link to Tempo.
func TestTheLabIsQuietSearchesUpToNowAndLinksEveryExemplar(t *testing.T) {
	root := repoRoot(t)
	read := func(p string, v any) {
		b, err := os.ReadFile(filepath.Join(root, p))
		require.NoError(t, err, p)
		require.NoError(t, yaml.Unmarshal(b, v), p)
	}
	var tempo struct {
		UsageReport struct {
			ReportingEnabled *bool `yaml:"reporting_enabled"`
		} `yaml:"usage_report"`
		QueryFrontend struct {
			QueryEndCutoff string `yaml:"query_end_cutoff"`
		} `yaml:"query_frontend"`
	}
	read("otel/tempo.yaml", &tempo)
	require.NotNil(t, tempo.UsageReport.ReportingEnabled, "usage_report.reporting_enabled is set")
	require.False(t, *tempo.UsageReport.ReportingEnabled)
	require.Equal(t, "0s", tempo.QueryFrontend.QueryEndCutoff)

	var compose struct {
		Services map[string]struct {
			Environment     map[string]string `yaml:"environment"`
			StopGracePeriod string            `yaml:"stop_grace_period"`
		} `yaml:"services"`
	}
	read("docker-compose.yml", &compose)
	for _, k := range []string{"GF_ANALYTICS_REPORTING_ENABLED", "GF_ANALYTICS_CHECK_FOR_UPDATES", "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES", "GF_NEWS_NEWS_FEED_ENABLED"} {
		require.Equal(t, "false", compose.Services["grafana"].Environment[k], k)
	}
	grace, err := time.ParseDuration(compose.Services["tempo"].StopGracePeriod)
	require.NoError(t, err, "tempo's stop_grace_period")
	require.GreaterOrEqual(t, grace, 35*time.Second, "over Tempo's 30 s backend worker shutdown timeout")

	var ds struct {
		Datasources []struct {
			UID      string `yaml:"uid"`
			JSONData struct {
				Exemplars []struct {
					Name          string `yaml:"name"`
					DatasourceUID string `yaml:"datasourceUid"`
				} `yaml:"exemplarTraceIdDestinations"`
			} `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	read("grafana/provisioning/datasources/datasources.yaml", &ds)
	linked := map[string]string{}
	for _, d := range ds.Datasources {
		if d.UID == "prometheus" {
			for _, e := range d.JSONData.Exemplars {
				linked[e.Name] = e.DatasourceUID
			}
		}
	}
	require.Equal(t, map[string]string{"trace_id": "tempo", "traceID": "tempo"}, linked)
}

// Prometheus's liveness job scrapes every service of the system under
// test and the demo pair, at the port compose gives it, named as the
// service's OTEL_SERVICE_NAME (the label the panels and ServiceDown use).
func TestTheLivenessJobCoversEveryService(t *testing.T) {
	root := repoRoot(t)
	read := func(p string, v any) {
		b, err := os.ReadFile(filepath.Join(root, p))
		require.NoError(t, err, p)
		require.NoError(t, yaml.Unmarshal(b, v), p)
	}
	var compose struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	read("docker-compose.yml", &compose)
	var prom struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string          `yaml:"targets"`
				Labels  map[string]string `yaml:"labels"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	read("prometheus/prometheus.yml", &prom)
	got := map[string]string{}
	for _, j := range prom.ScrapeConfigs {
		if j.JobName != "liveness" {
			continue
		}
		for _, sc := range j.StaticConfigs {
			for _, tg := range sc.Targets {
				got[tg] = sc.Labels["service_name"]
			}
		}
	}
	want := map[string]string{}
	for _, s := range []string{"distributor", "analyzer-1", "analyzer-2", "analyzer-3", "service-a", "service-b"} {
		env := compose.Services[s].Environment
		require.NotEmpty(t, env["PORT"], s)
		want[s+":"+env["PORT"]] = env["OTEL_SERVICE_NAME"]
	}
	require.Equal(t, want, got)
}
