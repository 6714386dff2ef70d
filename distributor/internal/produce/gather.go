package produce

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// A gatherer makes a topic's batches grow with the broker's round trip.
//
// kafka-go's Writer seals a partition's batch when BatchTimeout expires and
// writes the sealed batches one at a time. Once a produce round trip takes
// longer than BatchTimeout, every batch holds only BatchTimeout's worth of
// records and costs a whole round trip, so the queue of small batches grows
// until requests time out: under the metadata flood of the starvation
// bench, legitimate requests waited 5 s in WriteMessages (docs/BENCHMARKS.md).
//
// The gatherer keeps one WriteMessages call in flight per topic. Records
// that arrive while it is in flight wait in the topic's queue and go out
// together, in one call, once it returns, as the Java producer's
// accumulator does. A batch goes out when the previous call has returned
// and linger (kafka.batch_timeout, 1 ms by default) has passed since its
// first record, or sooner when it holds BatchSize records. Under a short
// round trip a batch gathers for linger, as kafka-go's own timer did; under
// a long one it gathers for the whole round trip, so batches grow with it
// instead of queueing. The writer's own BatchTimeout is a nanosecond: each
// call is sealed at once, one batch per partition (kafka-go splits it at
// BatchSize records or BatchBytes).
//
// Every caller still waits for the broker's answer to its own record:
// "2xx only after the write" holds. A record whose request gave up before
// its call began is not written at all.
type gatherer struct {
	w         *kafka.Writer
	linger    time.Duration
	batchSize int
	obs       Observer // may be nil

	mu     sync.Mutex
	topics map[string]*topicQueue
}

type topicQueue struct {
	mu      sync.Mutex
	busy    bool      // a runner is writing or about to
	first   time.Time // when the first of pending arrived
	pending []*waiter
}

type waiter struct {
	ctx  context.Context
	msg  kafka.Message
	done chan error // buffered: the runner never blocks on a waiter that left
}

func newGatherer(w *kafka.Writer, linger time.Duration, batchSize int, obs Observer) *gatherer {
	return &gatherer{w: w, linger: linger, batchSize: batchSize, obs: obs, topics: map[string]*topicQueue{}}
}

func (g *gatherer) queue(topic string) *topicQueue {
	g.mu.Lock()
	defer g.mu.Unlock()
	q := g.topics[topic]
	if q == nil {
		q = &topicQueue{}
		g.topics[topic] = q
	}
	return q
}

// write writes msg (whose Topic is set) and waits for the broker's answer
// or for ctx.
func (g *gatherer) write(ctx context.Context, msg kafka.Message) error {
	q := g.queue(msg.Topic)
	w := &waiter{ctx: ctx, msg: msg, done: make(chan error, 1)}
	q.mu.Lock()
	if len(q.pending) == 0 {
		q.first = time.Now()
	}
	q.pending = append(q.pending, w)
	start := !q.busy
	q.busy = true
	q.mu.Unlock()
	if start {
		go g.run(q)
	}
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run writes the topic's queue until it is empty. A batch goes out when
// the previous call has returned and either linger has passed since its
// first record arrived or it holds batchSize records.
func (g *gatherer) run(q *topicQueue) {
	var spare []*waiter
	for {
		q.mu.Lock()
		batch := q.pending
		if len(batch) == 0 {
			q.busy = false
			q.mu.Unlock()
			return
		}
		if wait := g.linger - time.Since(q.first); wait > 0 && len(batch) < g.batchSize {
			q.mu.Unlock()
			time.Sleep(wait)
			continue
		}
		q.pending = spare[:0]
		q.mu.Unlock()
		g.writeBatch(batch)
		clear(batch)
		spare = batch
	}
}

func (g *gatherer) writeBatch(batch []*waiter) {
	live := batch[:0]
	var deadline time.Time
	for _, w := range batch {
		if err := w.ctx.Err(); err != nil {
			w.done <- err // its request has given up: not written
			continue
		}
		live = append(live, w)
		if d, ok := w.ctx.Deadline(); ok && d.After(deadline) {
			deadline = d
		}
	}
	if len(live) == 0 {
		return
	}
	ctx := context.Background()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	g.writeGroup(ctx, live)
}

// writeGroup writes the records of live in one call and answers each
// waiter. Kafka's message.max.bytes limits a whole record batch, and
// kafka-go refuses a whole call for one record over its BatchBytes: so the
// records refused as too large in a call that carried several are written
// again in two halves, until a record too large by itself is alone. A
// record is never refused for its neighbours' size, and only records that
// were refused (not written) are written again.
func (g *gatherer) writeGroup(ctx context.Context, live []*waiter) {
	msgs := make([]kafka.Message, len(live))
	for i, w := range live {
		msgs[i] = w.msg
	}
	err := g.w.WriteMessages(ctx, msgs...)
	if g.obs != nil {
		g.obs.KafkaBatch(msgs[0].Topic, len(msgs))
	}
	errs := make([]error, len(live))
	var we kafka.WriteErrors
	if errors.As(err, &we) && len(we) == len(live) {
		copy(errs, we)
	} else {
		for i := range errs {
			errs[i] = err
		}
	}
	var again []*waiter
	for i, w := range live {
		if len(live) > 1 && Classify(errs[i]) == TypeTooLarge {
			again = append(again, w)
			continue
		}
		w.done <- errs[i]
	}
	if len(again) > 0 {
		mid := (len(again) + 1) / 2
		g.writeGroup(ctx, again[:mid])
		g.writeGroup(ctx, again[mid:])
	}
}
