package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/devstack"
)

// The seed log-streamer's own test flow (github.com/Blimeo/log-streamer,
// test.sh) against our distributor: packets exactly as its emitter
// (cmd/emitter/main.go, internal/model/packet.go) builds them, weights
// 0.5/0.3/0.2, two emitters of 5 and 20 messages per packet, analyzer-2
// stopped (test.sh: `docker-compose stop analyzer-2`, i.e. SIGTERM) and
// started again.
//
// The seed's code is not ours to commit, so seedEmitter below re-creates
// its emitter: same JSON shape and field types (timestamp an int64 of Unix
// milliseconds, metadata a map of strings), same field order, same headers,
// the same packet_id string form "<emitter>-<n>" from 1, and up to 3 tries
// on an error or a non-2xx answer. It was checked against the real one by
// hand: the seed's emitter built from its fetched source
//
//	git -C <mirror of Blimeo/log-streamer> archive HEAD | tar -x -C /tmp/dsplab-seed-ls   # 9d714f7, 2025-09-25
//	cd /tmp/dsplab-seed-ls && go build -o /tmp/dsplab-seed-emitter ./cmd/emitter
//	/tmp/dsplab-seed-emitter -target http://127.0.0.1:18080/ingest -rate 200 -concurrency 20 -packet-size 5 -emitter-id emitter-1 -duration 5s &
//	/tmp/dsplab-seed-emitter -target http://127.0.0.1:18080/ingest -rate 200 -concurrency 20 -packet-size 20 -emitter-id emitter-2 -duration 5s
//
// against our distributor, analyzers and devkafka run as `make dev` runs
// them (same binaries and settings, ports 18080/19001-19003/19092) on
// 2026-12-01: 832 + 970 packets sent, 0 errors, 0 non-2xx (its workers
// log "N success, 0 errors"; distributor_requests_total{endpoint="ingest",
// result="accepted"} 1802), messages 11775/7065/4720 = 49.98/29.99/20.03 %,
// every packet processed by the analyzers. Before integer timestamps were
// accepted, every one of its packets was answered 400 ("Time.UnmarshalJSON:
// input is not a JSON string", issue 13).

