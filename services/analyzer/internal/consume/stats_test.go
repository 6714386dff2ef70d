package consume

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/envelope"
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
		s.processed(ctx, fmt.Sprintf("t-%d", i), []levelCount{{"info", 1}}, 1, time.Millisecond, time.Millisecond)
	}
	s.processed(ctx, "t-0", []levelCount{{"info", 1}}, 1, time.Millisecond, time.Millisecond)
	s.processed(ctx, "t-99", []levelCount{{"info", 1}}, 1, time.Millisecond, time.Millisecond)

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

// Levels are chosen by clients too: 2,000 invented levels make at most
// the known levels plus maxExtraLevels series and "_other" (before, a
// series each), and /stats folds them the same way.
func TestLevelSeriesAreBounded(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	s, err := NewStats("analyzer-1", sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("t"))
	require.NoError(t, err)
	ctx := context.Background()
	for i := range 2000 {
		s.processed(ctx, "t", []levelCount{{fmt.Sprintf("junk-%d", i), 1}, {"error", 1}}, 2, time.Millisecond, time.Millisecond)
	}
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	byLevel := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "analyzer_messages_processed" {
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					v, _ := dp.Attributes.Value("level")
					byLevel[v.AsString()] = dp.Value
				}
			}
		}
	}
	require.Len(t, byLevel, 1+maxExtraLevels+1, "error, 10 junk levels, _other")
	require.Equal(t, int64(2000), byLevel["error"], "a known level keeps its series whatever came first")
	require.Equal(t, int64(2000-maxExtraLevels), byLevel["_other"])
	snap := s.Snapshot()
	require.Equal(t, byLevel, snap.MessagesByLevel)
	require.True(t, snap.LevelsTruncated)
	require.False(t, snap.TenantsTruncated)
}

// 50,000 tenants made a 4.7 MB /stats; now the first 1,000 are listed and
// the rest counted as "_other", with nothing lost from the totals.
func TestStatsListAtMostMaxStatsTenants(t *testing.T) {
	s, err := NewStats("analyzer-1", sdkmetric.NewMeterProvider().Meter("t"))
	require.NoError(t, err)
	ctx := context.Background()
	for i := range 50_000 {
		s.processed(ctx, fmt.Sprintf("tenant-%05d", i), []levelCount{{"info", 1}}, 1, time.Millisecond, time.Millisecond)
	}
	snap := s.Snapshot()
	require.Len(t, snap.MessagesByTenant, maxStatsTenants+1)
	require.Equal(t, int64(50_000-maxStatsTenants), snap.MessagesByTenant["_other"])
	require.Equal(t, int64(1), snap.MessagesByTenant["tenant-00000"])
	require.True(t, snap.TenantsTruncated)
	var sum int64
	for _, n := range snap.MessagesByTenant {
		sum += n
	}
	require.Equal(t, snap.MessagesProc, sum)
	b, err := json.Marshal(snap)
	require.NoError(t, err)
	require.Less(t, len(b), 64<<10, "the /stats answer stays small")
}

func TestCountLevelsCountsEachLevelOnceInTheOrderSeen(t *testing.T) {
	msgs := []envelope.SummaryMessage{{Level: "info"}, {Level: "error"}, {Level: "info"}, {Level: ""}, {Level: "info"}}
	require.Equal(t, []levelCount{{"info", 3}, {"error", 1}, {"", 1}}, countLevels(nil, msgs))
	require.Empty(t, countLevels(nil, nil))
}
