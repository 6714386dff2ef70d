package consume

// These tests run the consumer against kfake, a Kafka-protocol broker in
// process (a stand-in for Apache Kafka; kfake's group commits and
// CreateTopics configs were read against its source: /work/notes and
// README "Delivery semantics"). The kill -9 of a real analyzer process
// under each mode is in test/integration/delivery_test.go.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/dsplab/dsplab/internal/envelope"
	"github.com/dsplab/dsplab/internal/ledger"
)

type rig struct {
	brokers []string
	stats   *Stats
	cons    *Consumer
	cancel  context.CancelFunc
	done    chan error
}

// newBroker runs kfake with logs.a1 (and seed, topics that exist before
// the analyzer creates its own).
func newBroker(t *testing.T, seed ...string) []string {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, append([]string{"logs.a1"}, seed...)...))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func cfgFor(brokers []string, mode ledger.Mode) Config {
	return Config{ID: "a1", Topic: "logs.a1", Group: "a1", Brokers: brokers, DedupWindow: 1000, SessionTimeout: 6 * time.Second,
		LedgerTopic: "ledger.processed", Delivery: mode, CommitInterval: 50 * time.Millisecond}
}

func start(t *testing.T, cfg Config) *rig {
	t.Helper()
	stats, err := NewStats(cfg.ID, sdkmetric.NewMeterProvider().Meter("t"))
	require.NoError(t, err)
	r := &rig{brokers: cfg.Brokers, stats: stats, cons: New(cfg, stats, sdktrace.NewTracerProvider(), slog.New(slog.DiscardHandler)), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.cons.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func (r *rig) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
}

func produce(t *testing.T, brokers []string, topic string, from, to int) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, BatchTimeout: time.Millisecond, AllowAutoTopicCreation: true}
	defer w.Close()
	var msgs []kafka.Message
	for i := from; i < to; i++ {
		b, _ := json.Marshal(envelope.Envelope{Tenant: "t1", PacketID: fmt.Sprintf("p-%d", i), EmitterID: "e1", ReceivedAt: time.Now(), Source: "ingest",
			Messages: []envelope.Message{{Level: "info", Message: "m"}, {Level: "warn", Message: "m"}}})
		msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "p-%d", i), Value: b})
	}
	require.Eventually(t, func() bool { return w.WriteMessages(t.Context(), msgs...) == nil }, 10*time.Second, 100*time.Millisecond)
}

func readLedger(t *testing.T, brokers []string) []ledger.Record {
	t.Helper()
	var out []ledger.Record
	require.NoError(t, ledger.Read(t.Context(), brokers, "ledger.processed", time.Time{}, func(m kafka.Message) error {
		r, err := ledger.Decode(m.Value)
		require.NoError(t, err)
		require.Equal(t, r.PacketID, string(m.Key), "keyed by packet id")
		out = append(out, r)
		return nil
	}))
	return out
}

func committed(t *testing.T, brokers []string) int64 {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	resp, err := cl.OffsetFetch(t.Context(), &kafka.OffsetFetchRequest{GroupID: "a1", Topics: map[string][]int{"logs.a1": {0}}})
	require.NoError(t, err)
	if len(resp.Topics["logs.a1"]) == 0 { // the group does not exist yet
		return -1
	}
	return resp.Topics["logs.a1"][0].CommittedOffset
}

func TestEachProcessingIsRecordedInTheLedgerAndItsOffsetCommittedAfter(t *testing.T) {
	brokers := newBroker(t)
	r := start(t, cfgFor(brokers, ledger.AtLeastOnce))
	produce(t, brokers, "logs.a1", 0, 20)
	require.Eventually(t, func() bool { return committed(t, brokers) == 20 }, 20*time.Second, 50*time.Millisecond)
	recs := readLedger(t, brokers)
	require.Len(t, recs, 20, "every packet processed once, every processing recorded before its commit")
	for i, rec := range recs {
		require.Equal(t, fmt.Sprintf("p-%d", i), rec.PacketID)
		require.Equal(t, ledger.Source{Topic: "logs.a1", Partition: 0, Offset: int64(i)}, rec.Source())
		require.Equal(t, "a1", rec.Analyzer)
		require.Equal(t, ledger.AtLeastOnce, rec.Delivery)
		require.Equal(t, 2, rec.Messages)
		require.Equal(t, "t1", rec.Tenant)
		require.Equal(t, "e1", rec.EmitterID)
	}
	s := r.stats.Snapshot()
	require.EqualValues(t, 20, s.LedgerRecords)
	require.Equal(t, ledger.AtLeastOnce, s.Delivery)
}

