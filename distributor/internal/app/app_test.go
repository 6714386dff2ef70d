package app

// These tests run the whole distributor (App: its real HTTP server on
// 127.0.0.1:0, pool, producer, reload) against kfake, a real
// Kafka-protocol broker in process, with analyzers that only answer
// /health: what is under test is the distributor's side of delivery.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/dsplab/dsplab/distributor/internal/config"
	"github.com/dsplab/dsplab/distributor/internal/produce"
	"github.com/dsplab/dsplab/internal/telemetry"
)

type stack struct {
	app       *App
	url       string
	brokers   []string
	analyzers []*httptest.Server
	path      string // the config file
	metrics   *sdkmetric.ManualReader
}

// healthy is an analyzer as the distributor sees it: GET /health, 200.
func healthy(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"status":"healthy"}`)
	}))
	t.Cleanup(s.Close)
	return s
}

// startStack runs the distributor with two analyzers and a config file of
// extra YAML (top-level sections other than kafka and analyzers).
func startStack(t *testing.T, extra string) *stack {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	s := &stack{brokers: c.ListenAddrs(), analyzers: []*httptest.Server{healthy(t), healthy(t)}}
	s.path = filepath.Join(t.TempDir(), "distributor.yaml")
	file := fmt.Sprintf("kafka:\n  brokers: [%q]\n  request_timeout: 3s\n  write_timeout: 1s\nanalyzers:\n  - {id: analyzer-1, url: %q, weight: 0.5}\n  - {id: analyzer-2, url: %q, weight: 0.5}\nhealth: {interval: 200ms, timeout: 100ms}\n%s",
		s.brokers[0], s.analyzers[0].URL, s.analyzers[1].URL, extra)
	require.NoError(t, os.WriteFile(s.path, []byte(file), 0o644))
	s.metrics = sdkmetric.NewManualReader()
	tel := &telemetry.Providers{TracerProvider: noop.NewTracerProvider(), MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(s.metrics)), MetricsHandler: http.NotFoundHandler()}
	s.app, err = New(Options{ConfigPath: s.path, Getenv: func(string) string { return "" }, Listen: "127.0.0.1:0", Telemetry: tel, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("the distributor did not stop within 15 s")
		}
	})
	s.url = "http://" + s.app.Addr()
	eventually(t, 10*time.Second, func() bool { return s.app.ready() == nil }, "the distributor is not ready")
	return s
}

func eventually(t *testing.T, within time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var client = &http.Client{Timeout: 10 * time.Second}

func (s *stack) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func packet(emitter string, id int) string {
	return fmt.Sprintf(`{"emitter_id":%q,"packet_id":%d,"messages":[{"level":"info","message":"m"}]}`, emitter, id)
}

// records is the number of records in topic (its end offset; one partition).
func (s *stack) records(t *testing.T, topic string) int64 {
	t.Helper()
	conn, err := kafka.DialLeader(context.Background(), "tcp", s.brokers[0], topic, 0)
	if err != nil {
		return 0 // no such topic: nothing in it
	}
	defer conn.Close()
	n, err := conn.ReadLastOffset()
	require.NoError(t, err)
	return n
}

// An overlay pointing an analyzer or the writer elsewhere is refused
// (packets were answered 202 and never read), and nothing changes.
func TestAnOverlayThatMovesEndpointsIsRefusedAndChangesNothing(t *testing.T) {
	s := startStack(t, "")
	before := s.app.cfg.Load()
	for _, overlay := range []string{
		fmt.Sprintf(`{"analyzers":[{"id":"analyzer-1","url":"http://foreign.example:9001","weight":1},{"id":"analyzer-2","url":%q,"weight":1}]}`, s.analyzers[1].URL),
		`{"kafka":{"brokers":["foreign.example:9092"]}}`,
		`{"kafka":{"topic_prefix":"nobody."}}`,
	} {
		code, body := s.do(t, http.MethodPut, "/admin/config", overlay)
		require.Equal(t, http.StatusBadRequest, code, body)
		require.Contains(t, body, "reload.allow_endpoint_changes")
	}
	require.Equal(t, before, s.app.cfg.Load(), "the configuration in force is the same")
	code, body := s.do(t, http.MethodGet, "/admin/config", "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"overlay":""}`, body)
	code, body = s.do(t, http.MethodPost, "/ingest", packet("e", 1))
	require.Equal(t, http.StatusAccepted, code, body)
}

