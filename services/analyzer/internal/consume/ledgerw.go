package consume

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/dsplab/dsplab/internal/ledger"
)

// ledgerWriter produces ledger records asynchronously (kafka-go batches
// them, acks all) and lets the consume loop wait, before it commits an
// offset, until every record it handed over is acknowledged: a record is
// on its way while the next packet is processed, so a crash leaves in the
// ledger what was processed up to a few milliseconds before it.
//
// A record whose write failed is written again by flush, until it is
// acknowledged or flush's context ends: an offset is never committed past
// a processing the ledger does not hold. (A write that failed on the
// client's side but reached the broker is written twice: kafka-go has no
// idempotent producer. README "Delivery semantics".)
type ledgerWriter struct {
	w     *kafka.Writer
	stats *Stats
	log   *slog.Logger

	mu      sync.Mutex
	pending int           // handed to the writer, not yet completed
	idle    chan struct{} // closed while pending == 0
	failed  []kafka.Message
	lastErr error
	// ensure creates the ledger topic if it is missing: a broker that
	// lost its topics (devkafka keeps nothing across a restart, a topic
	// deleted by hand) would otherwise fail every write, and with them
	// every commit, for ever.
	ensure func(ctx context.Context)
}

func newLedgerWriter(brokers []string, topic string, batchTimeout time.Duration, stats *Stats, log *slog.Logger) *ledgerWriter {
	lw := &ledgerWriter{stats: stats, log: log, idle: make(chan struct{})}
	close(lw.idle)
	lw.w = &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		Async: true, BatchTimeout: batchTimeout, BatchSize: 500, MaxAttempts: 3, WriteTimeout: 5 * time.Second,
		Completion: lw.completed}
	return lw
}

// add hands the records to the writer, in one call: kafka-go takes a
// lock and looks the partition up per call, not per message.
func (lw *ledgerWriter) add(ctx context.Context, recs []ledger.Record) {
	msgs := make([]kafka.Message, 0, len(recs))
	for _, r := range recs {
		value, err := ledger.Encode(r)
		if err != nil { // a bug: the consumer builds every field
			lw.log.Error("encode ledger record", "err", err)
			continue
		}
		msgs = append(msgs, kafka.Message{Key: []byte(r.PacketID), Value: value})
	}
	if len(msgs) == 0 {
		return
	}
	lw.mu.Lock()
	if lw.pending == 0 {
		lw.idle = make(chan struct{})
	}
	lw.pending += len(msgs)
	lw.mu.Unlock()
	if err := lw.w.WriteMessages(ctx, msgs...); err != nil { // async: only a failed partition lookup
		lw.completed(msgs, err)
	}
}

// completed is the writer's Completion callback (and add's on an error).
func (lw *ledgerWriter) completed(msgs []kafka.Message, err error) {
	lw.mu.Lock()
	lw.pending -= len(msgs)
	if err != nil {
		lw.failed = append(lw.failed, msgs...)
		lw.lastErr = err
	}
	if lw.pending == 0 {
		close(lw.idle)
	}
	lw.mu.Unlock()
	lw.stats.ledgerWritten(len(msgs), err)
}

// flush waits until every record handed over is acknowledged, writing the
// failed ones again (every 200ms), or until ctx ends.
func (lw *ledgerWriter) flush(ctx context.Context) error {
	for {
		lw.mu.Lock()
		idle := lw.idle
		lw.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
		lw.mu.Lock()
		failed, err := lw.failed, lw.lastErr
		lw.failed = nil
		lw.mu.Unlock()
		if len(failed) == 0 {
			return nil
		}
		lw.log.Warn("ledger write failed; writing again before committing", "records", len(failed), "err", err)
		sleep(ctx, 200*time.Millisecond)
		if lw.ensure != nil {
			lw.ensure(ctx)
		}
		if ctx.Err() != nil {
			lw.mu.Lock()
			lw.failed = append(failed, lw.failed...)
			lw.mu.Unlock()
			return ctx.Err()
		}
		for _, m := range failed {
			lw.mu.Lock()
			if lw.pending == 0 {
				lw.idle = make(chan struct{})
			}
			lw.pending++
			lw.mu.Unlock()
			again := kafka.Message{Key: m.Key, Value: m.Value} // the writer names the topic
			if err := lw.w.WriteMessages(ctx, again); err != nil {
				lw.completed([]kafka.Message{again}, err)
			}
		}
	}
}

func (lw *ledgerWriter) close() error { return lw.w.Close() }
