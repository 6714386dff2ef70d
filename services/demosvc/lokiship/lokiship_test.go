package lokiship

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func TestTheBufferIsBoundedAndDropsAreCounted(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	s, err := New(Config{URL: "http://127.0.0.1:1/push", Tenant: "t", BatchSize: 10, BufferSize: 50},
		sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("t"), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	for i := 0; i < 80; i++ {
		s.Log(time.Now(), "info", "line")
	}
	require.Equal(t, 50, s.Pending(), "the oldest lines go first; the service never blocks")
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	var dropped int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "demo_log_lines_dropped" {
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					dropped += dp.Value
				}
			}
		}
	}
	require.EqualValues(t, 30, dropped)
}

func TestLabelsRenderSortedWithTheLevel(t *testing.T) {
	require.Equal(t, `{app="x",service="a\"b",level="warn"}`, labelString(map[string]string{"service": `a"b`, "app": "x", "level": "ignored"}, "warn"))
}
