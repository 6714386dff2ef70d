package consume

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/dsplab/dsplab/internal/ledger"
)

// The three delivery modes differ only in where the offset commit sits
// relative to processing (README "Delivery semantics"):
//
//	at-most-once      commit the batch (synchronously), then process it
//	at-least-once     process, record in the ledger; flush the ledger, then commit
//	effectively-once  as at-least-once, and skip a record whose processing the
//	                  ledger already holds (the processed set, rebuilt from the
//	                  ledger topic at start-up and when the mode is switched on)
//
// Invariant: an offset is committed only after every ledger record of the
// records before it is acknowledged (every mode flushes before it commits),
// and at-most-once never processes a record it has not committed.

// ledgerHold bounds how long a processed record's ledger record waits in
// handle before it is handed to the ledger writer.
const ledgerHold = time.Millisecond

// handle processes one batch under the loop's lock.
func (c *Consumer) handle(ctx context.Context, batch []kafka.Message) {
	c.lock()
	defer c.unlock()
	mode := c.Mode()
	if mode == ledger.AtMostOnce {
		for _, m := range batch {
			c.pending[m.Partition] = m
		}
		if !c.commitPendingUntilDone(ctx) {
			return // stopping: the batch was not committed, so it is not processed
		}
	}
	// The ledger records go to the writer together, at the end of the
	// batch or once the first one has waited ledgerHold: a crash still
	// leaves in the ledger what was processed up to a few milliseconds
	// before it, as when they went one by one. With a processing delay
	// (the slow-analyzer knob) each goes as soon as it is processed.
	recs := c.recs[:0]
	var held time.Time
	hold := ledgerHold
	if c.ProcessingDelay() > 0 {
		hold = 0
	}
	for _, m := range batch {
		src := ledger.Source{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
		if _, ok := c.done[src]; ok && mode == ledger.EffectivelyOnce {
			c.stats.redelivered(ctx) // processed before a crash: the ledger says so
		} else if rec, ok := c.process(ctx, m, mode); ok && c.ledger != nil {
			if len(recs) == 0 {
				held = time.Now()
			}
			if recs = append(recs, rec); time.Since(held) >= hold {
				c.ledger.add(ctx, recs)
				recs = recs[:0]
			}
			if mode == ledger.EffectivelyOnce {
				c.done[src] = struct{}{}
			}
		}
		if mode != ledger.AtMostOnce {
			c.pending[m.Partition] = m
		}
	}
	if len(recs) > 0 {
		c.ledger.add(ctx, recs)
	}
	c.recs = recs[:0]
	if mode != ledger.AtMostOnce && time.Since(c.lastCommit) >= c.cfg.CommitInterval {
		c.commitPending(ctx)
	}
}

// commitPending flushes the ledger and commits the pending offsets; on a
// failure they stay pending for the next try. the lock is held.
func (c *Consumer) commitPending(ctx context.Context) bool {
	if len(c.pending) == 0 {
		return true
	}
	if c.ledger != nil {
		if err := c.ledger.flush(ctx); err != nil {
			c.stats.setError(fmt.Errorf("ledger: %w", err))
			return false
		}
	}
	if c.reader == nil {
		return false
	}
	if err := c.reader.CommitMessages(ctx, slices.Collect(maps.Values(c.pending))...); err != nil {
		c.stats.setError(err)
		c.log.Warn("commit", "err", err)
		return false
	}
	for p, m := range c.pending {
		for src := range c.done { // what is committed is never re-delivered
			if src.Partition == p && src.Offset <= m.Offset {
				delete(c.done, src)
			}
		}
	}
	clear(c.pending)
	c.lastCommit = time.Now()
	return true
}

// commitPendingUntilDone retries the commit every 500ms until it succeeds
// or ctx ends (at-most-once must not process what it has not committed).
func (c *Consumer) commitPendingUntilDone(ctx context.Context) bool {
	for !c.commitPending(ctx) {
		if ctx.Err() != nil {
			clear(c.pending)
			return false
		}
		sleep(ctx, 500*time.Millisecond)
	}
	return true
}

// Switch is the answer to a mode change.
type Switch struct {
	Mode     ledger.Mode `json:"mode"`
	Previous ledger.Mode `json:"previous"`
	// Rebuilt is set when effectively-once was switched on: what the
	// processed set was rebuilt from.
	Rebuilt *Rebuild `json:"rebuilt,omitempty"`
}

// ErrModeNotKept refuses a switch that could not be kept for a restart
// (OnModeChange failed): the mode stays.
var ErrModeNotKept = errors.New("cannot keep the delivery mode for a restart")

// ErrNoLedger refuses effectively-once without a ledger topic.
var ErrNoLedger = errors.New("effectively-once needs the ledger: LEDGER_TOPIC is empty")

// SetMode switches the delivery mode at run time, between two batches:
// what is pending is flushed and committed first, and switching
// effectively-once on rebuilds the processed set from the ledger before the
// next record is processed. A failed rebuild leaves the mode unchanged.
func (c *Consumer) SetMode(ctx context.Context, mode ledger.Mode) (Switch, error) {
	if mode == ledger.EffectivelyOnce && c.cfg.LedgerTopic == "" {
		return Switch{}, ErrNoLedger
	}
	if !c.lockCtx(ctx) {
		return Switch{}, fmt.Errorf("the consumer is still busy with a batch (waiting for Kafka?): %w", ctx.Err())
	}
	defer c.unlock()
	sw := Switch{Mode: mode, Previous: c.Mode()}
	if c.reader != nil && !c.commitPending(ctx) {
		return sw, fmt.Errorf("commit what is pending before switching: %s", c.stats.Snapshot().LastError)
	}
	if mode == ledger.EffectivelyOnce && sw.Previous != ledger.EffectivelyOnce {
		rb, err := c.rebuild(ctx)
		if err != nil {
			return sw, err
		}
		sw.Rebuilt = &rb
	}
	// Kept for a restart first: a switch that would not survive a kill
	// is refused rather than half made.
	if c.cfg.OnModeChange != nil {
		if err := c.cfg.OnModeChange(mode); err != nil {
			return sw, fmt.Errorf("%w: %w", ErrModeNotKept, err)
		}
	}
	c.mode.Store(mode)
	c.stats.setMode(mode)
	if sw.Previous != mode {
		c.log.Info("delivery mode switched", "from", sw.Previous, "to", mode)
	}
	return sw, nil
}

// Rebuild says what the processed set was rebuilt from.
type Rebuild struct {
	At time.Time `json:"at"`
	// LedgerRecords is every record read; Own those of this analyzer and
	// topic; Uncommitted those at or after the group's committed offset
	// (the processed set: re-deliveries to skip); Unreadable those that
	// are no ledger record.
	LedgerRecords int    `json:"ledger_records"`
	Own           int    `json:"own"`
	Uncommitted   int    `json:"uncommitted"`
	Unreadable    int    `json:"unreadable"`
	Took          string `json:"took"`
}

// rebuild reads the ledger topic to its end: this analyzer's records at
// or after its group's committed offsets become the processed set, and
// every one of its packet keys goes through the de-duplication window (in
// ledger order, so the window holds the latest). the lock is held.
func (c *Consumer) rebuild(ctx context.Context) (Rebuild, error) {
	start := time.Now()
	committed, err := c.committed(ctx)
	if err != nil {
		return Rebuild{}, fmt.Errorf("rebuild the processed set: committed offsets: %w", err)
	}
	rb := Rebuild{At: start.UTC()}
	done := map[ledger.Source]struct{}{}
	err = ledger.Read(ctx, c.cfg.Brokers, c.cfg.LedgerTopic, time.Time{}, func(m kafka.Message) error {
		rb.LedgerRecords++
		r, err := ledger.Decode(m.Value)
		if err != nil {
			rb.Unreadable++
			return nil
		}
		if r.Analyzer != c.cfg.ID || r.Topic != c.cfg.Topic {
			return nil
		}
		rb.Own++
		c.dedup.Seen(dedupKey(r.Tenant, r.EmitterID, r.PacketID))
		if next, ok := committed[r.Partition]; ok && r.Offset < next {
			return nil
		}
		done[r.Source()] = struct{}{}
		return nil
	})
	if errors.Is(err, kafka.UnknownTopicOrPartition) {
		// The ledger topic is not there yet (the loop creates it at
		// start, where the broker allows): no processing was recorded,
		// so none can be skipped.
		c.log.Warn("the ledger topic does not exist yet: the processed set is empty", "topic", c.cfg.LedgerTopic)
		err = nil
	}
	if err != nil {
		return Rebuild{}, fmt.Errorf("rebuild the processed set from %s: %w", c.cfg.LedgerTopic, err)
	}
	c.done = done
	rb.Uncommitted = len(done)
	rb.Took = time.Since(start).Round(time.Millisecond).String()
	c.stats.rebuilt(rb)
	c.log.Info("processed set rebuilt from the ledger", "ledger_records", rb.LedgerRecords, "own", rb.Own, "uncommitted", rb.Uncommitted,
		"unreadable", rb.Unreadable, "took", rb.Took)
	return rb, nil
}

// rebuildUntilDone retries the start-up rebuild every 2s until it succeeds
// or ctx ends: effectively-once must not process before it knows what was
// processed.
func (c *Consumer) rebuildUntilDone(ctx context.Context) {
	for ctx.Err() == nil {
		c.lock()
		_, err := c.rebuild(ctx)
		c.unlock()
		if err == nil {
			return
		}
		c.stats.setError(err)
		c.log.Warn("rebuild; retrying", "err", err)
		sleep(ctx, 2*time.Second)
	}
}

// committed reads the group's committed offsets of the analyzer's topic
// (the next offset to read, per partition; none: not in the map).
func (c *Consumer) committed(ctx context.Context) (map[int]int64, error) {
	conn, err := kafka.DialContext(ctx, "tcp", c.cfg.Brokers[0])
	if err != nil {
		return nil, err
	}
	parts, err := conn.ReadPartitions(c.cfg.Topic)
	conn.Close()
	if errors.Is(err, kafka.UnknownTopicOrPartition) {
		// The analyzer's topic is not there yet (its reader creates it
		// where the broker allows): nothing was read from it, so nothing
		// is committed and nothing can be re-delivered.
		return map[int]int64{}, nil
	}
	if err != nil {
		return nil, err
	}
	ids := make([]int, 0, len(parts))
	for _, p := range parts {
		ids = append(ids, p.ID)
	}
	cl := &kafka.Client{Addr: kafka.TCP(c.cfg.Brokers...), Timeout: 5 * time.Second}
	resp, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: c.cfg.Group, Topics: map[string][]int{c.cfg.Topic: ids}})
	if err == nil {
		err = resp.Error
	}
	out := map[int]int64{}
	if errors.Is(err, kafka.GroupIdNotFound) {
		// A group that never committed: kfake answers GROUP_ID_NOT_FOUND
		// where Apache Kafka answers offset -1 per partition; both mean
		// nothing is committed.
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, p := range resp.Topics[c.cfg.Topic] {
		if errors.Is(p.Error, kafka.UnknownTopicOrPartition) {
			continue // created meanwhile: that partition has nothing committed
		}
		if p.Error != nil {
			return nil, p.Error
		}
		if p.CommittedOffset >= 0 {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}