// seedMessage and seedPacket are the seed's model.LogMessage and
// model.LogPacket, field for field, in its order.
type seedMessage struct {
	Timestamp int64             `json:"timestamp"`
	Level     string            `json:"level"`
	Message   string            `json:"message"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

type seedPacket struct {
	EmitterID string        `json:"emitter_id"`
	Messages  []seedMessage `json:"messages"`
	PacketID  string        `json:"packet_id"`
}

// seedClient is the seed emitter's HTTP client (keep-alive, many idle
// connections per host, no compression).
var seedClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
	MaxIdleConns: 1000, MaxIdleConnsPerHost: 100, MaxConnsPerHost: 200, IdleConnTimeout: 90 * time.Second, DisableCompression: true,
}}

// seedRun is what one run of the emitter saw.
type seedRun struct {
	packets, messages, failed, non2xx atomic.Int64
}

// seedEmitter sends n packets of size messages from `concurrency` workers
// as the seed's emitter with -emitter-id id -packet-size size does.
func seedEmitter(t *testing.T, target, id string, size, n, concurrency int) *seedRun {
	t.Helper()
	r := &seedRun{}
	var seq atomic.Int64
	levels := []string{"INFO", "WARN", "ERROR", "DEBUG"}
	topics := []string{"auth", "database", "api", "cache", "queue"}
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(size)))
			for {
				k := seq.Add(1)
				if k > int64(n) {
					return
				}
				p := seedPacket{EmitterID: id, PacketID: fmt.Sprintf("%s-%d", id, k), Messages: make([]seedMessage, size)}
				for i := range p.Messages {
					p.Messages[i] = seedMessage{
						Timestamp: time.Now().UnixMilli(),
						Level:     levels[rng.IntN(len(levels))],
						Message:   fmt.Sprintf("Sample log message %d from %s", i+1, topics[rng.IntN(len(topics))]),
						Metadata:  map[string]string{"service": "demo-service", "version": "1.0.0", "instance": fmt.Sprintf("instance-%d", rng.IntN(10))},
					}
				}
				if r.send(t, target, p) {
					r.packets.Add(1)
					r.messages.Add(int64(size))
				} else {
					r.failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return r
}

// send posts one packet as the seed's sendPacket does: 3 tries, 100 ms ×
// try between them (the emitter's own backoff, not a wait for readiness).
func (r *seedRun) send(t *testing.T, target string, p seedPacket) bool {
	body, err := json.Marshal(p)
	if err != nil { // runs on the emitter's goroutines: no FailNow here
		t.Error(err)
		return false
	}
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
		}
		req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			t.Error(err)
			return false
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "log-streamer-emitter/1.0")
		req.Header.Set("Connection", "keep-alive")
		resp, err := seedClient.Do(req)
		if err != nil {
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return true
		}
		r.non2xx.Add(1)
	}
	return false
}

// seedPercent is test.sh's integer percentage (shell arithmetic truncates).
func seedPercent(part, total int64) int64 { return part * 100 / total }

func TestTheSeedLogStreamersTestFlowPassesAgainstOurDistributor(t *testing.T) {
	s := devstack.Start(t, bins, devstack.Options{Weights: []float64{0.5, 0.3, 0.2}})
	url := s.Distributor.URL()

	// test.sh: health of the distributor and the analyzers, one packet by curl.
	for _, u := range []string{url, s.Analyzers[0].URL(), s.Analyzers[1].URL(), s.Analyzers[2].URL()} {
		resp, body := get(t, u+"/health")
		require.Equal(t, http.StatusOK, resp.StatusCode, u)
		require.Contains(t, body, "healthy", u)
	}
	resp, body := post(t, url+"/ingest", "application/json", []byte(`{
    "emitter_id": "test-emitter",
    "packet_id": "test-packet-1",
    "messages": [
      {
        "timestamp": 1640995200000,
        "level": "INFO",
        "message": "Test log message",
        "metadata": {"service": "test"}
      }
    ]
  }`), nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	require.Contains(t, body, "accepted")
	_, body = get(t, url+"/metrics-json")
	require.Contains(t, body, "total_packets")

	// Mixed packet sizes: shares are by MESSAGES. test.sh runs each emitter
	// for 3 s at 200 packets/s, concurrency 20; here a fixed 600 packets each.
	base := distributorMetrics(t, s)
	seedEmitters(t, url+"/ingest", "emitter-%d", []int{5, 20}, 20, "every packet of the seed's emitter answered 2xx at the first try")
	mixed := distributorMetrics(t, s)
	delta := deltaMessages(base, mixed)
	total := delta["analyzer-1"] + delta["analyzer-2"] + delta["analyzer-3"]
	require.EqualValues(t, 600*5+600*20, total, "every message routed")
	got := shares(delta)
	t.Logf("mixed sizes: messages %v, shares %v", delta, got)
	for id, want := range map[string]float64{"analyzer-1": 0.5, "analyzer-2": 0.3, "analyzer-3": 0.2} {
		require.InDelta(t, want*100, float64(seedPercent(delta[id], total)), 10, "%s: test.sh's tolerance, ±10 points", id)
		// Ours: smooth weighted round-robin on message credit keeps every
		// analyzer within about one packet (20 messages) of its share.
		require.InDelta(t, want, got[id], 0.01, "%s message share", id)
	}

	// Beyond test.sh: nothing accepted is lost.
	waitProcessed(t, s, 60*time.Second)

	// test.sh: docker-compose stop analyzer-2 (SIGTERM), then
	// '"healthy_analyzers":2' in /health.
	a2 := s.Analyzers[1]
	a2.Stop()
	s.WaitHealthy(t, 2, 10*time.Second)
	_, body = get(t, url+"/health")
	require.Contains(t, body, `"healthy_analyzers":2`)

	// The rest share by relative weight: 5/7 ≈ 71 % and 2/7 ≈ 29 %
	// (test.sh: two emitters of 8 and 12 messages per packet).
	before := distributorMetrics(t, s)
	seedEmitters(t, url+"/ingest", "offline-test-%d", []int{8, 12}, 25, "the distributor keeps accepting with analyzer-2 stopped")
	after := distributorMetrics(t, s)
	delta = deltaMessages(before, after)
	require.Zero(t, delta["analyzer-2"], "nothing routed to the stopped analyzer")
	total = delta["analyzer-1"] + delta["analyzer-3"]
	require.EqualValues(t, 600*8+600*12, total)
	t.Logf("analyzer-2 stopped: messages %v, analyzer-1 %d%%, analyzer-3 %d%%", delta, seedPercent(delta["analyzer-1"], total), seedPercent(delta["analyzer-3"], total))
	require.InDelta(t, 71, seedPercent(delta["analyzer-1"], total), 10, "test.sh: analyzer-1 ~71 %% ±10")
	require.InDelta(t, 29, seedPercent(delta["analyzer-3"], total), 10, "test.sh: analyzer-3 ~29 %% ±10")
	got = shares(map[string]int64{"analyzer-1": delta["analyzer-1"], "analyzer-3": delta["analyzer-3"]})
	require.InDelta(t, 0.5/0.7, got["analyzer-1"], 0.01)
	require.InDelta(t, 0.2/0.7, got["analyzer-3"], 0.01)

	// test.sh: docker-compose start analyzer-2, then '"healthy_analyzers":3'.
	require.NoError(t, a2.Start())
	s.WaitHealthy(t, 3, 15*time.Second)
	_, body = get(t, url+"/health")
	require.Contains(t, body, `"healthy_analyzers":3`)

	// Beyond test.sh: the other two processed everything routed to them
	// while analyzer-2 was away (its /stats restarted at 0 with it).
	devstack.Eventually(t, 60*time.Second, func() bool {
		st, routed := analyzerStats(t, s), distributorMetrics(t, s)
		return st["analyzer-1"].PacketsProcessed == routed.PacketsByAnalyzer["analyzer-1"] &&
			st["analyzer-3"].PacketsProcessed == routed.PacketsByAnalyzer["analyzer-3"] && routed.QueueDepth["analyzer-2"] == 0
	}, "analyzer-1 and analyzer-3 did not process everything routed to them")
}

func deltaMessages(from, to metricsJSON) map[string]int64 {
	out := map[string]int64{}
	for id, v := range to.MessagesByAnalyzer {
		out[id] = v - from.MessagesByAnalyzer[id]
	}
	return out
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, strings.TrimSpace(string(b))
}

// seedEmitters runs one seed emitter per packet size side by side, as
// test.sh starts them (600 packets each, ids named by idFormat with 1, 2...),
// and requires that every packet was answered 2xx.
func seedEmitters(t *testing.T, url, idFormat string, sizes []int, concurrency int, why string) {
	t.Helper()
	var wg sync.WaitGroup
	runs := make([]*seedRun, len(sizes))
	for i, size := range sizes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i] = seedEmitter(t, url, fmt.Sprintf(idFormat, i+1), size, 600, concurrency)
		}()
	}
	wg.Wait()
	for _, r := range runs {
		require.Zero(t, r.non2xx.Load(), why)
		require.Zero(t, r.failed.Load())
	}
}
