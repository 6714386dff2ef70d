// Package consume is the analyzer's consumer: it reads its topic with its
// own consumer group, processes each packet (counts by level and tenant),
// de-duplicates by packet id over a bounded window, records every
// processing in the ledger topic, and commits offsets as its delivery mode
// says (delivery.go). It continues the trace carried in the record headers.
//
// Records are handled in batches: a fetch goroutine keeps up to maxBatch
// records ready, and the loop takes what is there (at least one). Batches
// are what at-most-once commits before processing, and what the other
// modes flush the ledger and commit after, at most every CommitInterval.
package consume

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
	"go.opentelemetry.io/otel/trace"

	"github.com/dsplab/dsplab/internal/envelope"
	"github.com/dsplab/dsplab/internal/ledger"
)

// maxBatch bounds a batch, and so what at-most-once loses to a crash.
const maxBatch = 256

// The fetch and ledger batching defaults (issue 18; docs/BENCHMARKS.md).
// A fetch is answered as soon as anything is there (min_bytes 1) and
// long-polls 250ms when nothing is: an analyzer processes a packet a few
// milliseconds after the distributor wrote it, and an idle one costs
// nothing. FETCH_MIN_BYTES=16384 FETCH_MAX_WAIT_MS=100 made the pipeline
// about 17% faster at saturation in the bench (fewer, fuller fetches),
// for up to 100ms more from ingest to processing under light traffic.
// The ledger writer gathers 10ms of records into one produce (it was 2ms:
// one produce per few records was most of its cost); nothing waits on it
// but the commit, every COMMIT_INTERVAL_MS.
const (
	DefaultFetchMinBytes      = 1
	DefaultFetchMaxWait       = 250 * time.Millisecond
	DefaultLedgerBatchTimeout = 10 * time.Millisecond
	// MaxFetchBytes is what one fetch may bring at most.
	MaxFetchBytes = 16 << 20
)

// ledgerRetention is the ledger topic's retention.ms when the analyzer
// creates it: a day of a lab's experiments.
const ledgerRetention = "86400000"

// Config is the consumer's configuration.
type Config struct {
	ID, Topic, Group string
	Brokers          []string
	// ProcessingDelay is spent on every packet: the "slow analyzer" knob
	// (at start; SetProcessingDelay changes it).
	ProcessingDelay time.Duration
	// MaxMessagesPerSec caps processing speed (0: no cap).
	MaxMessagesPerSec float64
	DedupWindow       int
	// SessionTimeout bounds how long a killed analyzer's old group member
	// blocks its restarted self (kafka-go's default is 30s).
	SessionTimeout time.Duration
	// LedgerTopic receives a ledger.Record per processed packet; empty:
	// no ledger (and no effectively-once).
	LedgerTopic string
	// Delivery is the mode at start-up.
	Delivery ledger.Mode
	// CommitInterval is how often at-least-once and effectively-once
	// commit (at-most-once commits every batch before processing it).
	CommitInterval time.Duration
	// FetchMinBytes and FetchMaxWait are the fetch requests' min_bytes and
	// max_wait (Kafka's fetch.min.bytes and fetch.max.wait.ms): the broker
	// answers once it holds FetchMinBytes for the analyzer or FetchMaxWait
	// has passed (zero: DefaultFetchMinBytes, DefaultFetchMaxWait).
	FetchMinBytes int
	FetchMaxWait  time.Duration
	// LedgerBatchTimeout is how long the ledger writer gathers records
	// into one produce request (zero: DefaultLedgerBatchTimeout).
	LedgerBatchTimeout time.Duration
	// OnModeChange, when set, is called after every switch of the mode at
	// run time (the analyzer keeps it in its state file).
	OnModeChange func(ledger.Mode) error
}

// Consumer is one analyzer's consume loop.
type Consumer struct {
	cfg    Config
	stats  *Stats
	tracer trace.Tracer
	log    *slog.Logger
	// spanName is every processing span's name: "process <topic>".
	spanName string

	running atomic.Bool
	mode    atomic.Value // ledger.Mode
	delay   atomic.Int64 // the processing delay in force, in nanoseconds

	// held (a one-slot channel, so that a mode switch can give up
	// waiting) while a batch is handled and while the mode switches:
	// everything below is the loop's state.
	held       chan struct{}
	reader     *kafka.Reader // nil until the loop runs
	ledger     *ledgerWriter // nil without a ledger topic
	dedup      *Dedup
	done       map[ledger.Source]struct{} // effectively-once: processed and not yet committed
	pending    map[int]kafka.Message      // per partition: the last record handled, not committed
	lastCommit time.Time
	recs       []ledger.Record // a batch's ledger records (reused)
	budget     float64         // message tokens for MaxMessagesPerSec
	last       time.Time
}

