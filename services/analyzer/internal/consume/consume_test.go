package consume

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/dsplab/dsplab/internal/envelope"
)

func TestDedupForgetsTheOldestKeysFirst(t *testing.T) {
	d := NewDedup(3)
	for _, k := range []string{"a", "b", "c"} {
		require.False(t, d.Seen(k))
	}
	require.True(t, d.Seen("a"))
	require.False(t, d.Seen("d")) // evicts a
	require.False(t, d.Seen("a"), "a was evicted")
	require.Equal(t, 3, d.Len())
}

// The consumer runs against kfake, a real Kafka-protocol broker.
func TestConsumerProcessesDeduplicatesAndContinuesTheTrace(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	defer c.Close()
	brokers := c.ListenAddrs()

	otel.SetTextMapPropagator(propagation.TraceContext{})
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	stats, err := NewStats("a1", sdkmetric.NewMeterProvider().Meter("t"))
	require.NoError(t, err)
	cons := New(Config{ID: "a1", Topic: "logs.a1", Group: "a1", Brokers: brokers, DedupWindow: 100, SessionTimeout: 6 * time.Second},
		stats, tp, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- cons.Run(ctx) }()

	// The producer side, as the distributor writes: a span's context in
	// the headers.
	parent, span := tp.Tracer("test").Start(context.Background(), "distributor produce")
	span.End()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), BatchTimeout: time.Millisecond, AllowAutoTopicCreation: true}
	defer w.Close()
	record := func(packetID string, levels ...string) kafka.Message {
		env := envelope.Envelope{Tenant: "t1", PacketID: packetID, EmitterID: "e1", ReceivedAt: time.Now(), Source: "ingest"}
		for _, l := range levels {
			env.Messages = append(env.Messages, envelope.Message{Level: l, Message: "m"})
		}
		b, _ := json.Marshal(env)
		m := kafka.Message{Topic: "logs.a1", Value: b}
		otel.GetTextMapPropagator().Inject(parent, envelope.HeaderCarrier(&m.Headers))
		return m
	}
	require.Eventually(t, func() bool {
		return w.WriteMessages(t.Context(), record("1", "info", "error"), kafka.Message{Topic: "logs.a1", Value: []byte("not json")},
			record("2", "info"), record("1", "info", "error")) == nil
	}, 10*time.Second, 100*time.Millisecond)

	require.Eventually(t, func() bool {
		s := stats.Snapshot()
		return s.PacketsProcessed == 2 && s.DuplicatePackets == 1
	}, 20*time.Second, 50*time.Millisecond)
	s := stats.Snapshot()
	require.EqualValues(t, 3, s.MessagesProc)
	require.Equal(t, map[string]int64{"info": 2, "error": 1}, s.MessagesByLevel)
	require.Equal(t, map[string]int64{"t1": 3}, s.MessagesByTenant)
	require.EqualValues(t, 1, s.UnreadableRecords, `the "not json" record`)

	var processSpans []sdktrace.ReadOnlySpan
	for _, sp := range spans.Ended() {
		if sp.SpanKind() == trace.SpanKindConsumer {
			processSpans = append(processSpans, sp)
		}
	}
	require.NotEmpty(t, processSpans)
	for _, sp := range processSpans {
		if sp.Parent().IsValid() {
			require.Equal(t, span.SpanContext().TraceID(), sp.SpanContext().TraceID(), "the analyzer continues the distributor's trace")
		}
	}
	cancel()
	require.NoError(t, <-done)
	require.False(t, cons.Running())
}

// Garbage produced into an analyzer's topic (as kcat would) is skipped,
// so the partition moves on, and counted in /stats and the metric.
func TestUnreadableRecordsAreSkippedAndCounted(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	defer c.Close()
	brokers := c.ListenAddrs()
	reader := sdkmetric.NewManualReader()
	stats, err := NewStats("a1", sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("t"))
	require.NoError(t, err)
	require.EqualValues(t, 0, unreadableMetric(t, reader), "the series exists from the start")
	cons := New(Config{ID: "a1", Topic: "logs.a1", Group: "a1", Brokers: brokers, DedupWindow: 100, SessionTimeout: 6 * time.Second},
		stats, sdktrace.NewTracerProvider(), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- cons.Run(ctx) }()

	good, err := json.Marshal(envelope.Envelope{Tenant: "t1", PacketID: "p1", EmitterID: "e1", ReceivedAt: time.Now(), Source: "ingest",
		Messages: []envelope.Message{{Level: "info", Message: "m"}}})
	require.NoError(t, err)
	garbage := [][]byte{[]byte("hello kcat"), {}, []byte(`{"tenant":"t1"}`), {0xff, 0x00, 0x13}, good[:len(good)/2], []byte(`[1,2]`)}
	var msgs []kafka.Message
	for _, g := range garbage {
		msgs = append(msgs, kafka.Message{Topic: "logs.a1", Value: g})
	}
	msgs = append(msgs, kafka.Message{Topic: "logs.a1", Value: good})
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), BatchTimeout: time.Millisecond, AllowAutoTopicCreation: true}
	defer w.Close()
	require.Eventually(t, func() bool { return w.WriteMessages(t.Context(), msgs...) == nil }, 10*time.Second, 100*time.Millisecond)

	require.Eventually(t, func() bool { return stats.Snapshot().PacketsProcessed == 1 }, 20*time.Second, 50*time.Millisecond,
		"the good record after the garbage is processed")
	require.EqualValues(t, len(garbage), stats.Snapshot().UnreadableRecords)
	require.EqualValues(t, len(garbage), unreadableMetric(t, reader))
	cancel()
	require.NoError(t, <-done)
}

func unreadableMetric(t *testing.T, r sdkmetric.Reader) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "analyzer_unreadable_records" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if v, _ := dp.Attributes.Value("analyzer"); v.AsString() == "a1" {
					return dp.Value
				}
			}
		}
	}
	t.Fatal("no analyzer_unreadable_records{analyzer=a1}")
	return 0
}

func TestThrottleCapsMessagesPerSecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &Consumer{cfg: Config{MaxMessagesPerSec: 1000}}
		start := time.Now()
		for i := 0; i < 30; i++ {
			c.throttle(context.Background(), 100) // 3,000 messages at 1,000/s
		}
		require.Equal(t, 3*time.Second, time.Since(start).Round(100*time.Millisecond))
	})
}
