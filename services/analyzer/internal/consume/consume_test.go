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
