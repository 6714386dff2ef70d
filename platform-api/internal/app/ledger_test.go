package app

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/dsplab/dsplab/platform-api/internal/experiments"
	"github.com/dsplab/dsplab/platform-api/internal/ledgercheck"
)

func TestTheLedgerIsConfiguredFromTheEnvironment(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	c, err := ConfigFromEnv(env(map[string]string{}))
	require.NoError(t, err)
	require.False(t, c.LedgerOff)
	require.Equal(t, ledgercheck.Config{Brokers: []string{"kafka:9092"}, LogsPrefix: "logs.", LedgerTopic: "ledger.processed", MaxRecords: 1000000,
		Timeout: 120 * time.Second, Quiet: 10 * time.Second}, c.Ledger)
	c, err = ConfigFromEnv(env(map[string]string{"KAFKA_BROKERS": "a:9092, b:9092", "LEDGER_TOPIC": "x.ledger", "LEDGER_MAX_RECORDS": "50", "ANALYZER_ADMIN_TOKEN": "t"}))
	require.NoError(t, err)
	require.Equal(t, []string{"a:9092", "b:9092"}, c.Ledger.Brokers)
	require.Equal(t, "x.ledger", c.Ledger.LedgerTopic)
	require.EqualValues(t, 50, c.Ledger.MaxRecords)
	require.Equal(t, "t", c.AnalyzerToken)
	c, err = ConfigFromEnv(env(map[string]string{"DISTRIBUTOR_ADMIN_TOKEN": "d"}))
	require.NoError(t, err)
	require.Equal(t, "d", c.AnalyzerToken, "compose gives the analyzers the distributor's token")
	c, err = ConfigFromEnv(env(map[string]string{"KAFKA_BROKERS": "off"}))
	require.NoError(t, err)
	require.True(t, c.LedgerOff)
	_, err = ConfigFromEnv(env(map[string]string{"LEDGER_MAX_RECORDS": "0", "LEDGER_TIMEOUT_SECONDS": "x", "LEDGER_TOPIC": "logs.ledger"}))
	require.ErrorContains(t, err, "LEDGER_MAX_RECORDS")
	require.ErrorContains(t, err, "LEDGER_TIMEOUT_SECONDS")
	require.ErrorContains(t, err, "starts with KAFKA_TOPIC_PREFIX")
}

// stateDir is a state directory of experiments written by hand.
type stateDir map[string][]byte

func (r stateDir) Put(string, bool, any) error { return nil }
func (r stateDir) Each(fn func(key string, data []byte) error) {
	for k, v := range r {
		fn(k, v)
	}
}

func TestEachEndedExperimentsExactLedgerIsExportedByCount(t *testing.T) {
	ended := time.Now().UTC()
	rec := func(id string, lost int64) []byte {
		b, _ := json.Marshal(map[string]any{"experiment": experiments.Experiment{ID: id, Name: "delivery-semantics-at-most-once", State: experiments.Passed,
			StartedAt: ended.Add(-time.Minute), EndedAt: &ended, ExactLedger: &ledgercheck.Result{Counts: ledgercheck.Counts{Written: 900, Processed: 900 - lost, Lost: lost}}}})
		return b
	}
	m := experiments.NewManager(experiments.Options{Store: stateDir{"x-1": rec("x-1", 7), "x-2": rec("x-2", 0)}, Logger: slog.New(slog.DiscardHandler)})
	m.Restore()
	reader := sdkmetric.NewManualReader()
	require.NoError(t, registerLedgerGauge(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("t"), m))
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			require.Equal(t, "platform_experiment_ledger_packets", mt.Name)
			for _, dp := range mt.Data.(metricdata.Gauge[int64]).DataPoints {
				id, _ := dp.Attributes.Value("experiment")
				count, _ := dp.Attributes.Value("count")
				name, _ := dp.Attributes.Value("name")
				require.Equal(t, "delivery-semantics-at-most-once", name.AsString())
				got[id.AsString()+" "+count.AsString()] = dp.Value
			}
		}
	}
	require.Equal(t, int64(7), got["x-1 lost"])
	require.Equal(t, int64(893), got["x-1 processed"])
	require.Equal(t, int64(0), got["x-2 lost"])
	_, hasAttempted := got["x-1 attempted"]
	require.False(t, hasAttempted, "no k6 summary, no series")
	require.Len(t, got, 18, "nine counts (no k6 numbers) of two experiments")
}
