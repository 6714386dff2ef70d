package integration

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/devstack"
)

// Bodies are built with Loki's own push types, as Promtail and Alloy build
// them: protobuf PushRequest, snappy block compression.
func TestLokiPushesInEveryClientFormatReachTheAnalyzers(t *testing.T) {
	s := devstack.Start(t, bins, devstack.Options{})
	url := s.Distributor.URL()
	now := time.Now()
	req := push.PushRequest{Streams: []push.Stream{
		{Labels: `{app="checkout", level="error"}`, Entries: []push.Entry{{Timestamp: now, Line: "payment failed"}, {Timestamp: now, Line: "retrying"}}},
		{Labels: `{app="cart"}`, Entries: []push.Entry{{Timestamp: now, Line: "added item", StructuredMetadata: push.LabelsAdapter{{Name: "trace_id", Value: "abc"}}}}},
	}}
	raw, err := req.Marshal()
	require.NoError(t, err)
	for _, path := range []string{"/loki/api/v1/push", "/api/prom/push"} {
		resp, body := post(t, url+path, "application/x-protobuf", snappy.Encode(nil, raw), map[string]string{"X-Scope-OrgID": "team-proto"})
		require.Equal(t, http.StatusNoContent, resp.StatusCode, body)
	}

	js := []byte(`{"streams":[{"stream":{"app":"api","level":"warn"},"values":[["1700000000000000000","slow"],["1700000000000000001","slower",{"trace_id":"x"}]]}]}`)
	resp, body := post(t, url+"/loki/api/v1/push", "application/json", js, map[string]string{"X-Scope-OrgID": "team-json"})
	require.Equal(t, http.StatusNoContent, resp.StatusCode, body)

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(js)
	zw.Close()
	resp, body = post(t, url+"/loki/api/v1/push", "application/json", gz.Bytes(), map[string]string{"X-Scope-OrgID": "team-json", "Content-Encoding": "gzip"})
	require.Equal(t, http.StatusNoContent, resp.StatusCode, body)

	devstack.Eventually(t, 20*time.Second, func() bool {
		byTenant, byLevel := map[string]int64{}, map[string]int64{}
		for _, st := range analyzerStats(t, s) {
			for k, v := range st.MessagesByTenant {
				byTenant[k] += v
			}
			for k, v := range st.MessagesByLevel {
				byLevel[k] += v
			}
		}
		return byTenant["team-proto"] == 6 && byTenant["team-json"] == 4 && byLevel["error"] == 4 && byLevel["warn"] == 4
	}, "Loki entries did not arrive with their tenants and levels: %v", lazy(func() any { return analyzerStats(t, s) }))
	m := distributorMetrics(t, s)
	require.EqualValues(t, 4, m.TotalPackets, "each push is one packet, never split")
	require.EqualValues(t, 10, m.TotalMessages)
}

// The record in Kafka carries the W3C trace context: the client's trace,
// continued through the distributor's server and produce spans.
func TestALokiPushLandsInKafkaWithItsTraceHeader(t *testing.T) {
	s := devstack.Start(t, bins, devstack.Options{})
	raw, err := (&push.PushRequest{Streams: []push.Stream{{Labels: `{app="trace"}`, Entries: []push.Entry{{Timestamp: time.Now(), Line: "traced"}}}}}).Marshal()
	require.NoError(t, err)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	resp, body := post(t, s.Distributor.URL()+"/loki/api/v1/push", "application/x-protobuf", snappy.Encode(nil, raw),
		map[string]string{"X-Scope-OrgID": "team-trace", "traceparent": "00-" + traceID + "-00f067aa0ba902b7-01"})
	require.Equal(t, http.StatusNoContent, resp.StatusCode, body)

	var found []kafka.Header
	for _, a := range s.Analyzers {
		conn, err := kafka.DialLeader(t.Context(), "tcp", s.KafkaAddr, "logs."+a.Name, 0)
		require.NoError(t, err)
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		batch := conn.ReadBatch(1, 1<<20)
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			for _, h := range m.Headers {
				if h.Key == "tenant" && string(h.Value) == "team-trace" {
					found = m.Headers
				}
			}
		}
		batch.Close()
		conn.Close()
	}
	require.NotNil(t, found, "the push is in one analyzer's topic")
	headers := map[string]string{}
	for _, h := range found {
		headers[h.Key] = string(h.Value)
	}
	require.Regexp(t, `^00-`+traceID+`-[0-9a-f]{16}-01$`, headers["traceparent"])
	require.NotEmpty(t, headers["packet_id"])
}
