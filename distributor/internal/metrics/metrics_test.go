package metrics

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

type fakeState struct{ as []AnalyzerGauge }

func (f fakeState) AnalyzerGauges() []AnalyzerGauge { return f.as }
func (fakeState) KafkaConsecutiveErrors() int64     { return 0 }
func (fakeState) HealthUp() bool                    { return true }
func (fakeState) SLASuccessRatio() float64          { return 1 }
func (fakeState) ConfigReloadOK() bool              { return true }
func (fakeState) ConnectionsShed() int64            { return 0 }

// The transition counts are cumulative monotonic sums (Prometheus:
// counters with _total), one series per analyzer and "to" state, zeros
// included, so that increase() sees the first transition.
func TestTransitionCountsAreCountersWithOneSeriesPerState(t *testing.T) {
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	s := fakeState{as: []AnalyzerGauge{{ID: "analyzer-2", BreakerTransitions: [3]int64{3, 4, 5}, UpTransitions: [2]int64{2, 3}}}}
	require.NoError(t, RegisterGauges(mp.Meter("test"), s, "v", "go"))
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	got := map[string]map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || (m.Name != "distributor_analyzer_breaker_transitions" && m.Name != "distributor_analyzer_up_transitions") {
				continue
			}
			require.True(t, sum.IsMonotonic, m.Name)
			require.Equal(t, metricdata.CumulativeTemporality, sum.Temporality, m.Name)
			got[m.Name] = map[string]int64{}
			for _, dp := range sum.DataPoints {
				a, _ := dp.Attributes.Value(attribute.Key("analyzer"))
				require.Equal(t, "analyzer-2", a.AsString())
				to, _ := dp.Attributes.Value(attribute.Key("to"))
				got[m.Name][to.AsString()] = dp.Value
			}
		}
	}
	require.Equal(t, map[string]map[string]int64{
		"distributor_analyzer_breaker_transitions": {"closed": 3, "half_open": 4, "open": 5},
		"distributor_analyzer_up_transitions":      {"down": 2, "up": 3},
	}, got)
}
