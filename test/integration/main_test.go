// Package integration runs the real distributor, analyzers and devkafka
// binaries as separate processes on loopback and checks the pipeline's
// behaviour end to end: routing shares, crash detection and recovery, no
// loss, Loki clients, reload, rate limits and a Kafka outage. No Docker is
// needed; the Docker end-to-end suite lives in test/e2e/.
package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/devstack"
)

var bins devstack.Binaries

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dsplab-integration-")
	if err != nil {
		panic(err)
	}
	bins, err = devstack.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var client = &http.Client{Timeout: 10 * time.Second}

// load sends n packets of 1..maxMsgs messages from `workers` emitters and
// counts the answers by status code. Packet ids increase per emitter.
type load struct {
	mu       sync.Mutex
	statuses map[int]int
	accepted atomic.Int64
	msgs     atomic.Int64
	retry    []string
}

// sendCalls makes emitter ids unique per send call: each call restarts
// packet ids at 0, and the analyzers rightly treat a repeated
// (emitter, packet id) as a duplicate.
var sendCalls atomic.Int64

func send(t *testing.T, url string, n, workers, maxMsgs int, tenant string) *load {
	t.Helper()
	l := &load{statuses: map[int]int{}}
	call := sendCalls.Add(1)
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for seq := 0; ; seq++ {
				if next.Add(1) > int64(n) {
					return
				}
				size := 1 + rng.IntN(maxMsgs)
				code, retry := postPacket(t, url, tenant, fmt.Sprintf("%s-%d-emitter-%d", t.Name(), call, w), seq, size)
				l.mu.Lock()
				l.statuses[code]++
				if retry != "" {
					l.retry = append(l.retry, retry)
				}
				l.mu.Unlock()
				if code == http.StatusAccepted {
					l.accepted.Add(1)
					l.msgs.Add(int64(size))
				}
			}
		}()
	}
	wg.Wait()
	return l
}

func postPacket(t *testing.T, url, tenant, emitter string, id, size int) (int, string) {
	var b strings.Builder
	fmt.Fprintf(&b, `{"emitter_id":%q,"packet_id":%d,"messages":[`, emitter, id)
	levels := []string{"info", "warn", "error", "debug"}
	for i := 0; i < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"level":%q,"message":"message %d of packet %d with some padding to look like a log line"}`, levels[i%4], i, id)
	}
	b.WriteString("]}")
	req, _ := http.NewRequest(http.MethodPost, url+"/ingest", strings.NewReader(b.String()))
	req.Header.Set("Content-Type", "application/json")
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

type metricsJSON struct {
	TotalPackets       int64            `json:"total_packets"`
	TotalMessages      int64            `json:"total_messages"`
	PacketsByAnalyzer  map[string]int64 `json:"packets_by_analyzer"`
	MessagesByAnalyzer map[string]int64 `json:"messages_by_analyzer"`
	QueueDepth         map[string]int64 `json:"queue_depth_by_analyzer"`
	HealthyAnalyzers   int              `json:"healthy_analyzers"`
}

type stats struct {
	PacketsProcessed  int64            `json:"packets_processed"`
	MessagesProcessed int64            `json:"messages_processed"`
	DuplicatePackets  int64            `json:"duplicate_packets"`
	MessagesByLevel   map[string]int64 `json:"messages_by_level"`
	MessagesByTenant  map[string]int64 `json:"messages_by_tenant"`
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

func distributorMetrics(t *testing.T, s *devstack.Stack) metricsJSON {
	var m metricsJSON
	getJSON(t, s.Distributor.URL()+"/metrics-json", &m)
	return m
}

func analyzerStats(t *testing.T, s *devstack.Stack) map[string]stats {
	out := map[string]stats{}
	for _, a := range s.Analyzers {
		var st stats
		getJSON(t, a.URL()+"/stats", &st)
		out[a.Name] = st
	}
	return out
}

func post(t *testing.T, url, contentType string, body []byte, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func fmtSscan(s string, v *float64) (int, error) { return fmt.Sscan(s, v) }
