//go:build bench

package bench

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/dsplab/dsplab/internal/devstack"
	"github.com/dsplab/dsplab/internal/envelope"
)

// TestDeliveryModesBenchmark measures what each delivery mode costs an
// analyzer: how fast one analyzer drains a backlog of N packets (5
// messages each) already in its topic, with the ledger off and under each
// mode. It runs the real analyzer binary against devkafka (kfake, in
// memory: a real Kafka's disk and replication would make the ledger's
// acks=all writes dearer). BENCH_DELIVERY_PACKETS sets N (20,000).
func TestDeliveryModesBenchmark(t *testing.T) {
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("BENCH_DELIVERY_PACKETS")); err == nil && v > 0 {
		n = v
	}
	bins, err := devstack.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	type run struct{ name, env string }
	runs := []run{{"ledger off (at-least-once)", "LEDGER_TOPIC="}, {"at-most-once", "DELIVERY=at-most-once"},
		{"at-least-once", "DELIVERY=at-least-once"}, {"effectively-once", "DELIVERY=effectively-once"}}
	fmt.Printf("delivery modes: one analyzer draining %d packets of 5 messages (packets/s, best of 2)\n", n)
	fmt.Printf("| %-28s | %10s |\n|---|---:|\n", "analyzer", "packets/s")
	for _, r := range runs {
		best := 0.0
		for range 2 {
			best = max(best, drain(t, bins, r.env, n))
		}
		fmt.Printf("| %-28s | %10.0f |\n", r.name, best)
	}
}

// drain fills logs.analyzer-1 with n packets while its analyzer is stopped,
// starts it, and measures from its first processed packet to its last.
func drain(t *testing.T, bins devstack.Binaries, env string, n int) float64 {
	s := devstack.Start(t, bins, devstack.Options{Weights: []float64{1}, AnalyzerEnv: []string{"LOG_LEVEL=error", env}})
	a := s.Analyzers[0]
	a.Stop() // SIGTERM: it leaves its group, so the restart takes the partition at once
	w := &kafka.Writer{Addr: kafka.TCP(s.KafkaAddr), Topic: "logs.analyzer-1", BatchTimeout: 5 * time.Millisecond, BatchSize: 1000}
	defer w.Close()
	batch := make([]kafka.Message, 0, 1000)
	for i := range n {
		env := envelope.Envelope{Tenant: "default", PacketID: fmt.Sprintf("bench-1-%d", i), EmitterID: "bench-1", ReceivedAt: time.Now(), Source: "ingest"}
		for j := range 5 {
			env.Messages = append(env.Messages, envelope.Message{Timestamp: time.Now(), Level: "info", Message: fmt.Sprintf("message %d: user=42 action=checkout status=ok", j)})
		}
		b, _ := env.Marshal()
		batch = append(batch, kafka.Message{Key: []byte(env.PacketID), Value: b})
		if len(batch) == cap(batch) || i == n-1 {
			if err := w.WriteMessages(t.Context(), batch...); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	processed := func() int64 {
		resp, err := http.Get(a.URL() + "/stats")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		var st struct {
			PacketsProcessed int64 `json:"packets_processed"`
		}
		json.NewDecoder(resp.Body).Decode(&st)
		return st.PacketsProcessed
	}
	var start time.Time
	devstack.Eventually(t, 60*time.Second, func() bool {
		if processed() > 0 {
			start = time.Now()
			return true
		}
		return false
	}, "nothing processed")
	devstack.Eventually(t, 10*time.Minute, func() bool { return processed() >= int64(n) }, "not drained")
	took := time.Since(start)
	for _, p := range append([]*devstack.Proc{s.Distributor}, s.Analyzers...) {
		p.Stop()
	}
	s.Kafka.Stop()
	return float64(n-1) / took.Seconds()
}
