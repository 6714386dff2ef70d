package consume

import (
	"context"
	"log/slog"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/dsplab/dsplab/internal/envelope"
	"github.com/dsplab/dsplab/internal/ledger"
)

// BenchmarkProcessRecord is the analyzer's own work per record, without
// the broker's round trips: the trace continued from the headers, the
// envelope summary, de-duplication, counting, and the ledger record
// encoded (what process and ledgerWriter.add do for every packet). The
// providers are those of the dev stack (telemetry.Setup with no exporter:
// spans recorded and dropped, metrics collected on scrape); the record is
// what the distributor writes for a seed-format packet of 5 messages
// (levels in lower case, as the distributor writes them).
func BenchmarkProcessRecord(b *testing.B) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	tp := sdktrace.NewTracerProvider()
	stats, err := NewStats("analyzer-1", sdkmetric.NewMeterProvider().Meter("b"))
	if err != nil {
		b.Fatal(err)
	}
	c := New(Config{ID: "analyzer-1", Topic: "logs.analyzer-1", DedupWindow: 1024}, stats, tp, slog.New(slog.DiscardHandler))
	ts := time.Date(2026, 12, 6, 9, 30, 1, 0, time.UTC)
	meta := map[string]any{"service": "log-streamer", "host": "host-3", "version": "1.4.2"}
	env := &envelope.Envelope{Tenant: "team-a", EmitterID: "k6-1", ReceivedAt: ts, Source: envelope.SourceIngest}
	for i, l := range []string{"info", "info", "warn", "error", "debug"} {
		env.Messages = append(env.Messages, envelope.Message{Timestamp: ts.Add(time.Duration(i) * time.Millisecond), Level: l, Message: "user 42 logged in from 10.0.0.7", Metadata: meta})
	}
	parent, span := tp.Tracer("b").Start(context.Background(), "distributor produce")
	span.End()
	var headers []kafka.Header
	otel.GetTextMapPropagator().Inject(parent, envelope.HeaderCarrier(&headers))
	records := make([]kafka.Message, 4096)
	for i := range records {
		env.PacketID = "job-1-" + strconv.Itoa(i)
		v, err := env.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		records[i] = kafka.Message{Topic: "logs.analyzer-1", Offset: int64(i), HighWaterMark: int64(i + 10), Value: v, Headers: headers}
	}
	ctx := context.Background()
	b.ReportAllocs()
	cpu0 := cpuTime()
	i := 0
	for b.Loop() {
		// 4,096 packet ids in turn through a window of 1,024: never a
		// duplicate, and every record evicts one (the steady state).
		m := records[i%len(records)]
		i++
		r, ok := c.process(ctx, m, ledger.AtLeastOnce)
		if !ok {
			b.Fatal("not processed")
		}
		if _, err := ledger.Encode(r); err != nil {
			b.Fatal(err)
		}
	}
	// CPU time, not wall time: on a shared machine ns/op counts the time
	// the benchmark waited for a core; this counts what it used (with
	// the garbage collector's).
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
