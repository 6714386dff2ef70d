package produce

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/metadata"
)

// A gatherer makes a partition's batches grow with the broker's round trip
// and writes each batch in one produce request.
//
// kafka-go's Writer seals a partition's batch when BatchTimeout expires and
// writes the sealed batches one at a time. Once a produce round trip takes
// longer than BatchTimeout, every batch holds only BatchTimeout's worth of
// records and costs a whole round trip, so the queue of small batches grows
// until requests time out: under the metadata flood of the starvation
// bench, legitimate requests waited 5 s in WriteMessages (docs/BENCHMARKS.md).
//
// The gatherer keeps one produce request in flight per partition. Records
// that arrive while it is in flight wait in the partition's queue and go
// out together, in one request, once it returns, as the Java producer's
// accumulator does. A batch goes out when the previous request has
// returned and linger (kafka.batch_timeout, 1 ms by default) has passed
// since its first record, or sooner when it holds batchSize records (or
// maxBatchBytes). Under a short round trip a batch gathers for linger; under
// a long one it gathers for the whole round trip, so batches grow with it
// instead of queueing.
//
// Since session 17 the gatherer sends the request itself with
// kafka.Client.Produce, through the same kafka.Transport, instead of
// handing the batch to a kafka.Writer: the Writer allocated a
// BatchSize-long []Message for every call (32 KB at batch_size 200), and
// passed every batch through a timer goroutine and its partition's writer
// goroutine before the transport saw it (docs/BENCHMARKS.md, "The produce
// path without kafka.Writer"). What the Writer did for us is done here as
// it did it: the partition is chosen by kafka.Hash over the partitions in
// the transport's cached metadata, a record over maxBatchBytes is refused
// with kafka.MessageTooLargeError without contacting the broker, one
// attempt per call (retries are the Producer's), and the partition's error
// in the broker's answer is every record's error.
//
// Every caller still waits for the broker's answer to its own record:
// "2xx only after the write" holds. A record whose request gave up before
// its call began is not written at all.
type gatherer struct {
	client    *kafka.Client
	acks      kafka.RequiredAcks
	balancer  kafka.Balancer
	linger    time.Duration
	batchSize int
	obs       Observer // may be nil

	mu     sync.Mutex
	queues map[topicPartition]*partitionQueue
	counts map[string]partitionCount // by topic
}

// partitionCount is a topic's number of partitions as the transport's
// metadata gave it, reused until expires.
type partitionCount struct {
	n       int
	expires time.Time
}

// partitionCountTTL is how long the gatherer reuses a topic's partition
// count before it asks the transport's metadata cache again. Asking cost 2 %
// of the distributor's CPU at saturation when it was done for every record
// (docs/BENCHMARKS.md); the transport's own cache is refreshed every 6 s
// (kafka.Transport.MetadataTTL), so a second adds little to how stale the
// count can be.
const partitionCountTTL = time.Second

// maxBatchBytes is kafka-go's Writer default BatchBytes, kept: the most a
// request carries, and the largest record the distributor sends. Kafka's
// own message.max.bytes defaults to about the same (1,048,588).
const maxBatchBytes = 1 << 20

type topicPartition struct {
	topic     string
	partition int
}

type partitionQueue struct {
	key     topicPartition
	mu      sync.Mutex
	busy    bool      // a runner is writing or about to
	first   time.Time // when the first of pending arrived
	pending []*waiter
}

type waiter struct {
	ctx  context.Context
	msg  kafka.Message
	size int
	done chan error // buffered: the runner never blocks on a waiter that left
}

func newGatherer(client *kafka.Client, acks kafka.RequiredAcks, linger time.Duration, batchSize int, obs Observer) *gatherer {
	// kafka.Hash: by key, so a tenant or packet stays on one partition.
	return &gatherer{client: client, acks: acks, balancer: &kafka.Hash{}, linger: linger, batchSize: max(batchSize, 1), obs: obs,
		queues: map[topicPartition]*partitionQueue{}, counts: map[string]partitionCount{}}
}

func (g *gatherer) queue(key topicPartition) *partitionQueue {
	g.mu.Lock()
	defer g.mu.Unlock()
	q := g.queues[key]
	if q == nil {
		q = &partitionQueue{key: key}
		g.queues[key] = q
	}
	return q
}

// write writes msg (whose Topic is set) and waits for the broker's answer
// or for ctx.
func (g *gatherer) write(ctx context.Context, msg kafka.Message) error {
	size := recordSize(&msg)
	if size > maxBatchBytes {
		return kafka.MessageTooLargeError{Message: msg}
	}
	n, err := g.partitions(ctx, msg.Topic)
	if err != nil {
		return err
	}
	partition := g.balancer.Balance(msg, partitionList(n)...)
	q := g.queue(topicPartition{msg.Topic, partition})
	w := &waiter{ctx: ctx, msg: msg, size: size, done: make(chan error, 1)}
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

// partitions is the number of topic's partitions in the transport's
// cached metadata (refreshed every kafka.Transport.MetadataTTL), as the
// Writer asks it, reused for partitionCountTTL.
func (g *gatherer) partitions(ctx context.Context, topic string) (int, error) {
	now := time.Now()
	g.mu.Lock()
	c, ok := g.counts[topic]
	g.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.n, nil
	}
	n, err := g.askPartitions(ctx, topic)
	if err != nil {
		return 0, err
	}
	g.mu.Lock()
	g.counts[topic] = partitionCount{n: n, expires: now.Add(partitionCountTTL)}
	g.mu.Unlock()
	return n, nil
}

