package consume

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Each tenant gets a series of its own up to maxTenantSeries; later
// tenants share "_other", so a client inventing tenants cannot blow up
// the number of series.
func TestTenantSeriesAreBounded(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	s, err := NewStats("analyzer-1", sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("t"))
	require.NoError(t, err)
	ctx := context.Background()
	for i := range maxTenantSeries + 10 {
		s.processed(ctx, fmt.Sprintf("t-%d", i), map[string]int64{"info": 1}, 1, time.Millisecond, time.Millisecond)
	}
	s.processed(ctx, "t-0", map[string]int64{"info": 1}, 1, time.Millisecond, time.Millisecond)
	s.processed(ctx, "t-99", map[string]int64{"info": 1}, 1, time.Millisecond, time.Millisecond)

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	byTenant := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "analyzer_tenant_packets_processed" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				v, _ := dp.Attributes.Value("tenant")
				a, _ := dp.Attributes.Value("analyzer")
				require.Equal(t, "analyzer-1", a.AsString())
				byTenant[v.AsString()] = dp.Value
			}
		}
	}
	require.Len(t, byTenant, maxTenantSeries+1)
	require.Equal(t, int64(2), byTenant["t-0"])
	require.Equal(t, int64(11), byTenant["_other"], "10 late tenants and t-99 again")
	require.Equal(t, int64(maxTenantSeries+10+2), s.Snapshot().PacketsProcessed)
}
