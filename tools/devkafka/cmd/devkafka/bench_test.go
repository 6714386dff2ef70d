package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// BenchmarkProduceLatency is what kfake's segment size does to the
// latency of a produce (issue 18, docs/BENCHMARKS.md): each op writes 64
// records of 1 KiB to one partition with kafka-go and waits for the ack;
// the p99.9 and the longest op are reported. kfake grows a partition's
// active segment by doubling one slice (a copy of everything so far), in
// the goroutine that serves every request, so with kfake's default 100
// MiB segments an op now and then waits for a copy of up to 64 MB; with
// devkafka's 8 MiB, of 4 MB at most. Run with -benchtime 3000x (192 MB)
// so that the large segments grow past 64 MB.
func BenchmarkProduceLatency(b *testing.B) {
	for _, seg := range []int64{100 << 20, 8 << 20} {
		b.Run(fmt.Sprintf("segment=%dMiB", seg>>20), func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			c, err := newCluster(addr, "", 1, seg)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "bench", AllowAutoTopicCreation: true,
				BatchSize: 64, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireOne}
			defer w.Close()
			msgs := make([]kafka.Message, 64)
			for i := range msgs {
				msgs[i] = kafka.Message{Value: make([]byte, 1024)}
			}
			ctx := context.Background()
			if err := w.WriteMessages(ctx, msgs...); err != nil { // creates the topic
				b.Fatal(err)
			}
			lat := make([]time.Duration, 0, b.N)
			b.SetBytes(64 * 1024)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				if err := w.WriteMessages(ctx, msgs...); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)*999/1000].Microseconds())/1000, "p99.9-ms")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
		})
	}
}
