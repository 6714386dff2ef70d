package ledgercheck

import (
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
)

// This test runs against kfake (franz-go's Kafka-protocol broker, in
// process: the broker devkafka and the e2e stack use). It is a stand-in
// for Kafka: what it proves is that the checker's kafka-go requests
// (Metadata, ListOffsets by time and at the end, Fetch) read back what a
// kafka-go Writer wrote, across partitions and fetches, with the record
// timestamps a producer set. The e2e presets read the same topics on the
// same stand-in; no test here runs against Apache Kafka.
func TestTheKafkaSourceReadsWhatAKafkaGoWriterWrote(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "logs.analyzer-1"), kfake.SeedTopics(1, "logs.analyzer-2", "ledger.processed", "unrelated"))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	w := &kafka.Writer{Addr: kafka.TCP(c.ListenAddrs()...), Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	t.Cleanup(func() { w.Close() })
	since := time.Now().Add(-time.Minute)
	old := since.Add(-time.Hour)
	hdr := func(id string) []kafka.Header {
		return []kafka.Header{{Key: "packet_id", Value: []byte(id)}, {Key: "tenant", Value: []byte("default")}}
	}
	// Before since, in a batch of its own: skipped by the time lookup (it
	// would be a lost packet).
	require.NoError(t, w.WriteMessages(t.Context(), kafka.Message{Topic: "logs.analyzer-1", Key: []byte("t-1-1-0"), Value: []byte(`{}`), Headers: hdr("t-1-1-0"), Time: old}))
	var msgs []kafka.Message
	for i := range 300 {
		id := fmt.Sprintf("t-1-%d-%d", i%3, i)
		topic := "logs.analyzer-1"
		if i%3 == 2 {
			topic = "logs.analyzer-2"
		}
		msgs = append(msgs, kafka.Message{Topic: topic, Key: []byte(id), Value: []byte(`{"packet_id":"` + id + `"}`), Headers: hdr(id)})
		if i%50 == 7 {
			continue // lost
		}
		rec := ledgerValue("analyzer-1", id, Position{Topic: topic, Offset: int64(i)})
		msgs = append(msgs, kafka.Message{Topic: "ledger.processed", Key: []byte(id), Value: rec})
		if i == 100 {
			msgs = append(msgs, kafka.Message{Topic: "ledger.processed", Key: []byte(id), Value: rec}) // processed twice
		}
	}
	msgs = append(msgs, kafka.Message{Topic: "ledger.processed", Value: []byte("garbage")},
		kafka.Message{Topic: "unrelated", Value: []byte("x")})
	require.NoError(t, w.WriteMessages(t.Context(), msgs...))

	src := NewKafka(c.ListenAddrs())
	src.maxBytes = 4 << 10 // many fetches per partition
	q := query("t-1")
	q.Since, q.MaxRecords, q.Quiet, q.Poll = since, 10000, time.Second, 100*time.Millisecond
	r := Check(t.Context(), src, DecodeLedger, q)
	require.True(t, r.Complete(), "%+v", r)
	require.Equal(t, Counts{Written: 300, Processed: 294, Processings: 295, Duplicates: 1, Redelivered: 1, Lost: 6, Unreadable: 1}, r.Counts)
	require.ElementsMatch(t, []string{"t-1-1-7", "t-1-0-57", "t-1-2-107", "t-1-1-157", "t-1-0-207", "t-1-2-257"}, ids(r.Examples.Lost))
	require.Equal(t, []string{"t-1-1-100"}, ids(r.Examples.Duplicates))
	require.Equal(t, "ledger.processed", r.Examples.Unreadable[0].Topic)
	require.Equal(t, int64(295), r.Examples.Unreadable[0].Offset, "the garbage record's own offset")
	// 300 logs + 296 ledger records read; the old one and "unrelated" not.
	require.Equal(t, int64(596), r.RecordsRead)
	for _, e := range r.Examples.Lost {
		require.Len(t, e.Written, 1)
		require.Contains(t, []string{"logs.analyzer-1", "logs.analyzer-2"}, e.Written[0].Topic)
	}
}