// New returns a consumer; it connects in Run.
func New(cfg Config, stats *Stats, tp trace.TracerProvider, log *slog.Logger) *Consumer {
	if cfg.Delivery == "" {
		cfg.Delivery = ledger.AtLeastOnce
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = 200 * time.Millisecond
	}
	if cfg.FetchMinBytes <= 0 {
		cfg.FetchMinBytes = DefaultFetchMinBytes
	}
	if cfg.FetchMaxWait <= 0 {
		cfg.FetchMaxWait = DefaultFetchMaxWait
	}
	if cfg.LedgerBatchTimeout <= 0 {
		cfg.LedgerBatchTimeout = DefaultLedgerBatchTimeout
	}
	c := &Consumer{cfg: cfg, stats: stats, dedup: NewDedup(cfg.DedupWindow), log: log, pending: map[int]kafka.Message{},
		done: map[ledger.Source]struct{}{}, held: make(chan struct{}, 1),
		tracer: tp.Tracer("github.com/dsplab/dsplab/services/analyzer/consume"), spanName: "process " + cfg.Topic}
	c.mode.Store(cfg.Delivery)
	c.delay.Store(int64(max(cfg.ProcessingDelay, 0)))
	stats.setMode(cfg.Delivery)
	return c
}

// Running reports whether the consume loop is alive.
func (c *Consumer) Running() bool { return c.running.Load() }

func (c *Consumer) lock()   { c.held <- struct{}{} }
func (c *Consumer) unlock() { <-c.held }

// lockCtx takes the lock unless ctx ends first.
func (c *Consumer) lockCtx(ctx context.Context) bool {
	select {
	case c.held <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// ProcessingDelay is the delay spent on every packet now (the "slow
// analyzer" knob: PROCESSING_DELAY_MS at start, PUT /admin/processing at
// run time).
func (c *Consumer) ProcessingDelay() time.Duration { return time.Duration(c.delay.Load()) }

// SetProcessingDelay changes the delay from the next packet on.
func (c *Consumer) SetProcessingDelay(d time.Duration) { c.delay.Store(int64(max(d, 0))) }

// Mode is the delivery mode in force.
func (c *Consumer) Mode() ledger.Mode { return c.mode.Load().(ledger.Mode) }

// Run consumes until ctx ends.
func (c *Consumer) Run(ctx context.Context) error {
	c.running.Store(true)
	defer c.running.Store(false)
	c.ensureTopics(ctx)
	if ctx.Err() != nil {
		return nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: c.cfg.Brokers, GroupID: c.cfg.Group, Topic: c.cfg.Topic,
		MinBytes: c.cfg.FetchMinBytes, MaxBytes: MaxFetchBytes, MaxWait: c.cfg.FetchMaxWait,
		// CommitInterval 0: CommitMessages is synchronous, so a commit
		// has happened when it returns (at-most-once needs that); the
		// loop batches commits itself.
		CommitInterval: 0, StartOffset: kafka.FirstOffset,
		HeartbeatInterval: time.Second, SessionTimeout: c.cfg.SessionTimeout,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) { c.log.Debug("kafka reader", "msg", msg) }),
	})
	c.lock()
	c.reader = r
	if c.cfg.LedgerTopic != "" {
		c.ledger = newLedgerWriter(c.cfg.Brokers, c.cfg.LedgerTopic, c.cfg.LedgerBatchTimeout, c.stats, c.log)
		c.ledger.ensure = c.ensureTopics
	}
	c.unlock()
	if c.Mode() == ledger.EffectivelyOnce {
		c.rebuildUntilDone(ctx)
	}
	c.log.Info("consuming", "topic", c.cfg.Topic, "group", c.cfg.Group, "brokers", c.cfg.Brokers, "delivery", c.Mode(), "ledger", c.cfg.LedgerTopic)

	fetched := make(chan kafka.Message, maxBatch)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.fetch(ctx, r, fetched) }()
	tick := time.NewTicker(c.cfg.CommitInterval)
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case m := <-fetched:
			batch := []kafka.Message{m}
			for len(batch) < maxBatch && len(fetched) > 0 {
				batch = append(batch, <-fetched)
			}
			c.handle(ctx, batch)
		case <-tick.C:
			c.lock()
			c.commitPending(ctx)
			c.unlock()
		case <-ctx.Done():
		}
	}
	wg.Wait()
	// Graceful stop: what was processed is recorded and committed, on a
	// detached, bounded context (a SIGTERM loses nothing in any mode).
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	c.lock()
	c.commitPending(sctx)
	c.reader = nil
	if c.ledger != nil {
		if err := c.ledger.close(); err != nil {
			c.log.Warn("close ledger writer", "err", err)
		}
		c.ledger = nil
	}
	c.unlock()
	if err := r.Close(); err != nil { // leaves the group
		c.log.Warn("close reader", "err", err)
	}
	return nil
}

