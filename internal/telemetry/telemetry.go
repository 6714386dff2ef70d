// Package telemetry sets up OpenTelemetry tracing and metrics for a DSP Lab
// binary: tracer and meter providers configured from the standard OTEL_*
// environment variables, OTLP export, W3C TraceContext + Baggage propagation,
// and a Prometheus /metrics handler fed by the same meter provider.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Providers holds what a service needs to emit telemetry. Components receive
// the providers explicitly, so tests can inject their own.
type Providers struct {
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// Registry is the private Prometheus registry behind MetricsHandler.
	Registry *prometheus.Registry
	// MetricsHandler serves the Prometheus text exposition of every
	// instrument created from MeterProvider, plus Go runtime and process
	// collectors.
	MetricsHandler http.Handler
	shutdown       []func(context.Context) error
}

// Setup builds tracer and meter providers for service (overridden by
// OTEL_SERVICE_NAME) and installs them and the propagators as globals.
//
// Export follows the standard variables: OTEL_TRACES_EXPORTER and
// OTEL_METRICS_EXPORTER (otlp, console, none) and OTEL_EXPORTER_OTLP_*.
// When neither an exporter nor an OTLP endpoint is configured, nothing is
// exported over the network (the dev stack stays quiet), but spans are still
// created so logs carry trace ids and context is propagated.
func Setup(ctx context.Context, service, version string) (*Providers, error) {
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service), semconv.ServiceVersion(version)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithContainer(),
		resource.WithProcessPID(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	p := &Providers{Registry: prometheus.NewRegistry()}
	p.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	traceOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if exportConfigured("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("span exporter: %w", err)
		}
		traceOpts = append(traceOpts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(traceOpts...)
	p.shutdown = append(p.shutdown, tp.Shutdown)

	promExp, err := otelprom.New(otelprom.WithRegisterer(p.Registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	meterOpts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExp)}
	if exportConfigured("OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
		reader, err := autoexport.NewMetricReader(ctx)
		if err != nil {
			return nil, fmt.Errorf("metric reader: %w", err)
		}
		meterOpts = append(meterOpts, sdkmetric.WithReader(reader))
	}
	mp := sdkmetric.NewMeterProvider(meterOpts...)
	p.shutdown = append(p.shutdown, mp.Shutdown)

	p.TracerProvider, p.MeterProvider = tp, mp
	p.MetricsHandler = promhttp.HandlerFor(p.Registry, promhttp.HandlerOpts{})
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return p, nil
}

// Opts is one attribute set as the option slices the instruments take,
// built once: a single option passed on its own (Add(ctx, 1, o)) is a new
// slice on the heap at every call, five per request on the distributor's ingest path, eight per
// record in an analyzer.
type Opts struct {
	Add    []metric.AddOption
	Record []metric.RecordOption
}

// NewOpts builds the options of the attribute set of kv.
func NewOpts(kv ...attribute.KeyValue) Opts {
	o := metric.WithAttributeSet(attribute.NewSet(kv...))
	return Opts{Add: []metric.AddOption{o}, Record: []metric.RecordOption{o}}
}

// LatencyBuckets are the histogram boundaries, in seconds, of every DSP
// Lab latency histogram: 0.5 ms to 5 min, so that both a fast request and a
// packet that waited out an analyzer outage land in a real bucket. (The
// OpenTelemetry default buckets are meant for milliseconds.)
var LatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

// Shutdown flushes and stops the providers in reverse order of creation.
func (p *Providers) Shutdown(ctx context.Context) error {
	var errs []error
	for i := len(p.shutdown) - 1; i >= 0; i-- {
		errs = append(errs, p.shutdown[i](ctx))
	}
	return errors.Join(errs...)
}

// exportConfigured reports whether the environment asks for export of one
// signal: an explicit exporter choice or any OTLP endpoint.
func exportConfigured(exporterVar, signalEndpointVar string) bool {
	return os.Getenv(exporterVar) != "" || os.Getenv(signalEndpointVar) != "" ||
		os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
}
