// Package produce writes packets to Kafka synchronously: per-partition
// batches written with kafka-go's Client and Transport (rebuilt safely on
// reload; gather.go), error classification, selective retry
// within the request deadline, and a Kafka circuit breaker so that clients
// get a fast 503 instead of a timeout while Kafka is down.
package produce

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/dsplab/dsplab/distributor/internal/breaker"
	"github.com/dsplab/dsplab/distributor/internal/config"
	"github.com/dsplab/dsplab/internal/envelope"
)

// ErrBreakerOpen is returned without contacting Kafka while the Kafka
// breaker is open.
var ErrBreakerOpen = errors.New("kafka circuit breaker open")

// Error is a classified write error.
type Error struct {
	Type string
	Err  error
}

func (e *Error) Error() string { return "kafka write (" + e.Type + "): " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Observer receives the outcome of every write attempt (errType "" on
// success) and the size of every produce call; the distributor's metrics
// implement it.
type Observer interface {
	KafkaWrite(ctx context.Context, d time.Duration, errType string)
	// KafkaBatch is called once per produce call of a topic with the
	// records it carried: they grow when the broker slows (gather.go).
	KafkaBatch(topic string, records int)
}

// Producer is safe for concurrent use.
type Producer struct {
	cur         atomic.Pointer[writerHandle]
	brk         *breaker.Breaker
	consecutive atomic.Int64
	obs         Observer
	tracer      trace.Tracer
	prop        propagation.TextMapPropagator
	log         *slog.Logger
	reqTimeout  atomic.Int64 // time.Duration
}

// writerHandle lets a writer be replaced without failing in-flight writes:
// writers hold the read lock while they use it; the retiring side takes the
// write lock (waiting for them) before closing its connections.
type writerHandle struct {
	mu        sync.RWMutex
	closed    bool
	transport *kafka.Transport
	g         *gatherer
	cfg       config.Kafka
}

func newHandle(cfg config.Kafka, obs Observer) *writerHandle {
	t := transport(cfg)
	return &writerHandle{transport: t, g: newGatherer(newClient(cfg, t), requiredAcks(cfg), cfg.BatchTimeout, cfg.BatchSize, obs), cfg: cfg}
}

// close closes the handle's connections; the caller holds the write lock.
func (h *writerHandle) close() {
	h.closed = true
	h.transport.CloseIdleConnections()
}

// Options are the producer's collaborators.
type Options struct {
	Observer       Observer
	TracerProvider trace.TracerProvider
	Logger         *slog.Logger
	// OnBreakerChange is called on Kafka breaker transitions.
	OnBreakerChange func(from, to breaker.State)
}

// New builds a producer for cfg. It does not contact Kafka.
func New(cfg config.Kafka, o Options) *Producer {
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	p := &Producer{
		obs: o.Observer, log: o.Logger,
		tracer: o.TracerProvider.Tracer("github.com/dsplab/dsplab/distributor/produce"),
		prop:   otel.GetTextMapPropagator(),
	}
	p.brk = breaker.New(breakerConfig(cfg.Breaker), func(from, to breaker.State) {
		p.log.Warn("kafka breaker", "from", from.String(), "to", to.String())
		if o.OnBreakerChange != nil {
			o.OnBreakerChange(from, to)
		}
	})
	p.reqTimeout.Store(int64(cfg.RequestTimeout))
	p.cur.Store(newHandle(cfg, p.obs))
	return p
}

func breakerConfig(b config.Breaker) breaker.Config {
	return breaker.Config{FailureThreshold: b.Failures, BaseBackoff: b.BaseBackoff, MaxBackoff: b.MaxBackoff, StableAfter: b.StableAfter}
}

// newClient is the client the gatherer produces with. One attempt per
// request: retries are ours (selective, within the request deadline).
// WriteTimeout bounds each request, as the Writer's did.
func newClient(cfg config.Kafka, t *kafka.Transport) *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: t, Timeout: cfg.WriteTimeout}
}

func requiredAcks(cfg config.Kafka) kafka.RequiredAcks {
	if cfg.Acks == "all" {
		return kafka.RequireAll
	}
	return kafka.RequireOne
}