// fetch keeps the loop's channel filled until ctx ends.
func (c *Consumer) fetch(ctx context.Context, r *kafka.Reader, out chan<- kafka.Message) {
	for {
		m, err := r.FetchMessage(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.stats.setError(err)
			c.log.Warn("fetch", "err", err)
			sleep(ctx, 500*time.Millisecond)
			continue
		}
		select {
		case out <- m:
		case <-ctx.Done():
			return
		}
	}
}

func (c *Consumer) ensureTopics(ctx context.Context) {
	topics := []kafka.TopicConfig{{Topic: c.cfg.Topic, NumPartitions: 1, ReplicationFactor: 1}}
	if c.cfg.LedgerTopic != "" {
		topics = append(topics, kafka.TopicConfig{Topic: c.cfg.LedgerTopic, NumPartitions: 1, ReplicationFactor: 1,
			ConfigEntries: []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: ledgerRetention}}})
	}
	cl := &kafka.Client{Addr: kafka.TCP(c.cfg.Brokers...), Timeout: 5 * time.Second}
	for ctx.Err() == nil {
		resp, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: topics})
		if err == nil {
			for _, t := range topics {
				if e := resp.Errors[t.Topic]; e != nil && !errors.Is(e, kafka.TopicAlreadyExists) {
					err = errors.Join(err, e)
				}
			}
			if err == nil {
				return
			}
		}
		c.stats.setError(err)
		c.log.Warn("ensure topics; retrying", "topics", topics, "err", err)
		sleep(ctx, 2*time.Second)
	}
}

// process handles one record: it returns the ledger record of its
// processing, or false when it was not processed (unreadable, or a
// duplicate within the de-duplication window).
func (c *Consumer) process(ctx context.Context, m kafka.Message, mode ledger.Mode) (ledger.Record, bool) {
	start := time.Now()
	ctx = otel.GetTextMapPropagator().Extract(ctx, envelope.HeaderCarrier(&m.Headers))
	ctx, span := c.tracer.Start(ctx, c.spanName, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", m.Topic),
			attribute.String("messaging.operation.type", "process"), attribute.Int64("messaging.kafka.offset", m.Offset),
			attribute.String("dsplab.analyzer", c.cfg.ID), attribute.String("dsplab.delivery", string(mode))))
	defer span.End()
	c.stats.setLag(max(m.HighWaterMark-m.Offset-1, 0))
	env, err := envelope.UnmarshalSummary(m.Value)
	if err != nil {
		// A record no analyzer can read: count it, log it and move on
		// rather than block the partition forever.
		span.SetStatus(codes.Error, "bad envelope")
		c.stats.unreadable(ctx)
		c.log.ErrorContext(ctx, "skip unreadable record", "offset", m.Offset, "err", err)
		return ledger.Record{}, false
	}
	span.SetAttributes(attribute.String("dsplab.packet_id", env.PacketID), attribute.String("dsplab.tenant", env.Tenant))
	if c.dedup.Seen(dedupKey(env.Tenant, env.EmitterID, env.PacketID)) {
		span.SetAttributes(attribute.Bool("dsplab.duplicate", true))
		c.stats.duplicate(ctx)
		return ledger.Record{}, false
	}
	levels := countLevels(make([]levelCount, 0, 8), env.Messages) // a handful: stays on the stack
	if d := c.ProcessingDelay(); d > 0 {
		sleep(ctx, d)
	}
	c.throttle(ctx, len(env.Messages))
	c.stats.processed(ctx, env.Tenant, levels, len(env.Messages), time.Since(start), time.Since(env.ReceivedAt))
	c.stats.setError(nil)
	return ledger.Record{PacketID: env.PacketID, EmitterID: env.EmitterID, Tenant: env.Tenant, Analyzer: c.cfg.ID,
		Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, ProcessedAt: time.Now(), Delivery: mode, Messages: len(env.Messages)}, true
}

// levelCount is how many messages of a packet have one level.
type levelCount struct {
	level string
	n     int64
}

// countLevels appends to dst the count of each level of msgs, in the order
// first seen.
func countLevels(dst []levelCount, msgs []envelope.SummaryMessage) []levelCount {
next:
	for _, m := range msgs {
		for i := range dst {
			if dst[i].level == m.Level {
				dst[i].n++
				continue next
			}
		}
		dst = append(dst, levelCount{m.Level, 1})
	}
	return dst
}

func dedupKey(tenant, emitter, packet string) string {
	return tenant + "\x00" + emitter + "\x00" + packet
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
