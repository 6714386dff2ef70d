package ledgercheck

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/ledger"
)

// history is a hand-written Kafka: topics of records, partitions of one
// record list each, and a hook run before each read of the end offsets
// (records arriving while the checker waits).
type history struct {
	mu         sync.Mutex
	parts      map[Partition][]Record
	beforeEnds func(round int)
	ends       int
	fetchMax   int
}

func newHistory() *history { return &history{parts: map[Partition][]Record{}, fetchMax: 3} }

var t0 = time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)

func (h *history) add(topic string, part int, at time.Time, value []byte, headers ...kafka.Header) Position {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := Partition{topic, part}
	pos := Position{Topic: topic, Partition: part, Offset: int64(len(h.parts[p]))}
	h.parts[p] = append(h.parts[p], Record{Position: pos, Time: at, Value: value, Headers: headers})
	return pos
}

// write is the distributor writing a packet to logs.<analyzer>.
func (h *history) write(analyzer, id string) Position {
	return h.add("logs."+analyzer, 0, t0.Add(time.Second), []byte(`{"packet_id":"`+id+`"}`), kafka.Header{Key: "packet_id", Value: []byte(id)})
}

// process is the analyzer's ledger record for the packet at pos.
func (h *history) process(analyzer, id string, pos Position) Position {
	return h.add("ledger.processed", 0, t0.Add(2*time.Second), ledgerValue(analyzer, id, pos))
}

// ledgerValue is a ledger record as the analyzers write it.
func ledgerValue(analyzer, id string, pos Position) []byte {
	if pos.Topic == "" {
		pos.Topic = "logs." + analyzer
	}
	b, err := ledger.Encode(ledger.Record{PacketID: id, EmitterID: "k6-1", Tenant: "default", Analyzer: analyzer, Topic: pos.Topic, Partition: pos.Partition,
		Offset: pos.Offset, ProcessedAt: t0.Add(2 * time.Second), Delivery: ledger.AtLeastOnce, Messages: 3})
	if err != nil {
		panic(err)
	}
	return b
}

func (h *history) Partitions(context.Context) ([]Partition, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Partition
	for p := range h.parts {
		out = append(out, p)
	}
	return out, nil
}

func (h *history) Starts(_ context.Context, ps []Partition, since time.Time) (map[Partition]int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[Partition]int64{}
	for _, p := range ps {
		rs := h.parts[p]
		out[p] = int64(len(rs))
		for i, r := range rs {
			if !r.Time.Before(since) {
				out[p] = int64(i)
				break
			}
		}
	}
	return out, nil
}

func (h *history) Ends(_ context.Context, ps []Partition) (map[Partition]int64, error) {
	h.mu.Lock()
	h.ends++
	hook, round := h.beforeEnds, h.ends
	h.mu.Unlock()
	if hook != nil {
		hook(round)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[Partition]int64{}
	for _, p := range ps {
		out[p] = int64(len(h.parts[p]))
	}
	return out, nil
}

func (h *history) Fetch(_ context.Context, p Partition, offset int64) ([]Record, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rs := h.parts[p]
	if offset >= int64(len(rs)) {
		return nil, nil
	}
	return slices.Clone(rs[offset:min(int64(len(rs)), offset+int64(h.fetchMax))]), nil
}

func query(jobs ...string) Query {
	return Query{JobIDs: jobs, Since: t0, LogsPrefix: "logs.", LedgerTopic: "ledger.processed", MaxRecords: 1000,
		Timeout: time.Minute, Quiet: 5 * time.Second, Poll: time.Second}
}

func ids(ex []Example) []string {
	var out []string
	for _, e := range ex {
		out = append(out, e.PacketID)
	}
	return out
}

func TestACleanRunHasEveryWrittenPacketProcessedOnce(t *testing.T) {
	h := newHistory()
	for i := range 5 {
		id := fmt.Sprintf("t-1-1-%d", i)
		h.process("analyzer-1", id, h.write("analyzer-1", id))
	}
	r := Check(t.Context(), h, DecodeLedger, query("t-1"))
	require.True(t, r.Complete(), "%+v", r)
	require.Equal(t, Counts{Written: 5, Processed: 5, Processings: 5}, r.Counts)
	require.Empty(t, r.Examples.Lost)
	require.Equal(t, int64(10), r.RecordsRead)
}

func TestAPacketWrittenAndNeverProcessedIsLostWithWhereItWasWritten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHistory()
		h.process("analyzer-1", "t-1-1-1", h.write("analyzer-1", "t-1-1-1"))
		h.write("analyzer-2", "t-1-2-1")
		h.write("analyzer-2", "t-1-2-2")
		r := Check(t.Context(), h, DecodeLedger, query("t-1"))
		require.True(t, r.Complete(), "%+v", r)
		require.Equal(t, Counts{Written: 3, Processed: 1, Processings: 1, Lost: 2}, r.Counts)
		require.Equal(t, []string{"t-1-2-1", "t-1-2-2"}, ids(r.Examples.Lost))
		require.Equal(t, []Position{{Topic: "logs.analyzer-2", Partition: 0, Offset: 1}}, r.Examples.Lost[1].Written)
		// It waited for the backlog: Quiet without a new processing.
		require.GreaterOrEqual(t, r.WaitedSeconds, 5.0)
	})
}

