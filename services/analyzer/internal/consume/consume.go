// Package consume is the analyzer's consumer: it reads its topic with its
// own consumer group, processes each packet (counts by level and tenant),
// de-duplicates by packet id over a bounded window, and commits offsets only
// after processing (at-least-once delivery, exactly-once counting within
// the window). It continues the trace carried in the record headers.
package consume

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/dsplab/dsplab/internal/envelope"
)

// Config is the consumer's configuration.
type Config struct {
	ID, Topic, Group string
	Brokers          []string
	// ProcessingDelay is spent on every packet: the "slow analyzer" knob.
	ProcessingDelay time.Duration
	// MaxMessagesPerSec caps processing speed (0: no cap).
	MaxMessagesPerSec float64
	DedupWindow       int
	// SessionTimeout bounds how long a killed analyzer's old group member
	// blocks its restarted self (kafka-go's default is 30s).
	SessionTimeout time.Duration
}

// Consumer is one analyzer's consume loop.
type Consumer struct {
	cfg     Config
	stats   *Stats
	dedup   *Dedup
	tracer  trace.Tracer
	log     *slog.Logger
	running atomic.Bool
	budget  float64 // message tokens for MaxMessagesPerSec
	last    time.Time
}

// New returns a consumer; it connects in Run.
func New(cfg Config, stats *Stats, tp trace.TracerProvider, log *slog.Logger) *Consumer {
	return &Consumer{cfg: cfg, stats: stats, dedup: NewDedup(cfg.DedupWindow), log: log,
		tracer: tp.Tracer("github.com/dsplab/dsplab/services/analyzer/consume")}
}

// Running reports whether the consume loop is alive.
func (c *Consumer) Running() bool { return c.running.Load() }

// Run consumes until ctx ends. Offsets of processed records are committed
// every 200ms and on close.
func (c *Consumer) Run(ctx context.Context) error {
	c.running.Store(true)
	defer c.running.Store(false)
	c.ensureTopic(ctx)
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: c.cfg.Brokers, GroupID: c.cfg.Group, Topic: c.cfg.Topic,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 250 * time.Millisecond,
		CommitInterval: 200 * time.Millisecond, StartOffset: kafka.FirstOffset,
		HeartbeatInterval: time.Second, SessionTimeout: c.cfg.SessionTimeout,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) { c.log.Debug("kafka reader", "msg", msg) }),
	})
	defer func() {
		if err := r.Close(); err != nil { // leaves the group and flushes commits
			c.log.Warn("close reader", "err", err)
		}
	}()
	c.log.Info("consuming", "topic", c.cfg.Topic, "group", c.cfg.Group, "brokers", c.cfg.Brokers)
	for {
		m, err := r.FetchMessage(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			c.stats.setError(err)
			c.log.Warn("fetch", "err", err)
			sleep(ctx, 500*time.Millisecond)
			continue
		}
		c.process(ctx, m)
		if err := r.CommitMessages(ctx, m); err != nil && ctx.Err() == nil {
			c.stats.setError(err)
			c.log.Warn("commit", "err", err)
		}
	}
}

func (c *Consumer) ensureTopic(ctx context.Context) {
	cl := &kafka.Client{Addr: kafka.TCP(c.cfg.Brokers...), Timeout: 5 * time.Second}
	for ctx.Err() == nil {
		resp, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: c.cfg.Topic, NumPartitions: 1, ReplicationFactor: 1}}})
		if err == nil {
			if e := resp.Errors[c.cfg.Topic]; e == nil || errors.Is(e, kafka.TopicAlreadyExists) {
				return
			}
			err = resp.Errors[c.cfg.Topic]
		}
		c.stats.setError(err)
		c.log.Warn("ensure topic; retrying", "topic", c.cfg.Topic, "err", err)
		sleep(ctx, 2*time.Second)
	}
}

func (c *Consumer) process(ctx context.Context, m kafka.Message) {
	start := time.Now()
	ctx = otel.GetTextMapPropagator().Extract(ctx, envelope.HeaderCarrier(&m.Headers))
	ctx, span := c.tracer.Start(ctx, "process "+c.cfg.Topic, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", m.Topic),
			attribute.String("messaging.operation.type", "process"), attribute.Int64("messaging.kafka.offset", m.Offset),
			attribute.String("dsplab.analyzer", c.cfg.ID)))
	defer span.End()
	c.stats.setLag(max(m.HighWaterMark-m.Offset-1, 0))
	env, err := envelope.UnmarshalSummary(m.Value)
	if err != nil {
		// A record no analyzer can read: count it, log it and move on
		// rather than block the partition forever.
		span.SetStatus(codes.Error, "bad envelope")
		c.stats.unreadable(ctx)
		c.log.ErrorContext(ctx, "skip unreadable record", "offset", m.Offset, "err", err)
		return
	}
	span.SetAttributes(attribute.String("dsplab.packet_id", env.PacketID), attribute.String("dsplab.tenant", env.Tenant))
	if c.dedup.Seen(env.Tenant + "\x00" + env.EmitterID + "\x00" + env.PacketID) {
		span.SetAttributes(attribute.Bool("dsplab.duplicate", true))
		c.stats.duplicate(ctx)
		return
	}
	levels := map[string]int64{}
	for _, msg := range env.Messages {
		levels[msg.Level]++
	}
	if c.cfg.ProcessingDelay > 0 {
		sleep(ctx, c.cfg.ProcessingDelay)
	}
	c.throttle(ctx, len(env.Messages))
	c.stats.processed(ctx, env.Tenant, levels, len(env.Messages), time.Since(start), time.Since(env.ReceivedAt))
	c.stats.setError(nil)
}

// throttle waits until n messages fit under MaxMessagesPerSec.
func (c *Consumer) throttle(ctx context.Context, n int) {
	rate := c.cfg.MaxMessagesPerSec
	if rate <= 0 {
		return
	}
	now := time.Now()
	if !c.last.IsZero() {
		c.budget = min(c.budget+now.Sub(c.last).Seconds()*rate, rate) // at most 1s of burst
	}
	c.last = now
	c.budget -= float64(n)
	if c.budget < 0 {
		sleep(ctx, time.Duration(-c.budget/rate*float64(time.Second)))
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
