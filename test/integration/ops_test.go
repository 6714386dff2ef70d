package integration

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/devstack"
)

func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := client.Get(url + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})?) ([^ ]+)`)
	for sc.Scan() {
		if m := line.FindStringSubmatch(sc.Text()); m != nil {
			var v float64
			_, _ = fmtSscan(m[3], &v)
			out[m[1]] = v
		}
	}
	return out
}

func names(series map[string]float64) map[string]bool {
	out := map[string]bool{}
	for s := range series {
		out[strings.SplitN(s, "{", 2)[0]] = true
	}
	return out
}

// Every distributor and analyzer metric name the product promises
// (designMetrics) is exposed on
// /metrics, so a renamed metric breaks this test, not a dashboard.
func TestEveryDesignMetricNameIsExposed(t *testing.T) {
	s := devstack.Start(t, bins, devstack.Options{})
	send(t, s.Distributor.URL(), 50, 2, 5, "")
	waitProcessed(t, s, 20*time.Second)
	dist := names(scrape(t, s.Distributor.URL()))
	for _, n := range []string{
		"distributor_requests_total", "distributor_request_duration_seconds_bucket", "distributor_request_bytes_total",
		"distributor_packets_total", "distributor_messages_total", "distributor_routed_packets_total", "distributor_routed_messages_total",
		"distributor_kafka_write_duration_seconds_bucket", "distributor_kafka_write_errors_total", "distributor_kafka_consecutive_errors", "distributor_kafka_batch_records_bucket",
		"distributor_rate_limited_total", "distributor_analyzer_up", "distributor_healthy_analyzers", "distributor_analyzers",
		"distributor_analyzer_breaker_state", "distributor_analyzer_weight", "distributor_queue_depth", "distributor_health_up",
		"distributor_sla_success_ratio", "distributor_config_last_reload_successful", "distributor_build_info",
		"distributor_analyzer_breaker_transitions_total", "distributor_analyzer_up_transitions_total",
		"distributor_connections_shed_total",
	} {
		require.True(t, dist[n], "distributor does not expose %s", n)
	}
	an := names(scrape(t, s.Analyzers[0].URL()))
	for _, n := range []string{
		"analyzer_packets_processed_total", "analyzer_messages_processed_total", "analyzer_duplicate_packets_total",
		"analyzer_processing_duration_seconds_bucket", "analyzer_end_to_end_latency_seconds_bucket", "analyzer_consumer_lag",
		"analyzer_unreadable_records_total", "analyzer_delivery_mode", "analyzer_ledger_records_total",
		"analyzer_ledger_write_errors_total", "analyzer_redeliveries_skipped_total",
	} {
		require.True(t, an[n], "analyzer does not expose %s", n)
	}
}

// Over limits.max_connections the real distributor answers a new
// connection with a fast 503 and Retry-After (idle keep-alive connections
// hold their slots), counts it, and serves again once a slot is free.
func TestConnectionsOverTheCapGetAFast503AndAreCounted(t *testing.T) {
	s := devstack.Start(t, bins, devstack.Options{DistributorConfig: "limits:\n  max_connections: 2\n"})
	url := s.Distributor.URL()
	// devstack.Start's readiness polling may still hold a connection open;
	// hold both slots with our own idle keep-alive connections.
	keepers := []*http.Client{{Transport: &http.Transport{}}, {Transport: &http.Transport{}}}
	held := 0
	for _, k := range keepers {
		if resp, err := k.Get(url + "/health"); err == nil {
			io.Copy(io.Discard, resp.Body) // read to the end, or the connection is not kept
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				held++
			}
		}
	}
	require.Positive(t, held)
	fresh := func() *http.Client {
		return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	}
	var resp *http.Response
	require.Eventually(t, func() bool { // the harness's own connections close within its idle timeout
		r, err := fresh().Post(url+"/ingest", "application/json", strings.NewReader(`{"emitter_id":"e","packet_id":1,"messages":[{"message":"m"}]}`))
		if err != nil {
			return false
		}
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		resp = r
		return r.StatusCode == http.StatusServiceUnavailable
	}, 30*time.Second, 50*time.Millisecond, "a connection over the cap must get a 503")
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	for _, k := range keepers {
		k.CloseIdleConnections()
	}
	http.DefaultClient.CloseIdleConnections() // devstack's readiness polling
	require.Eventually(t, func() bool {
		r, err := fresh().Get(url + "/metrics")
		if err != nil {
			return false
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode == http.StatusOK && regexp.MustCompile(`(?m)^distributor_connections_shed_total(\{[^}]*\})? [1-9]`).Match(b)
	}, 10*time.Second, 50*time.Millisecond, "once the slots are free the distributor serves again and counts what it shed")
}

func TestRateLimitsAnswer429WithRetryAfterAndNoKafkaErrors(t *testing.T) {
	s := devstack.Start(t, bins, devstack.Options{DistributorConfig: "limits:\n  global: {rate: 100, burst: 50}\n  per_tenant: {rate: 20, burst: 10}\n"})
	l := send(t, s.Distributor.URL(), 300, 8, 3, "noisy")
	require.Greater(t, l.statuses[http.StatusTooManyRequests], 200)
	require.Greater(t, l.statuses[http.StatusAccepted], 9)
	require.Equal(t, 300, l.statuses[http.StatusTooManyRequests]+l.statuses[http.StatusAccepted])
	for _, ra := range l.retry {
		require.Regexp(t, `^[1-9][0-9]*$`, ra)
	}
	m := scrape(t, s.Distributor.URL())
	require.Greater(t, m[`distributor_rate_limited_total{scope="tenant"}`], 200.0)
	require.Zero(t, m[`distributor_kafka_consecutive_errors`])
	require.Equal(t, 1.0, m[`distributor_sla_success_ratio`], "429s are not server faults")
}

func TestKafkaOutageAnswersFast503sTakesHealthDownAndRecovers(t *testing.T) {
	s := devstack.Start(t, bins, devstack.Options{DistributorConfig: "sla:\n  eval_period: 1s\n  window: 10s\nkafka:\n  request_timeout: 2s\n  breaker: {failures: 3, base_backoff: 1s, max_backoff: 2s, stable_after: 10s}\n"})
	send(t, s.Distributor.URL(), 20, 2, 3, "")
	s.Kafka.Kill()
	l := send(t, s.Distributor.URL(), 200, 4, 3, "")
	require.Equal(t, 200, l.statuses[http.StatusServiceUnavailable], "%v", l.statuses)
	require.NotEmpty(t, l.retry)
	var bodies []string
	for i := 0; i < 5; i++ {
		start := time.Now()
		resp, body := post(t, s.Distributor.URL()+"/ingest", "application/json", []byte(`{"emitter_id":"x","packet_id":1,"messages":[{"message":"m"}]}`), nil)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		require.NotEmpty(t, resp.Header.Get("Retry-After"))
		t.Logf("503 in %s: %s", time.Since(start), strings.TrimSpace(body))
		bodies = append(bodies, body)
	}
	require.Contains(t, strings.Join(bodies, ""), "breaker_open", "the Kafka breaker answers for Kafka")
	ready, err := client.Get(s.Distributor.URL() + "/ready")
	require.NoError(t, err)
	readyBody, _ := io.ReadAll(ready.Body)
	ready.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, ready.StatusCode)
	require.Contains(t, string(readyBody), "kafka breaker open")
	devstack.Eventually(t, 10*time.Second, func() bool {
		m := scrape(t, s.Distributor.URL())
		// A killed broker shows as a refused connection, or as a reset or
		// network error on a connection that was open: which one depends
		// on timing (conn_refused alone failed once in CI).
		conn := 0.0
		for _, typ := range []string{"conn_refused", "conn_reset", "network"} {
			conn += m[`distributor_kafka_write_errors_total{error_type="`+typ+`"}`]
		}
		return m["distributor_health_up"] == 0 && m["distributor_kafka_consecutive_errors"] >= 3 && conn > 0
	}, "health did not go down: %v", lazy(func() any {
		out := map[string]float64{}
		for k, v := range scrape(t, s.Distributor.URL()) {
			if strings.HasPrefix(k, "distributor_health_up") || strings.HasPrefix(k, "distributor_kafka_") && !strings.Contains(k, "duration") {
				out[k] = v
			}
		}
		return out
	}))

	require.NoError(t, s.Kafka.Start()) // an empty broker: kfake keeps nothing
	devstack.WaitTCP(t, s.KafkaAddr, 10*time.Second)
	devstack.Eventually(t, 30*time.Second, func() bool {
		code, _ := postPacket(t, s.Distributor.URL(), "", "after-outage", int(time.Now().UnixNano()), 1)
		return code == http.StatusAccepted
	}, "the distributor did not recover after Kafka came back")
	// Health is judged on traffic: with none it keeps its last verdict.
	devstack.Eventually(t, 20*time.Second, func() bool {
		postPacket(t, s.Distributor.URL(), "", "after-outage", int(time.Now().UnixNano()), 1)
		return scrape(t, s.Distributor.URL())["distributor_health_up"] == 1
	}, "health did not come back")
}

// Reload: POST /reload and SIGHUP apply a new file; an invalid file keeps the
// last good configuration and says so in a metric; requests in flight
// during reloads (the Kafka writer is rebuilt) all succeed.
func TestReloadAppliesAGoodFileKeepsTheOldOnABadOneAndFailsNoRequest(t *testing.T) {
	s := devstack.Start(t, bins, devstack.Options{DistributorConfig: "kafka:\n  acks: \"1\"\n"})
	url := s.Distributor.URL()
	var wg sync.WaitGroup
	var l *load
	wg.Add(1)
	go func() { defer wg.Done(); l = send(t, url, 3000, 8, 5, "") }()

	for i, acks := range []string{"all", "1", "all", "1"} {
		write(t, s.ConfigPath, "kafka:\n  acks: \""+acks+"\"\n  batch_size: "+string(rune('5'+i))+"0\n")
		if i%2 == 0 {
			resp, body := post(t, url+"/reload", "application/json", nil, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
		} else {
			require.NoError(t, s.Distributor.Signal(syscall.SIGHUP))
		}
		devstack.Eventually(t, 5*time.Second, func() bool { return acksOf(t, url) == acks }, "acks %s not applied", acks)
	}
	wg.Wait()
	require.Equal(t, map[int]int{http.StatusAccepted: 3000}, l.statuses, "no request failed during writer rebuilds")

	write(t, s.ConfigPath, "kafka:\n  acks: \"2\"\nrouting:\n  strategy: random\n")
	resp, body := post(t, url+"/reload", "application/json", nil, nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, body, "kafka.acks")
	require.Contains(t, body, "routing.strategy")
	require.Equal(t, "1", acksOf(t, url), "the last good configuration is kept")
	require.Contains(t, configz(t, url), "strategy: weighted")
	require.Equal(t, 0.0, scrape(t, url)["distributor_config_last_reload_successful"])
	code, _ := postPacket(t, url, "", "after-bad-reload", 1, 1)
	require.Equal(t, http.StatusAccepted, code)
}

func write(t *testing.T, path, content string) {
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

func configz(t *testing.T, url string) string {
	resp, err := client.Get(url + "/configz")
	require.NoError(t, err)
	defer resp.Body.Close()
	var b strings.Builder
	bufio.NewReader(resp.Body).WriteTo(&b)
	return b.String()
}

func acksOf(t *testing.T, url string) string {
	var c struct {
		Kafka struct {
			Acks string `json:"acks"`
		} `json:"kafka"`
	}
	getJSON(t, url+"/configz?format=json", &c)
	return c.Kafka.Acks
}

// The run-time overlay (PUT /admin/config) is a hot reload through the API:
// a global rate limit set under traffic turns the excess into 429 at once,
// an invalid overlay is refused with 400 naming the field and changes
// nothing, and DELETE goes back to file and environment.
func TestConfigOverlaySetsLimitsAndWeightsUnderTrafficAndRefusesBadOnes(t *testing.T) {
	s := devstack.Start(t, bins, devstack.Options{})
	url := s.Distributor.URL()
	put := func(body string) (int, string) {
		req, err := http.NewRequest(http.MethodPut, url+"/admin/config", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/yaml") // JSON is YAML: both shapes are sent as YAML
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	l := send(t, url, 200, 4, 3, "")
	require.Equal(t, map[int]int{http.StatusAccepted: 200}, l.statuses, "no limit before")

	// JSON is YAML: both shapes are accepted.
	code, body := put(`{"limits":{"global":{"rate":5,"burst":5}},"analyzers":[{"id":"analyzer-1","url":"` + s.Analyzers[0].URL() + `","weight":1}]}`)
	require.Equal(t, http.StatusOK, code, body)
	l = send(t, url, 200, 4, 3, "")
	require.Greater(t, l.statuses[http.StatusTooManyRequests], 150, "the new limit applies at once: %v", l.statuses)
	require.Equal(t, 200, l.statuses[http.StatusAccepted]+l.statuses[http.StatusTooManyRequests], "nothing but 202 and 429: %v", l.statuses)
	require.Contains(t, configz(t, url), "rate: 5")
	var an struct {
		Analyzers []struct {
			ID     string  `json:"id"`
			Weight float64 `json:"weight"`
		} `json:"analyzers"`
	}
	getJSON(t, url+"/admin/analyzers", &an)
	require.Len(t, an.Analyzers, 1, "the overlay's analyzer list replaces the environment's")

	code, body = put("limits:\n  global: {rate: -1, burst: 5}\nrouting:\n  strategy: random\n")
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "limits.global")
	require.Contains(t, body, "routing.strategy")
	code, body = put("limits: [not, a, map]")
	require.Equal(t, http.StatusBadRequest, code, body)
	code, body = put("  ")
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, configz(t, url), "rate: 5", "a refused overlay changes nothing")
	require.Equal(t, 0.0, scrape(t, url)["distributor_config_last_reload_successful"])

	var ov struct {
		Overlay string `json:"overlay"`
	}
	getJSON(t, url+"/admin/config", &ov)
	require.Contains(t, ov.Overlay, `"rate":5`)

	req, _ := http.NewRequest(http.MethodDelete, url+"/admin/config", nil)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	l = send(t, url, 200, 4, 3, "")
	require.Equal(t, map[int]int{http.StatusAccepted: 200}, l.statuses, "back to no limit")
	getJSON(t, url+"/admin/analyzers", &an)
	require.Len(t, an.Analyzers, len(s.Analyzers), "back to the environment's analyzers")
	require.Equal(t, 1.0, scrape(t, url)["distributor_config_last_reload_successful"])
}
