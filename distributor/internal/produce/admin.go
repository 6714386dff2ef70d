package produce

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"

	"github.com/dsplab/dsplab/distributor/internal/config"
)

func transport(cfg config.Kafka) *kafka.Transport {
	t := &kafka.Transport{DialTimeout: 2 * time.Second, IdleTimeout: 30 * time.Second, ClientID: "dsplab-distributor"}
	if cfg.SASLUser != "" {
		t.SASL = plain.Mechanism{Username: cfg.SASLUser, Password: cfg.SASLPassword}
	}
	return t
}

// Admin creates topics and reads consumer lag.
type Admin struct {
	client *kafka.Client
}

// NewAdmin returns an admin client for cfg's brokers.
func NewAdmin(cfg config.Kafka) *Admin {
	return &Admin{client: &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 5 * time.Second, Transport: transport(cfg)}}
}

// EnsureTopics creates the topics that do not exist yet.
func (a *Admin) EnsureTopics(ctx context.Context, topics []string, partitions, replication int) error {
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t, NumPartitions: partitions, ReplicationFactor: replication})
	}
	resp, err := a.client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	var errs []error
	for t, e := range resp.Errors {
		if e != nil && !errors.Is(e, kafka.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %s: %w", t, e))
		}
	}
	return errors.Join(errs...)
}

// Lag returns the consumer lag of group on topic: the sum over partitions
// of end offset minus committed offset (minus the first offset when the
// group has committed nothing yet).
func (a *Admin) Lag(ctx context.Context, topic, group string) (int64, error) {
	meta, err := a.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("metadata %s: %w", topic, err)
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		return 0, fmt.Errorf("metadata %s: topic not found", topic)
	}
	var parts []int
	var reqs []kafka.OffsetRequest
	for _, p := range meta.Topics[0].Partitions {
		parts = append(parts, p.ID)
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	offs, err := a.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return 0, fmt.Errorf("list offsets %s: %w", topic, err)
	}
	committed, err := a.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return 0, fmt.Errorf("offset fetch %s/%s: %w", topic, group, err)
	}
	first, last := map[int]int64{}, map[int]int64{}
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			return 0, fmt.Errorf("list offsets %s/%d: %w", topic, po.Partition, po.Error)
		}
		if po.FirstOffset >= 0 {
			first[po.Partition] = po.FirstOffset
		}
		if po.LastOffset >= 0 {
			last[po.Partition] = po.LastOffset
		}
	}
	done := map[int]int64{}
	for _, pc := range committed.Topics[topic] {
		if pc.CommittedOffset >= 0 {
			done[pc.Partition] = pc.CommittedOffset
		}
	}
	var lag int64
	for _, part := range parts {
		from, ok := done[part]
		if !ok { // an unknown group or a partition never committed
			from = first[part]
		}
		lag += max(last[part]-from, 0)
	}
	return lag, nil
}