// Reconfigure applies a new Kafka config. The writer is rebuilt only when
// its fields changed; writes in flight on the old writer finish on it.
func (p *Producer) Reconfigure(cfg config.Kafka) {
	p.brk.SetConfig(breakerConfig(cfg.Breaker))
	p.reqTimeout.Store(int64(cfg.RequestTimeout))
	old := p.cur.Load()
	if !config.KafkaWriterChanged(old.cfg, cfg) {
		old.cfg = cfg // layout fields only; read by nobody concurrently that matters
		return
	}
	p.cur.Store(newHandle(cfg, p.obs))
	p.log.Info("kafka writer rebuilt", "brokers", cfg.Brokers, "acks", cfg.Acks)
	go retire(old, p.log)
}

func retire(h *writerHandle, log *slog.Logger) {
	h.mu.Lock() // waits for in-flight writes on this writer
	h.close()
	h.mu.Unlock()
	log.Debug("old kafka writer closed")
}

// acquire returns the current writer, read-locked.
func (p *Producer) acquire() *writerHandle {
	for {
		h := p.cur.Load()
		h.mu.RLock()
		if !h.closed {
			return h
		}
		h.mu.RUnlock() // swapped and retired between Load and RLock
	}
}

// ConsecutiveErrors is the number of Kafka faults since the last success.
func (p *Producer) ConsecutiveErrors() int64 { return p.consecutive.Load() }

// BreakerState is the Kafka breaker's state.
func (p *Producer) BreakerState() breaker.State { return p.brk.State() }

// Record is one Kafka record to write.
type Record struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers []kafka.Header
}

// Produce writes r and waits for the broker's acknowledgement. It retries
// timeouts and leadership changes until the request deadline; other
// errors are returned at once as *Error. While the Kafka breaker is open it
// returns ErrBreakerOpen without contacting Kafka.
func (p *Producer) Produce(ctx context.Context, r Record) error {
	if !p.brk.Allow() {
		return ErrBreakerOpen
	}
	// The write must not depend on the client staying connected: a client
	// that hangs up mid-write would otherwise cancel it, leave it unknown
	// whether the record landed, and count as a Kafka fault (opening the
	// breaker for everyone). It is bounded by the request timeout instead.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(p.reqTimeout.Load()))
	defer cancel()
	ctx, span := p.tracer.Start(ctx, "kafka.produce "+r.Topic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", r.Topic),
			attribute.String("messaging.operation.type", "send"), attribute.Int("messaging.message.body.size", len(r.Value))))
	defer span.End()
	p.prop.Inject(ctx, envelope.HeaderCarrier(&r.Headers))
	msg := kafka.Message{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers}

	var errType string
	var err error
	for attempt := 1; ; attempt++ {
		err, errType = p.attempt(ctx, msg)
		if err == nil || !retryable(errType) || ctx.Err() != nil {
			break
		}
		span.AddEvent("retry", trace.WithAttributes(attribute.String("error.type", errType), attribute.Int("attempt", attempt)))
		select {
		case <-ctx.Done():
		case <-time.After(min(time.Duration(attempt)*20*time.Millisecond, 200*time.Millisecond)):
		}
	}
	if err == nil {
		p.consecutive.Store(0)
		p.brk.Success()
		return nil
	}
	if kafkaFault(errType) && !errors.Is(err, context.Canceled) {
		p.consecutive.Add(1)
		p.brk.Failure()
	} else {
		p.brk.Success() // Kafka answered; the record was the problem
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, errType)
	return &Error{Type: errType, Err: err}
}

func (p *Producer) attempt(ctx context.Context, msg kafka.Message) (error, string) {
	h := p.acquire()
	defer h.mu.RUnlock()
	start := time.Now()
	err := h.g.write(ctx, msg)
	errType := Classify(err)
	if p.obs != nil {
		p.obs.KafkaWrite(ctx, time.Since(start), errType)
	}
	return err, errType
}

// Close closes the current writer, waiting for in-flight writes.
func (p *Producer) Close() error {
	h := p.cur.Load()
	h.mu.Lock()
	h.close()
	h.mu.Unlock()
	return nil
}