func TestAPacketProcessedTwiceIsADuplicateWithBothProcessings(t *testing.T) {
	h := newHistory()
	at := h.write("analyzer-2", "t-1-2-7")
	first := h.process("analyzer-2", "t-1-2-7", at)
	second := h.process("analyzer-2", "t-1-2-7", at) // re-consumed after a crash
	r := Check(t.Context(), h, DecodeLedger, query("t-1"))
	require.Equal(t, Counts{Written: 1, Processed: 1, Processings: 2, Duplicates: 1, Redelivered: 1}, r.Counts)
	require.Len(t, r.Examples.Duplicates, 1)
	d := r.Examples.Duplicates[0]
	require.Equal(t, "t-1-2-7", d.PacketID)
	require.Equal(t, []Position{first, second}, []Position{d.Processed[0].Ledger, d.Processed[1].Ledger})
	require.Equal(t, at, d.Processed[1].Logs)
	require.Equal(t, "analyzer-2", d.Processed[1].Analyzer)
}

func TestTwoCopiesOfAPacketProcessedOnceEachAreADuplicateButNoRedelivery(t *testing.T) {
	h := newHistory()
	h.process("analyzer-1", "t-1-1-1", h.write("analyzer-1", "t-1-1-1"))
	h.process("analyzer-1", "t-1-1-1", h.write("analyzer-1", "t-1-1-1")) // a distributor retry whose first write landed
	r := Check(t.Context(), h, DecodeLedger, query("t-1"))
	require.Equal(t, Counts{Written: 1, WrittenTwice: 1, Processed: 1, Processings: 2, Duplicates: 1}, r.Counts)
}

func TestAPacketProcessedButNeverWrittenIsUnexpected(t *testing.T) {
	h := newHistory()
	h.process("analyzer-1", "t-1-1-1", h.write("analyzer-1", "t-1-1-1"))
	h.process("analyzer-3", "t-1-9-9", Position{Topic: "logs.analyzer-3", Offset: 42})
	r := Check(t.Context(), h, DecodeLedger, query("t-1"))
	require.Equal(t, Counts{Written: 1, Processed: 2, Processings: 2, Unexpected: 1}, r.Counts)
	require.Equal(t, []string{"t-1-9-9"}, ids(r.Examples.Unexpected))
	require.Equal(t, int64(42), r.Examples.Unexpected[0].Processed[0].Logs.Offset)
}

