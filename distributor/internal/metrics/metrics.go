// Package metrics declares the distributor's instruments. Their names are
// the ones the dashboards, alerts and README use, as Prometheus shows them
// (the list is test/integration/dashboards_test.go's designMetrics): counters get "_total" and
// histograms in seconds get "_seconds" from the exporter's translation, so
// the instrument names here carry neither.
package metrics

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/dsplab/dsplab/distributor/internal/produce"
	"github.com/dsplab/dsplab/internal/telemetry"
)

// Instruments are the synchronous instruments.
type Instruments struct {
	Requests           metric.Int64Counter
	RequestDuration    metric.Float64Histogram
	RequestBytes       metric.Int64Counter
	Packets            metric.Int64Counter
	Messages           metric.Int64Counter
	RoutedPackets      metric.Int64Counter
	RoutedMessages     metric.Int64Counter
	KafkaWriteDuration metric.Float64Histogram
	KafkaWriteErrors   metric.Int64Counter
	KafkaBatchRecords  metric.Int64Histogram
	RateLimited        metric.Int64Counter
}

// BatchBuckets are the bucket bounds of distributor_kafka_batch_records:
// records per produce call, up to well past kafka.batch_size.
var BatchBuckets = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000}

// New creates the instruments on m.
func New(m metric.Meter) (*Instruments, error) {
	var err error
	i := &Instruments{}
	counter := func(name, desc, unit string) metric.Int64Counter {
		var c metric.Int64Counter
		if err == nil {
			c, err = m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		}
		return c
	}
	hist := func(name, desc string) metric.Float64Histogram {
		var h metric.Float64Histogram
		if err == nil {
			h, err = m.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(telemetry.LatencyBuckets...))
		}
		return h
	}
	i.Requests = counter("distributor_requests", "Requests answered, by endpoint and result (accepted, bad_request, too_large, rate_limited, unavailable, error).", "")
	i.RequestDuration = hist("distributor_request_duration", "Time to answer a request, by endpoint.")
	i.RequestBytes = counter("distributor_request_bytes", "Request body bytes received, by endpoint.", "By")
	i.Packets = counter("distributor_packets", "Packets accepted (in Kafka).", "")
	i.Messages = counter("distributor_messages", "Messages accepted (in Kafka).", "")
	i.RoutedPackets = counter("distributor_routed_packets", "Packets written to an analyzer's topic, by analyzer.", "")
	i.RoutedMessages = counter("distributor_routed_messages", "Messages written to an analyzer's topic, by analyzer.", "")
	i.KafkaWriteDuration = hist("distributor_kafka_write_duration", "Time of one Kafka write attempt, acknowledgement included.")
	i.KafkaWriteErrors = counter("distributor_kafka_write_errors", "Failed Kafka write attempts, by error_type.", "")
	if err == nil {
		i.KafkaBatchRecords, err = m.Int64Histogram("distributor_kafka_batch_records",
			metric.WithDescription("Records per Kafka produce call, by topic: they grow while the broker is slow, since the records that arrive during one call go out in the next."),
			metric.WithExplicitBucketBoundaries(BatchBuckets...))
	}
	i.RateLimited = counter("distributor_rate_limited", "Requests refused by a rate limit, by scope (global, tenant).", "")
	if err != nil {
		return nil, err
	}
	// Create the labelled series at zero, so that rates and alerts work
	// from the first scrape and a dashboard shows 0 rather than no data.
	ctx := context.Background()
	for _, t := range produce.ErrorTypes {
		i.KafkaWriteErrors.Add(ctx, 0, metric.WithAttributes(attribute.String("error_type", t)))
	}
	for _, s := range []string{"global", "tenant"} {
		i.RateLimited.Add(ctx, 0, metric.WithAttributes(attribute.String("scope", s)))
	}
	return i, nil
}

// KafkaWrite records one write attempt (produce.Observer).
func (i *Instruments) KafkaWrite(ctx context.Context, d time.Duration, errType string) {
	i.KafkaWriteDuration.Record(ctx, d.Seconds())
	if errType != "" {
		i.KafkaWriteErrors.Add(ctx, 1, metric.WithAttributes(attribute.String("error_type", errType)))
	}
}

// KafkaBatch records the size of one produce call (produce.Observer).
func (i *Instruments) KafkaBatch(topic string, records int) {
	i.KafkaBatchRecords.Record(context.Background(), int64(records), metric.WithAttributes(attribute.String("topic", topic)))
}

