package ledgercheck

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
)

// Kafka reads a Kafka cluster with kafka-go's Client: Metadata for the
// topics, ListOffsets for where a time starts and where a partition ends,
// Fetch for the records. Nothing is consumed in a group, nothing is
// committed: reading changes nothing in the cluster.
type Kafka struct {
	c *kafka.Client
	// maxBytes bounds one fetch's answer.
	maxBytes int64
}

// NewKafka returns a reader of the cluster at brokers.
func NewKafka(brokers []string) *Kafka {
	// Each request is bounded by the caller's context; the client's own
	// timeout catches a broker that accepts and never answers.
	return &Kafka{c: &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}, maxBytes: 4 << 20}
}

// Partitions lists every partition of every topic.
func (k *Kafka) Partitions(ctx context.Context) ([]Partition, error) {
	md, err := k.c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, err
	}
	var out []Partition
	for _, t := range md.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			out = append(out, Partition{Topic: t.Name, Partition: p.ID})
		}
	}
	return out, nil
}

// Starts finds each partition's first offset at or after since (a
// ListOffsets by timestamp); a partition with nothing that late starts at
// its end.
func (k *Kafka) Starts(ctx context.Context, ps []Partition, since time.Time) (map[Partition]int64, error) {
	at, err := k.list(ctx, ps, func(p int) kafka.OffsetRequest { return kafka.TimeOffsetOf(p, since) })
	if err != nil {
		return nil, err
	}
	ends, err := k.Ends(ctx, ps)
	if err != nil {
		return nil, err
	}
	out := map[Partition]int64{}
	for _, p := range ps {
		out[p] = ends[p]
		// Kafka answers offset -1 when no record is that late; kafka-go
		// then leaves Offsets empty.
		for off := range at[p].Offsets {
			if off >= 0 && off < out[p] {
				out[p] = off
			}
		}
	}
	return out, nil
}

// Ends returns each partition's end offset (its high watermark).
func (k *Kafka) Ends(ctx context.Context, ps []Partition) (map[Partition]int64, error) {
	got, err := k.list(ctx, ps, kafka.LastOffsetOf)
	if err != nil {
		return nil, err
	}
	out := map[Partition]int64{}
	for _, p := range ps {
		out[p] = got[p].LastOffset
	}
	return out, nil
}

func (k *Kafka) list(ctx context.Context, ps []Partition, req func(int) kafka.OffsetRequest) (map[Partition]kafka.PartitionOffsets, error) {
	out := map[Partition]kafka.PartitionOffsets{}
	if len(ps) == 0 {
		return out, nil
	}
	topics := map[string][]kafka.OffsetRequest{}
	for _, p := range ps {
		topics[p.Topic] = append(topics[p.Topic], req(p.Partition))
	}
	res, err := k.c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: topics})
	if err != nil {
		return nil, err
	}
	for topic, parts := range res.Topics {
		for _, po := range parts {
			if po.Error != nil {
				return nil, fmt.Errorf("%s/%d: %w", topic, po.Partition, po.Error)
			}
			out[Partition{Topic: topic, Partition: po.Partition}] = po
		}
	}
	for _, p := range ps {
		if _, ok := out[p]; !ok {
			return nil, fmt.Errorf("%s/%d: no offsets in the broker's answer", p.Topic, p.Partition)
		}
	}
	return out, nil
}

// Fetch reads records of p from offset on: what the broker returns in one
// fetch of at most 4 MiB.
func (k *Kafka) Fetch(ctx context.Context, p Partition, offset int64) ([]Record, error) {
	res, err := k.c.Fetch(ctx, &kafka.FetchRequest{Topic: p.Topic, Partition: p.Partition, Offset: offset, MinBytes: 1, MaxBytes: k.maxBytes, MaxWait: 500 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	if res.Error != nil {
		return nil, res.Error
	}
	var out []Record
	for {
		r, err := res.Records.ReadRecord()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		rec := Record{Position: Position{Topic: p.Topic, Partition: p.Partition, Offset: r.Offset}, Time: r.Time}
		if rec.Key, err = readBytes(r.Key); err == nil {
			rec.Value, err = readBytes(r.Value)
		}
		if err != nil {
			return out, fmt.Errorf("offset %d: %w", r.Offset, err)
		}
		for _, h := range r.Headers {
			rec.Headers = append(rec.Headers, kafka.Header{Key: h.Key, Value: h.Value})
		}
		out = append(out, rec)
	}
}

func readBytes(b kafka.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	defer b.Close()
	return io.ReadAll(b)
}
