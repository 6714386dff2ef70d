package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Read calls visit with every record of topic, partition by partition in
// offset order, from the first record (or, with since set, the first whose
// timestamp is at or after since) up to the end of each partition as it is
// when Read starts: records produced meanwhile are not waited for. It reads
// any topic (ledger.processed, logs.<analyzer>), so a checker can read both
// sides with it. visit returning an error stops Read with that error.
func Read(ctx context.Context, brokers []string, topic string, since time.Time, visit func(kafka.Message) error) error {
	if len(brokers) == 0 {
		return errors.New("read topic: no broker")
	}
	conn, err := kafka.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return fmt.Errorf("read %s: partitions: %w", topic, err)
	}
	for _, p := range parts {
		if err := readPartition(ctx, brokers, topic, p.ID, since, visit); err != nil {
			return err
		}
	}
	return nil
}

func readPartition(ctx context.Context, brokers []string, topic string, partition int, since time.Time, visit func(kafka.Message) error) error {
	leader, err := kafka.DialLeader(ctx, "tcp", brokers[0], topic, partition)
	if err != nil {
		return fmt.Errorf("read %s/%d: %w", topic, partition, err)
	}
	first, end, err := leader.ReadOffsets()
	if err == nil && !since.IsZero() {
		first, err = leader.ReadOffset(since)
	}
	leader.Close()
	if err != nil {
		return fmt.Errorf("read %s/%d: offsets: %w", topic, partition, err)
	}
	if first < 0 || first >= end { // nothing (or nothing since): done
		return nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: partition,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 250 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		return fmt.Errorf("read %s/%d: %w", topic, partition, err)
	}
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return fmt.Errorf("read %s/%d at %d: %w", topic, partition, r.Offset(), err)
		}
		if err := visit(m); err != nil {
			return err
		}
		if m.Offset >= end-1 {
			return nil
		}
	}
}