// A previous process recorded offsets 0..4 in the ledger and died before
// committing them: at-least-once processes them again (duplicates in the
// ledger), effectively-once skips them.
func TestARestartAfterUncommittedProcessingDuplicatesUnlessEffectivelyOnce(t *testing.T) {
	for _, c := range []struct {
		mode                  ledger.Mode
		wantLedger, wantSkips int
	}{
		{ledger.AtLeastOnce, 15, 0},
		{ledger.EffectivelyOnce, 10, 5},
	} {
		t.Run(string(c.mode), func(t *testing.T) {
			brokers := newBroker(t, "ledger.processed")
			produce(t, brokers, "logs.a1", 0, 10)
			w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: "ledger.processed", BatchTimeout: time.Millisecond, AllowAutoTopicCreation: true}
			for i := range 5 {
				b, err := ledger.Encode(ledger.Record{PacketID: fmt.Sprintf("p-%d", i), EmitterID: "e1", Tenant: "t1", Analyzer: "a1", Topic: "logs.a1",
					Offset: int64(i), ProcessedAt: time.Now(), Delivery: ledger.AtLeastOnce, Messages: 2})
				require.NoError(t, err)
				require.Eventually(t, func() bool {
					return w.WriteMessages(t.Context(), kafka.Message{Key: fmt.Appendf(nil, "p-%d", i), Value: b}) == nil
				},
					10*time.Second, 100*time.Millisecond)
			}
			// An analyzer of another id and garbage in the ledger are not ours.
			other, _ := ledger.Encode(ledger.Record{PacketID: "p-7", Analyzer: "a2", Topic: "logs.a2", ProcessedAt: time.Now(), Delivery: ledger.AtLeastOnce})
			require.NoError(t, w.WriteMessages(t.Context(), kafka.Message{Value: other}, kafka.Message{Value: []byte("not a record")}))
			w.Close()

			r := start(t, cfgFor(brokers, c.mode))
			require.Eventually(t, func() bool { return committed(t, brokers) == 10 }, 20*time.Second, 50*time.Millisecond)
			mine := 0
			for _, rec := range readLedger2(t, brokers) {
				if rec.Analyzer == "a1" {
					mine++
				}
			}
			require.Equal(t, c.wantLedger, mine)
			s := r.stats.Snapshot()
			require.EqualValues(t, c.wantSkips, s.RedeliveriesSkipped)
			require.EqualValues(t, 10-c.wantSkips, s.PacketsProcessed)
			if c.mode == ledger.EffectivelyOnce {
				require.NotNil(t, s.LastRebuild)
				require.Equal(t, 5, s.LastRebuild.Own)
				require.Equal(t, 5, s.LastRebuild.Uncommitted)
				require.Equal(t, 1, s.LastRebuild.Unreadable)
			}
		})
	}
}

// readLedger2 is readLedger that skips what is not a ledger record.
func readLedger2(t *testing.T, brokers []string) []ledger.Record {
	var out []ledger.Record
	require.NoError(t, ledger.Read(t.Context(), brokers, "ledger.processed", time.Time{}, func(m kafka.Message) error {
		if r, err := ledger.Decode(m.Value); err == nil {
			out = append(out, r)
		}
		return nil
	}))
	return out
}

// At-most-once commits a batch before processing it: with a slow
// analyzer the group's offset runs ahead of the ledger.
func TestAtMostOnceCommitsTheBatchBeforeProcessingIt(t *testing.T) {
	brokers := newBroker(t)
	produce(t, brokers, "logs.a1", 0, 10)
	cfg := cfgFor(brokers, ledger.AtMostOnce)
	cfg.ProcessingDelay = 300 * time.Millisecond
	r := start(t, cfg)
	require.Eventually(t, func() bool { return committed(t, brokers) > 1 }, 20*time.Second, 20*time.Millisecond)
	ahead := committed(t, brokers)
	got := len(readLedger(t, brokers))
	require.Less(t, int64(got), ahead, "committed %d, processed and recorded %d", ahead, got)
	require.Equal(t, ledger.AtMostOnce, r.stats.Snapshot().Delivery)
	require.Eventually(t, func() bool { return len(readLedger(t, brokers)) == 10 }, 20*time.Second, 50*time.Millisecond)
}

// The delay set at run time (PUT /admin/processing) slows the loop as
// PROCESSING_DELAY_MS does at start: the experiments slow an analyzer down
// this way so that a kill finds a batch in hand.
func TestTheProcessingDelaySetAtRunTimeSlowsTheLoop(t *testing.T) {
	brokers := newBroker(t)
	r := start(t, cfgFor(brokers, ledger.AtMostOnce))
	require.Zero(t, r.cons.ProcessingDelay())
	r.cons.SetProcessingDelay(300 * time.Millisecond)
	require.Equal(t, 300*time.Millisecond, r.cons.ProcessingDelay())
	produce(t, brokers, "logs.a1", 0, 10)
	require.Eventually(t, func() bool { return committed(t, brokers) > 1 }, 20*time.Second, 20*time.Millisecond)
	ahead := committed(t, brokers)
	got := len(readLedger(t, brokers))
	require.Less(t, int64(got), ahead, "committed %d, processed and recorded %d", ahead, got)
	r.cons.SetProcessingDelay(-time.Second)
	require.Zero(t, r.cons.ProcessingDelay(), "a negative delay is none")
	require.Eventually(t, func() bool { return len(readLedger(t, brokers)) == 10 }, 20*time.Second, 50*time.Millisecond)
}

