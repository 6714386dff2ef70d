package produce

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// BenchmarkProduce writes seed-sized records (900 bytes, a packet key)
// through the Producer to an in-process kfake broker: one at a time (a
// produce request per record, as under light load) and from 32 goroutines
// (records gather into batches, as at saturation). kfake shares the
// process, so ns/op is the whole round trip on this machine's cores,
// broker included; B/op and allocs/op are the client's and the broker's
// together.
func BenchmarkProduce(b *testing.B) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "logs.bench"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cfg := kafkaConfig(c.ListenAddrs()...)
	cfg.RequestTimeout = 10 * time.Second
	cfg.BatchTimeout = 0 // no linger: ns/op is the round trip, not the 1 ms a lone record waits
	p := New(cfg, Options{})
	defer p.Close()
	value := make([]byte, 900)
	if err := p.Produce(context.Background(), Record{Topic: "logs.bench", Value: value}); err != nil {
		b.Fatal(err)
	}
	var id atomic.Int64
	produce := func(b *testing.B) bool {
		key := []byte(strconv.FormatInt(id.Add(1), 10))
		if err := p.Produce(context.Background(), Record{Topic: "logs.bench", Key: key, Value: value}); err != nil {
			b.Error(err)
			return false
		}
		return true
	}
	b.Run("one-at-a-time", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !produce(b) {
				return
			}
		}
	})
	b.Run("32-at-once", func(b *testing.B) {
		b.SetParallelism(16) // 32 goroutines on 2 cores
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !produce(b) {
					return
				}
			}
		})
	})
}