// AnalyzerGauge is one analyzer's gauges.
type AnalyzerGauge struct {
	ID           string
	Up           bool
	BreakerState int
	Weight       float64 // effective routed weight
	QueueDepth   int64
	// BreakerTransitions counts breaker state changes by the state changed
	// to, indexed by BreakerState (0 closed, 1 half-open, 2 open).
	BreakerTransitions [3]int64
	// UpTransitions counts changes of Up: [0] to down, [1] to up.
	UpTransitions [2]int64
}

// breakerStates and upStates are the "to" labels of the transition
// counters, in the order of AnalyzerGauge's arrays.
var (
	breakerStates = [3]string{"closed", "half_open", "open"}
	upStates      = [2]string{"down", "up"}
)

// State is read by the observable gauges at each collection.
type State interface {
	AnalyzerGauges() []AnalyzerGauge
	KafkaConsecutiveErrors() int64
	HealthUp() bool
	SLASuccessRatio() float64
	ConfigReloadOK() bool
	ConnectionsShed() int64
}

// RegisterGauges registers the observable gauges reading s.
func RegisterGauges(m metric.Meter, s State, version, goVersion string) error {
	g := func(name, desc string) metric.Float64ObservableGauge {
		o, _ := m.Float64ObservableGauge(name, metric.WithDescription(desc))
		return o
	}
	up := g("distributor_analyzer_up", "1 when the analyzer passes health checks (breaker closed).")
	healthy := g("distributor_healthy_analyzers", "Analyzers up.")
	total := g("distributor_analyzers", "Analyzers configured.")
	brk := g("distributor_analyzer_breaker_state", "Analyzer circuit breaker: 0 closed, 1 half-open, 2 open.")
	weight := g("distributor_analyzer_weight", "Effective routing weight (0 when down or drained; reduced under lag).")
	depth := g("distributor_queue_depth", "Consumer lag of the analyzer's topic, in records (packets).")
	consec := g("distributor_kafka_consecutive_errors", "Kafka write faults since the last success.")
	healthUp := g("distributor_health_up", "1 while the distributor's error rate and Kafka errors are under their thresholds.")
	slaRatio := g("distributor_sla_success_ratio", "Share of requests without a server fault over the SLA window.")
	reload := g("distributor_config_last_reload_successful", "1 when the last configuration (re)load succeeded.")
	build := g("distributor_build_info", "Build information; always 1.")
	shed, _ := m.Int64ObservableCounter("distributor_connections_shed",
		metric.WithDescription("Connections answered 503 at once because limits.max_connections were open."))
	// Counters, not only gauges: a breaker open for a second, or an
	// analyzer down for two, falls between two exports and scrapes; its
	// count does not (increase() over any window sees it).
	brkChanges, _ := m.Int64ObservableCounter("distributor_analyzer_breaker_transitions",
		metric.WithDescription("Analyzer circuit breaker state changes, by the state changed to (to: open, half_open, closed)."))
	upChanges, _ := m.Int64ObservableCounter("distributor_analyzer_up_transitions",
		metric.WithDescription("Changes of distributor_analyzer_up, by the state changed to (to: down, up)."))
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		as := s.AnalyzerGauges()
		n := 0
		for _, a := range as {
			attr := metric.WithAttributes(attribute.String("analyzer", a.ID))
			o.ObserveFloat64(up, b2f(a.Up), attr)
			o.ObserveFloat64(brk, float64(a.BreakerState), attr)
			o.ObserveFloat64(weight, a.Weight, attr)
			o.ObserveFloat64(depth, float64(a.QueueDepth), attr)
			for st, n := range a.BreakerTransitions {
				o.ObserveInt64(brkChanges, n, metric.WithAttributes(attribute.String("analyzer", a.ID), attribute.String("to", breakerStates[st])))
			}
			for st, n := range a.UpTransitions {
				o.ObserveInt64(upChanges, n, metric.WithAttributes(attribute.String("analyzer", a.ID), attribute.String("to", upStates[st])))
			}
			if a.Up {
				n++
			}
		}
		o.ObserveFloat64(healthy, float64(n))
		o.ObserveFloat64(total, float64(len(as)))
		o.ObserveFloat64(consec, float64(s.KafkaConsecutiveErrors()))
		o.ObserveFloat64(healthUp, b2f(s.HealthUp()))
		o.ObserveFloat64(slaRatio, s.SLASuccessRatio())
		o.ObserveFloat64(reload, b2f(s.ConfigReloadOK()))
		o.ObserveFloat64(build, 1, metric.WithAttributes(attribute.String("version", version), attribute.String("goversion", goVersion)))
		o.ObserveInt64(shed, s.ConnectionsShed())
		return nil
	}, up, healthy, total, brk, weight, depth, consec, healthUp, slaRatio, reload, build, shed, brkChanges, upChanges)
	return err
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