func TestTheSameHistoryInAnyOrderGivesTheSameLedger(t *testing.T) {
	type ev struct {
		ledger bool
		id     string
	}
	var evs []ev
	for i := range 40 {
		id := fmt.Sprintf("t-1-%d-%d", i%4, i)
		evs = append(evs, ev{false, id})
		if i%7 != 0 { // some lost
			evs = append(evs, ev{true, id})
		}
		if i%5 == 0 { // some twice
			evs = append(evs, ev{true, id})
		}
	}
	evs = append(evs, ev{true, "t-1-0-999"}) // unexpected
	run := func(evs []ev) (Counts, Examples) {
		tl := NewTally([]string{"t-1"}, DecodeLedger)
		for i, e := range evs {
			pos := Position{Topic: "logs.analyzer-1", Offset: int64(i)}
			if e.ledger {
				tl.Processed(Record{Position: Position{Topic: "ledger.processed"}, Value: ledgerValue("analyzer-1", e.id, pos)})
			} else {
				tl.Written(Record{Position: Position{Topic: "logs.analyzer-1"}, Headers: []kafka.Header{{Key: "packet_id", Value: []byte(e.id)}}})
			}
		}
		return tl.Counts()
	}
	want, wantEx := run(evs)
	require.Equal(t, Counts{Written: 40, Processed: 37, Processings: 43, Duplicates: 6, Lost: 4, Unexpected: 1}, want)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		shuffled := slices.Clone(evs)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got, gotEx := run(shuffled)
		require.Equal(t, want, got)
		require.Equal(t, ids(wantEx.Lost), ids(gotEx.Lost))
		require.Equal(t, ids(wantEx.Duplicates), ids(gotEx.Duplicates))
		// written = processed - unexpected + lost, in every order
		require.Equal(t, got.Written, got.Processed-got.Unexpected+got.Lost)
	}
}

func TestAnEmptyHistoryCountsNothing(t *testing.T) {
	h := newHistory()
	h.parts[Partition{"ledger.processed", 0}] = nil // topics without records
	h.parts[Partition{"logs.analyzer-1", 0}] = nil
	r := Check(t.Context(), h, DecodeLedger, query("t-1"))
	require.True(t, r.Complete(), "%+v", r)
	require.Equal(t, Counts{}, r.Counts)
	require.Zero(t, r.RecordsRead)
	require.NotNil(t, r.Examples.Lost) // [] in JSON, not null
}

func TestUnreadableLedgerRecordsAreCountedAndShownNeverFatal(t *testing.T) {
	h := newHistory()
	h.process("analyzer-1", "t-1-1-1", h.write("analyzer-1", "t-1-1-1"))
	bad := []Position{
		h.add("ledger.processed", 0, t0.Add(time.Second), []byte("not json at all")),
		h.add("ledger.processed", 0, t0.Add(time.Second), []byte(`{"v":2,"packet_id":"t-1-1-1","analyzer":"analyzer-1"}`)),
		h.add("ledger.processed", 0, t0.Add(time.Second), []byte(`{"packet_id":["t-1-1-1"]}`)),
		h.add("ledger.processed", 0, t0.Add(time.Second), nil),
	}
	r := Check(t.Context(), h, DecodeLedger, query("t-1"))
	require.True(t, r.Complete(), "%+v", r)
	require.Equal(t, Counts{Written: 1, Processed: 1, Processings: 1, Unreadable: 4}, r.Counts)
	require.Len(t, r.Examples.Unreadable, 4)
	for i, u := range r.Examples.Unreadable {
		require.Equal(t, bad[i], u.Position)
		require.NotEmpty(t, u.Error)
	}
}

func TestOtherJobsAndRecordsBeforeTheStartAreNotCounted(t *testing.T) {
	h := newHistory()
	h.add("logs.analyzer-1", 0, t0.Add(-time.Hour), nil, kafka.Header{Key: "packet_id", Value: []byte("t-1-1-0")}) // before Since
	h.process("analyzer-1", "t-1-1-1", h.write("analyzer-1", "t-1-1-1"))
	h.write("analyzer-1", "t-2-1-1")                                       // another job, lost: not ours
	h.process("analyzer-1", "t-12-1-1", h.write("analyzer-1", "t-12-1-1")) // a job id that extends ours
	h.process("analyzer-1", "k6-1-1", Position{})                          // no job at all
	h.add("other.topic", 0, t0.Add(time.Second), []byte("x"))
	r := Check(t.Context(), h, DecodeLedger, query("t-1"))
	require.Equal(t, Counts{Written: 1, Processed: 1, Processings: 1}, r.Counts)
	r = Check(t.Context(), h, DecodeLedger, query("t-1", "t-12"))
	require.Equal(t, Counts{Written: 2, Processed: 2, Processings: 2}, r.Counts)
}