// With the file's permission an overlay may move an analyzer and the topic
// prefix under traffic, and every packet answered 2xx is in Kafka: packets
// in flight finish on the writer and topic they started with.
func TestEndpointChangesAllowedByTheFileLoseNoAcceptedPacket(t *testing.T) {
	s := startStack(t, "reload: {allow_endpoint_changes: true}\n")
	cfg := s.app.cfg.Load()
	require.NoError(t, produce.NewAdmin(cfg.Kafka).EnsureTopics(t.Context(), []string{"moved.analyzer-1", "moved.analyzer-2"}, 1, 1))
	spare := healthy(t)

	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Post(s.url+"/ingest", "application/json", strings.NewReader(packet(fmt.Sprintf("w%d", w), i)))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				mu.Unlock()
			}
		}()
	}
	accepted := func() int { mu.Lock(); defer mu.Unlock(); return statuses[http.StatusAccepted] }
	eventually(t, 10*time.Second, func() bool { return accepted() > 100 }, "no traffic")
	code, body := s.do(t, http.MethodPut, "/admin/config", fmt.Sprintf(`{"analyzers":[{"id":"analyzer-1","url":%q,"weight":0.5},{"id":"analyzer-2","url":%q,"weight":0.5}]}`, spare.URL, s.analyzers[1].URL))
	require.Equal(t, http.StatusOK, code, body)
	n := accepted()
	eventually(t, 10*time.Second, func() bool { return accepted() > n+100 }, "no traffic after the URL change")
	code, body = s.do(t, http.MethodPut, "/admin/config", fmt.Sprintf(`{"kafka":{"topic_prefix":"moved."},"analyzers":[{"id":"analyzer-1","url":%q,"weight":0.5},{"id":"analyzer-2","url":%q,"weight":0.5}]}`, spare.URL, s.analyzers[1].URL))
	require.Equal(t, http.StatusOK, code, body)
	n = accepted()
	// analyzer-1's new address routes only once a probe found it up (a new
	// address counts as down until then): wait for its records under the
	// new prefix, not only for more answers.
	eventually(t, 10*time.Second, func() bool { return accepted() > n+100 && s.records(t, "moved.analyzer-1") > 0 },
		"no traffic to analyzer-1 under the new prefix")
	close(stop)
	wg.Wait()

	var inKafka int64
	for _, topic := range []string{"logs.analyzer-1", "logs.analyzer-2", "moved.analyzer-1", "moved.analyzer-2"} {
		inKafka += s.records(t, topic)
	}
	require.Greater(t, s.records(t, "moved.analyzer-1"), int64(0), "the new prefix is used")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, int64(statuses[http.StatusAccepted]), inKafka, "every 202 is a record in Kafka (answers: %v)", statuses)
	for code := range statuses {
		require.Contains(t, []int{http.StatusAccepted, http.StatusServiceUnavailable}, code, "answers: %v", statuses)
	}
}

// Every GET that shows configuration hides the secrets: /configz, the
// overlay itself, and the analyzers' URLs; an overlay read back and set
// again keeps them.
func TestSecretsAreRedactedInEveryGETAndKeptWhenTheOverlayIsSetBack(t *testing.T) {
	s := startStack(t, "reload: {allow_endpoint_changes: true}\n")
	secretURL := strings.Replace(s.analyzers[0].URL, "http://", "http://probe:s3cret@", 1)
	overlay := fmt.Sprintf(`{"kafka":{"sasl_password":"hunter2"},"analyzers":[{"id":"analyzer-1","url":%q,"weight":0.5},{"id":"analyzer-2","url":%q,"weight":0.5}]}`, secretURL, s.analyzers[1].URL)
	code, body := s.do(t, http.MethodPut, "/admin/config", overlay)
	require.Equal(t, http.StatusOK, code, body)
	shown := map[string]string{}
	for _, path := range []string{"/configz", "/configz?format=json", "/admin/config", "/admin/analyzers"} {
		code, body := s.do(t, http.MethodGet, path, "")
		require.Equal(t, http.StatusOK, code, body)
		require.NotContains(t, body, "hunter2", path)
		require.NotContains(t, body, "s3cret", path)
		shown[path] = body
	}
	require.Contains(t, shown["/configz"], "<redacted>")
	require.Contains(t, shown["/admin/analyzers"], "probe:xxxxx@")
	var ov struct {
		Overlay string `json:"overlay"`
	}
	require.NoError(t, jsonUnmarshal(shown["/admin/config"], &ov))
	require.Contains(t, ov.Overlay, "<redacted>")
	code, body = s.do(t, http.MethodPut, "/admin/config", ov.Overlay)
	require.Equal(t, http.StatusOK, code, body)
	cfg := s.app.cfg.Load()
	require.Equal(t, "hunter2", cfg.Kafka.SASLPassword, "set back as shown, the secret stays")
	require.Equal(t, secretURL, cfg.Analyzers[0].URL)
	require.Equal(t, config.Redaction, cfg.Redacted().Kafka.SASLPassword)
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// counter reads the value of an int64 counter's series with exactly attrs.
func (s *stack) counter(t *testing.T, name string, attrs map[string]string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, s.metrics.Collect(context.Background(), &rm))
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if m.Name != name || !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				match := dp.Attributes.Len() == len(attrs)
				for k, v := range attrs {
					got, ok := dp.Attributes.Value(attribute.Key(k))
					match = match && ok && got.AsString() == v
				}
				if match {
					return dp.Value
				}
			}
		}
	}
	return 0
}