func TestSwitchingEffectivelyOnceOnRebuildsAndOffNeedsNoLedger(t *testing.T) {
	brokers := newBroker(t)
	r := start(t, cfgFor(brokers, ledger.AtLeastOnce))
	produce(t, brokers, "logs.a1", 0, 5)
	require.Eventually(t, func() bool { return committed(t, brokers) == 5 }, 20*time.Second, 50*time.Millisecond)
	sw, err := r.cons.SetMode(t.Context(), ledger.EffectivelyOnce)
	require.NoError(t, err)
	require.Equal(t, ledger.AtLeastOnce, sw.Previous)
	require.NotNil(t, sw.Rebuilt)
	require.Equal(t, 5, sw.Rebuilt.Own)
	require.Zero(t, sw.Rebuilt.Uncommitted, "everything recorded was committed")
	require.Equal(t, ledger.EffectivelyOnce, r.cons.Mode())
	produce(t, brokers, "logs.a1", 5, 8)
	require.Eventually(t, func() bool { return committed(t, brokers) == 8 }, 20*time.Second, 50*time.Millisecond)
	recs := readLedger(t, brokers)
	require.Len(t, recs, 8)
	require.Equal(t, ledger.EffectivelyOnce, recs[7].Delivery, "each record says the mode it was processed under")

	sw, err = r.cons.SetMode(t.Context(), ledger.AtMostOnce)
	require.NoError(t, err)
	require.Nil(t, sw.Rebuilt)
	require.Equal(t, ledger.AtMostOnce, r.stats.Snapshot().Delivery)

	cfg := cfgFor(brokers, ledger.AtLeastOnce)
	cfg.LedgerTopic = ""
	noLedger := New(cfg, r.stats, sdktrace.NewTracerProvider(), slog.New(slog.DiscardHandler))
	_, err = noLedger.SetMode(t.Context(), ledger.EffectivelyOnce)
	require.ErrorIs(t, err, ErrNoLedger)
}

// Switched before the ledger topic exists (the loop creates it when it
// starts: an analyzer asked right after its start), effectively-once starts
// from an empty processed set: nothing was recorded, so nothing is skipped.
func TestEffectivelyOnceBeforeTheLedgerTopicExistsStartsEmpty(t *testing.T) {
	brokers := newBroker(t) // logs.a1 only
	stats, err := NewStats("a1", sdkmetric.NewMeterProvider().Meter("t"))
	require.NoError(t, err)
	c := New(cfgFor(brokers, ledger.AtLeastOnce), stats, sdktrace.NewTracerProvider(), slog.New(slog.DiscardHandler))
	sw, err := c.SetMode(t.Context(), ledger.EffectivelyOnce)
	require.NoError(t, err)
	require.NotNil(t, sw.Rebuilt)
	require.Zero(t, sw.Rebuilt.LedgerRecords)
	require.Zero(t, sw.Rebuilt.Uncommitted)
	require.Equal(t, ledger.EffectivelyOnce, c.Mode())
}

func TestTheLedgerTopicIsCreatedWithItsRetention(t *testing.T) {
	brokers := newBroker(t)
	start(t, cfgFor(brokers, ledger.AtLeastOnce))
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	require.Eventually(t, func() bool {
		resp, err := cl.DescribeConfigs(t.Context(), &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: "ledger.processed", ConfigNames: []string{"retention.ms"}}}})
		if err != nil || len(resp.Resources) != 1 || resp.Resources[0].Error != nil {
			return false
		}
		for _, e := range resp.Resources[0].ConfigEntries {
			if e.ConfigName == "retention.ms" && e.ConfigValue == "86400000" {
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond)
}

// A broker that lost the ledger topic (devkafka keeps nothing across a
// restart: the e2e kafka-outage preset) must not stop the analyzer: before
// this, every ledger write failed, commits waited on them, and nothing was
// processed again until the analyzer itself restarted. (kfake stands in
// for Kafka here, as everywhere in these tests.)
func TestALostLedgerTopicIsCreatedAgainAndProcessingGoesOn(t *testing.T) {
	brokers := newBroker(t)
	start(t, cfgFor(brokers, ledger.AtLeastOnce))
	produce(t, brokers, "logs.a1", 0, 10)
	require.Eventually(t, func() bool { return committed(t, brokers) == 10 }, 20*time.Second, 50*time.Millisecond)

	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	resp, err := cl.DeleteTopics(t.Context(), &kafka.DeleteTopicsRequest{Topics: []string{"ledger.processed"}})
	require.NoError(t, err)
	require.NoError(t, resp.Errors["ledger.processed"])

	produce(t, brokers, "logs.a1", 10, 20)
	require.Eventually(t, func() bool { return committed(t, brokers) == 20 }, 30*time.Second, 100*time.Millisecond,
		"the analyzer creates the ledger topic again, records what it processes and commits")
	recs := readLedger(t, brokers)
	require.NotEmpty(t, recs)
	require.Equal(t, "p-19", recs[len(recs)-1].PacketID, "the packets after the loss are in the new ledger topic")
}