func TestTheEnvelopesPacketIDIsUsedWithoutAHeader(t *testing.T) {
	h := newHistory()
	pos := h.add("logs.analyzer-1", 0, t0, []byte(`{"tenant":"default","packet_id":"t-1-1-1","emitter_id":"e","messages":[]}`))
	h.process("analyzer-1", "t-1-1-1", pos)
	r := Check(t.Context(), h, DecodeLedger, query("t-1"))
	require.Equal(t, Counts{Written: 1, Processed: 1, Processings: 1}, r.Counts)
}

func TestTheCheckerWaitsForTheBacklogToDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHistory()
		h.parts[Partition{"ledger.processed", 0}] = nil
		var pending []string
		for i := range 6 {
			id := fmt.Sprintf("t-1-1-%d", i)
			h.write("analyzer-1", id)
			pending = append(pending, id)
		}
		// One packet processed per round, as a slow analyzer would.
		h.beforeEnds = func(round int) {
			if round%2 == 1 && len(pending) > 0 { // ledger ends are read first
				h.process("analyzer-1", pending[0], Position{Topic: "logs.analyzer-1", Offset: int64(6 - len(pending))})
				pending = pending[1:]
			}
		}
		r := Check(t.Context(), h, DecodeLedger, query("t-1"))
		require.True(t, r.Complete(), "%+v", r)
		require.Equal(t, Counts{Written: 6, Processed: 6, Processings: 6}, r.Counts)
		require.Less(t, r.WaitedSeconds, 10.0, "it stopped once everything was processed, not after a quiet period")
	})
}

func TestTheRecordCapStopsTheReadingAndSaysSo(t *testing.T) {
	h := newHistory()
	for i := range 20 {
		id := fmt.Sprintf("t-1-1-%d", i)
		h.process("analyzer-1", id, h.write("analyzer-1", id))
	}
	q := query("t-1")
	q.MaxRecords = 25
	r := Check(t.Context(), h, DecodeLedger, q)
	require.False(t, r.Complete())
	require.Contains(t, r.Truncated, "25 records")
	require.Equal(t, int64(25), r.RecordsRead)
}

// oneLostWhileOthersArrive is a history with one packet of job t-1 never
// processed while processings of its other packets keep arriving (each
// other round): the backlog is never quiet.
func oneLostWhileOthersArrive() *history {
	h := newHistory()
	h.parts[Partition{"ledger.processed", 0}] = nil
	h.write("analyzer-1", "t-1-1-1")
	n := 0
	h.beforeEnds = func(round int) {
		if round%2 == 1 {
			n++
			id := fmt.Sprintf("t-1-2-%d", n)
			h.process("analyzer-2", id, h.write("analyzer-2", id))
		}
	}
	return h
}

func TestTheTimeLimitStopsTheWaitAndSaysSo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := oneLostWhileOthersArrive()
		q := query("t-1")
		q.Timeout = 20 * time.Second
		r := Check(t.Context(), h, DecodeLedger, q)
		require.False(t, r.Complete())
		require.Contains(t, r.Truncated, "time limit of 20s")
		require.Equal(t, int64(1), r.Lost)
	})
}

func TestAMissingLedgerTopicIsAnErrorNamingIt(t *testing.T) {
	h := newHistory()
	h.write("analyzer-1", "t-1-1-1")
	r := Check(t.Context(), h, DecodeLedger, query("t-1"))
	require.False(t, r.Complete())
	require.Contains(t, r.Error, "topic ledger.processed does not exist")
}

// A second stop of the experiment ends the wait for the backlog at once:
// the ledger as it stood, marked partial.
func TestHurryStopsTheWaitAndSaysSo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := oneLostWhileOthersArrive()
		hurry := make(chan struct{})
		time.AfterFunc(3500*time.Millisecond, func() { close(hurry) })
		q := query("t-1")
		q.Hurry = hurry
		start := time.Now()
		r := Check(t.Context(), h, DecodeLedger, q)
		require.False(t, r.Complete())
		require.Contains(t, r.Truncated, "stopped again while 1 packets were still unprocessed")
		require.Equal(t, int64(1), r.Lost)
		require.Equal(t, 3500*time.Millisecond, time.Since(start), "it stopped when hurried, not at the next poll")
	})
}
