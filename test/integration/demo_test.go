package integration

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/dsplab/dsplab/internal/devstack"
	"github.com/dsplab/dsplab/internal/telemetry"
	"github.com/dsplab/dsplab/services/demosvc"
)

// service-a and service-b ship their request logs to the real distributor
// (Loki protobuf+snappy), and the analyzers process them under the tenant.
func TestDemoServicesLogsReachTheAnalyzers(t *testing.T) {
	s := devstack.Start(t, bins, devstack.Options{})
	tel := &telemetry.Providers{TracerProvider: sdktrace.NewTracerProvider(), MeterProvider: sdkmetric.NewMeterProvider(), MetricsHandler: http.NotFoundHandler()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run := func(cfg demosvc.Config) *demosvc.App {
		cfg.LokiURL, cfg.Tenant = s.Distributor.URL()+"/loki/api/v1/push", "demo"
		a, err := demosvc.New(cfg, "127.0.0.1:0", tel, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		go a.Run(ctx)
		return a
	}
	b := run(demosvc.Config{Name: "service-b", Route: "/api/message-b"})
	a := run(demosvc.Config{Name: "service-a", Route: "/api/message-a", Downstream: "http://" + b.Addr()})
	for i := 0; i < 10; i++ {
		resp, err := http.Post("http://"+a.Addr()+"/api/message-a", "application/json", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
	}
	devstack.Eventually(t, 20*time.Second, func() bool {
		var n int64
		for _, st := range analyzerStats(t, s) {
			n += st.MessagesByTenant["demo"]
		}
		return n == 20 // 10 request lines from each service
	}, "demo logs did not reach the analyzers: %v", lazy(func() any { return analyzerStats(t, s) }))
}