func (g *gatherer) askPartitions(ctx context.Context, topic string) (int, error) {
	r, err := g.client.Transport.RoundTrip(ctx, g.client.Addr, &metadata.Request{TopicNames: []string{topic}})
	if err != nil {
		return 0, err
	}
	res, ok := r.(*metadata.Response)
	if !ok {
		return 0, fmt.Errorf("metadata for %s: unexpected response %T", topic, r)
	}
	for _, t := range res.Topics {
		if t.Name == topic {
			if t.ErrorCode != 0 {
				return 0, kafka.Error(t.ErrorCode)
			}
			if len(t.Partitions) == 0 {
				break
			}
			return len(t.Partitions), nil
		}
	}
	return 0, kafka.UnknownTopicOrPartition
}

// run writes the partition's queue until it is empty. A batch goes out
// when the previous request has returned and either linger has passed
// since its first record arrived or it is full.
func (g *gatherer) run(q *partitionQueue) {
	var spare []*waiter
	for {
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.busy = false
			q.mu.Unlock()
			return
		}
		n, full := batchLen(q.pending, g.batchSize)
		if wait := g.linger - time.Since(q.first); wait > 0 && !full {
			q.mu.Unlock()
			time.Sleep(wait)
			continue
		}
		batch := append(spare[:0], q.pending[:n]...)
		rest := copy(q.pending, q.pending[n:])
		clear(q.pending[rest:])
		q.pending = q.pending[:rest]
		// The records left behind have waited since before this batch went
		// out: they go as soon as it returns.
		q.mu.Unlock()
		g.writeBatch(q.key, batch)
		clear(batch)
		spare = batch
	}
}

// batchLen is how many of pending's first records make one request: at
// most batchSize records and maxBatchBytes bytes, and at least one. full
// says whether the request cannot grow.
func batchLen(pending []*waiter, batchSize int) (n int, full bool) {
	bytes := 0
	for n < len(pending) && n < batchSize {
		if n > 0 && bytes+pending[n].size > maxBatchBytes {
			return n, true
		}
		bytes += pending[n].size
		n++
	}
	return n, n == batchSize
}

// writeBatch writes the records whose requests still wait. The produce
// request is bounded by the client's Timeout (WriteTimeout), as the
// Writer's was, not by its waiters' deadlines: kafka-go closes a
// connection whose round trip misses its deadline, so a request that gave
// up mid-write would cost the next one a new connection.
func (g *gatherer) writeBatch(key topicPartition, batch []*waiter) {
	live := batch[:0]
	for _, w := range batch {
		if err := w.ctx.Err(); err != nil {
			w.done <- err // its request has given up: not written
			continue
		}
		live = append(live, w)
	}
	if len(live) == 0 {
		return
	}
	g.writeGroup(context.Background(), key, live)
}

// writeGroup writes the records of live in one produce request and
// answers each waiter. Kafka's message.max.bytes limits a whole record
// batch: so when a request that carried several records is refused as too
// large, they are written again in two halves, until a record too large by
// itself is alone. A record is never refused for its neighbours' size, and
// only records that were refused (not written) are written again.
func (g *gatherer) writeGroup(ctx context.Context, key topicPartition, live []*waiter) {
	res, err := g.client.Produce(ctx, &kafka.ProduceRequest{
		Topic: key.topic, Partition: key.partition, RequiredAcks: g.acks,
		Records: &waiterRecords{waiters: live},
	})
	if err == nil && res != nil {
		err = res.Error // the partition's error: Kafka appends a batch whole or not at all
	}
	if g.obs != nil {
		g.obs.KafkaBatch(key.topic, len(live))
	}
	if len(live) > 1 && Classify(err) == TypeTooLarge {
		mid := (len(live) + 1) / 2
		g.writeGroup(ctx, key, live[:mid])
		g.writeGroup(ctx, key, live[mid:])
		return
	}
	for _, w := range live {
		w.done <- err
	}
}

// waiterRecords reads the waiters' messages as the records of one produce
// request, as kafka-go's Writer reads its batch: one Record reused.
type waiterRecords struct {
	waiters    []*waiter
	i          int
	record     kafka.Record
	key, value bytesReadCloser
}

func (r *waiterRecords) ReadRecord() (*kafka.Record, error) {
	if r.i >= len(r.waiters) {
		return nil, io.EOF
	}
	m := &r.waiters[r.i].msg
	r.i++
	r.record = kafka.Record{Time: m.Time, Headers: m.Headers}
	if m.Key != nil {
		r.key.Reset(m.Key)
		r.record.Key = &r.key
	}
	if m.Value != nil {
		r.value.Reset(m.Value)
		r.record.Value = &r.value
	}
	return &r.record, nil
}

type bytesReadCloser struct{ bytes.Reader }

func (*bytesReadCloser) Close() error { return nil }

// recordSize is a record's size in a batch, within a few bytes of varint
// lengths: what the Writer compared with BatchBytes.
func recordSize(m *kafka.Message) int {
	n := 4 + 1 + 1 + 4 + len(m.Key) + 4 + len(m.Value) + 8
	for _, h := range m.Headers {
		n += 10 + len(h.Key) + len(h.Value)
	}
	return n
}

// partitionList is [0, n), shared: Balancer takes the partitions as ints.
func partitionList(n int) []int {
	if l, _ := partitionsCache.Load().([]int); len(l) >= n {
		return l[:n]
	}
	l := make([]int, (n/128+1)*128)
	for i := range l {
		l[i] = i
	}
	partitionsCache.Store(l)
	return l[:n]
}

var partitionsCache atomic.Value
