// Package pipeline accepts one decoded packet: it picks the analyzer,
// encodes the envelope and writes it to that analyzer's topic, and counts
// what was routed where.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/dsplab/dsplab/distributor/internal/metrics"
	"github.com/dsplab/dsplab/distributor/internal/produce"
	"github.com/dsplab/dsplab/internal/envelope"
	"github.com/dsplab/dsplab/internal/telemetry"
)

// ErrNoAnalyzer means no analyzer is routable (all down or drained).
var ErrNoAnalyzer = errors.New("no healthy analyzer")

// Router picks an analyzer for a packet.
type Router interface {
	Pick(tenant string, size int) (string, bool)
}

// Producer writes one record and waits for the acknowledgement.
type Producer interface {
	Produce(ctx context.Context, r produce.Record) error
}

// Layout says how topics are named and records keyed; it can change on
// reload, so it is read per packet.
type Layout interface {
	Topic(analyzerID string) string
	KeyByTenant() bool
}

// Pipeline is safe for concurrent use.
type Pipeline struct {
	router   Router
	producer Producer
	layout   Layout
	inst     *metrics.Instruments
	counts   sync.Map // analyzer id → *Counts
	packets  atomic.Int64
	messages atomic.Int64
}

// Counts are per-analyzer totals of accepted packets and messages.
type Counts struct {
	Packets, Messages atomic.Int64
	attr              telemetry.Opts // analyzer=id, built once
}

// New returns a pipeline.
func New(r Router, p Producer, l Layout, inst *metrics.Instruments) *Pipeline {
	return &Pipeline{router: r, producer: p, layout: l, inst: inst}
}

// Accept routes env to one analyzer and writes it to Kafka. On success the
// packet is in Kafka (acknowledged) and the analyzer id is returned.
func (p *Pipeline) Accept(ctx context.Context, env *envelope.Envelope) (string, error) {
	id, ok := p.router.Pick(env.Tenant, len(env.Messages))
	if !ok {
		return "", ErrNoAnalyzer
	}
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("dsplab.analyzer", id), attribute.String("dsplab.tenant", env.Tenant),
		attribute.String("dsplab.packet_id", env.PacketID), attribute.Int("dsplab.messages", len(env.Messages)))
	value, err := env.Marshal()
	if err != nil {
		return "", fmt.Errorf("encode envelope: %w", err)
	}
	key := []byte(env.PacketID)
	if p.layout.KeyByTenant() {
		key = []byte(env.Tenant) // one partition per tenant keeps its order
	}
	rec := produce.Record{
		Topic: p.layout.Topic(id), Key: key, Value: value,
		Headers: []kafka.Header{{Key: envelope.HeaderTenant, Value: []byte(env.Tenant)}, {Key: envelope.HeaderPacketID, Value: []byte(env.PacketID)}},
	}
	if err := p.producer.Produce(ctx, rec); err != nil {
		return id, err
	}
	n := int64(len(env.Messages))
	c := p.countsFor(id)
	c.Packets.Add(1)
	c.Messages.Add(n)
	p.packets.Add(1)
	p.messages.Add(n)
	p.inst.Packets.Add(ctx, 1)
	p.inst.Messages.Add(ctx, n)
	p.inst.RoutedPackets.Add(ctx, 1, c.attr.Add...)
	p.inst.RoutedMessages.Add(ctx, n, c.attr.Add...)
	return id, nil
}

func (p *Pipeline) countsFor(id string) *Counts {
	if c, ok := p.counts.Load(id); ok {
		return c.(*Counts)
	}
	c, _ := p.counts.LoadOrStore(id, &Counts{attr: telemetry.NewOpts(attribute.String("analyzer", id))})
	return c.(*Counts)
}

// Totals returns accepted packets and messages, overall and per analyzer.
func (p *Pipeline) Totals() (packets, messages int64, byAnalyzer map[string][2]int64) {
	byAnalyzer = map[string][2]int64{}
	p.counts.Range(func(k, v any) bool {
		c := v.(*Counts)
		byAnalyzer[k.(string)] = [2]int64{c.Packets.Load(), c.Messages.Load()}
		return true
	})
	return p.packets.Load(), p.messages.Load(), byAnalyzer
}
