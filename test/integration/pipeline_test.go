package integration

import (
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/devstack"
)

func shares(m map[string]int64) map[string]float64 {
	var total int64
	for _, v := range m {
		total += v
	}
	out := map[string]float64{}
	for k, v := range m {
		out[k] = float64(v) / float64(total)
	}
	return out
}

// waitProcessed waits until every analyzer has processed what the
// distributor routed to it (unique packets).
func waitProcessed(t *testing.T, s *devstack.Stack, within time.Duration) {
	t.Helper()
	devstack.Eventually(t, within, func() bool {
		routed := distributorMetrics(t, s).PacketsByAnalyzer
		for id, st := range analyzerStats(t, s) {
			if st.PacketsProcessed != routed[id] {
				return false
			}
		}
		return true
	}, "analyzers did not process everything routed to them")
}

func TestMessagesAreSharedByWeightAndEveryAcceptedPacketIsProcessed(t *testing.T) {
	s := devstack.Start(t, bins, devstack.Options{})
	l := send(t, s.Distributor.URL(), 3000, 8, 20, "")
	require.Equal(t, map[int]int{http.StatusAccepted: 3000}, l.statuses)

	m := distributorMetrics(t, s)
	require.EqualValues(t, 3000, m.TotalPackets)
	require.Equal(t, l.msgs.Load(), m.TotalMessages)
	got := shares(m.MessagesByAnalyzer)
	for id, want := range map[string]float64{"analyzer-1": 0.5, "analyzer-2": 0.3, "analyzer-3": 0.2} {
		require.InDelta(t, want, got[id], 0.02, "%s message share", id)
	}

	waitProcessed(t, s, 30*time.Second)
	var processed, messages int64
	for _, st := range analyzerStats(t, s) {
		processed += st.PacketsProcessed
		messages += st.MessagesProcessed
		require.Zero(t, st.DuplicatePackets)
	}
	require.EqualValues(t, 3000, processed, "0 lost")
	require.Equal(t, l.msgs.Load(), messages)
}

func TestAKilledAnalyzerIsRoutedAroundAndRejoinsWithoutLossOrFlood(t *testing.T) {
	s := devstack.Start(t, bins, devstack.Options{})
	a2 := s.Analyzers[1]
	send(t, s.Distributor.URL(), 500, 4, 10, "")
	waitProcessed(t, s, 30*time.Second)
	before := analyzerStats(t, s)["analyzer-2"].PacketsProcessed

	a2.Kill() // kill -9: no goodbye to the group, no last commit
	killed := time.Now()
	s.WaitHealthy(t, 2, 10*time.Second)
	detection := time.Since(killed)
	t.Logf("crash detected in %s", detection)
	require.LessOrEqual(t, detection, 3*time.Second, "a crash is detected within 3 s (1 s probes, 2 failures)")
	mid := distributorMetrics(t, s)
	l := send(t, s.Distributor.URL(), 2000, 8, 10, "")
	require.Equal(t, map[int]int{http.StatusAccepted: 2000}, l.statuses, "the distributor keeps accepting with one analyzer down")
	after := distributorMetrics(t, s)
	require.Equal(t, mid.PacketsByAnalyzer["analyzer-2"], after.PacketsByAnalyzer["analyzer-2"], "nothing routed to the dead analyzer")
	delta := map[string]int64{}
	for id, v := range after.MessagesByAnalyzer {
		delta[id] = v - mid.MessagesByAnalyzer[id]
	}
	got := shares(delta)
	require.InDelta(t, 0.5/0.7, got["analyzer-1"], 0.02)
	require.InDelta(t, 0.2/0.7, got["analyzer-3"], 0.02)

	require.NoError(t, a2.Start())
	restarted := time.Now()
	s.WaitHealthy(t, 3, 15*time.Second)
	t.Logf("rejoined %s after restart", time.Since(restarted))
	require.LessOrEqual(t, time.Since(restarted), 5*time.Second, "recovery within 5 s of the restart")
	rejoin := distributorMetrics(t, s)
	send(t, s.Distributor.URL(), 2000, 8, 10, "")
	end := distributorMetrics(t, s)
	for id, v := range end.MessagesByAnalyzer {
		delta[id] = v - rejoin.MessagesByAnalyzer[id]
	}
	got = shares(delta)
	require.LessOrEqual(t, got["analyzer-2"], 0.3+0.10, "the rejoining analyzer is not flooded")
	require.InDelta(t, 0.3, got["analyzer-2"], 0.03)

	// No loss: the restarted analyzer-2 processes everything routed to it
	// after its last commit; together with what it did before the kill
	// that covers everything (re-delivery may add a few).
	devstack.Eventually(t, 30*time.Second, func() bool {
		st := analyzerStats(t, s)
		routed := distributorMetrics(t, s).PacketsByAnalyzer
		return st["analyzer-1"].PacketsProcessed == routed["analyzer-1"] &&
			st["analyzer-3"].PacketsProcessed == routed["analyzer-3"] &&
			before+st["analyzer-2"].PacketsProcessed >= routed["analyzer-2"] &&
			distributorMetrics(t, s).QueueDepth["analyzer-2"] == 0
	}, "not everything routed was processed: before kill %d, now %+v, routed %+v", before, lazy(func() any { return analyzerStats(t, s) }), lazy(func() any { return distributorMetrics(t, s) }))
}

func TestAStoppedAnalyzerIsDetectedAndComesBackWhenContinued(t *testing.T) {
	s := devstack.Start(t, bins, devstack.Options{})
	a3 := s.Analyzers[2]
	require.NoError(t, a3.Signal(syscall.SIGSTOP)) // like docker pause: connections hang
	defer a3.Signal(syscall.SIGCONT)
	stopped := time.Now()
	s.WaitHealthy(t, 2, 10*time.Second)
	t.Logf("SIGSTOP detected in %s", time.Since(stopped))
	require.LessOrEqual(t, time.Since(stopped), 3*time.Second)
	l := send(t, s.Distributor.URL(), 300, 4, 5, "")
	require.Equal(t, map[int]int{http.StatusAccepted: 300}, l.statuses)
	require.NoError(t, a3.Signal(syscall.SIGCONT))
	s.WaitHealthy(t, 3, 5*time.Second)
	waitProcessed(t, s, 30*time.Second)
}

func TestMalformedAndInvalidRequestsGetA4xxNamingTheProblem(t *testing.T) {
	s := devstack.Start(t, bins, devstack.Options{DistributorConfig: "limits:\n  max_body_bytes: 2000\n  max_decompressed_bytes: 100000\n  max_messages_per_packet: 3\n"})
	url := s.Distributor.URL()
	tests := []struct {
		name, path, ct, encoding, tenant, body string
		status                                 int
		mention                                string
	}{
		{"broken JSON", "/ingest", "application/json", "", "", `{"emitter_id":`, 400, "malformed"},
		{"missing fields", "/ingest", "application/json", "", "", `{"messages":[{}]}`, 400, `"field":"messages[0].message"`},
		{"body over the limit", "/ingest", "application/json", "", "", `{"x":"` + strings.Repeat("a", 3000) + `"}`, 413, "limit of 2000 bytes"},
		{"unknown encoding", "/ingest", "application/json", "br", "", "{}", 415, "Content-Encoding"},
		{"loki without tenant", "/loki/api/v1/push", "application/json", "", "", `{"streams":[]}`, 400, "X-Scope-OrgID"},
		{"loki bad protobuf", "/loki/api/v1/push", "application/x-protobuf", "", "t1", "not snappy", 400, "snappy"},
		{"loki unknown content type", "/loki/api/v1/push", "text/plain", "", "t1", "hi", 415, "Content-Type"},
		{"empty messages", "/ingest", "application/json", "", "", `{"emitter_id":"e","packet_id":1,"messages":[]}`, 400, "at least one message"},
		{"too many messages", "/ingest", "application/json", "", "", `{"emitter_id":"e","packet_id":1,"messages":[{"message":"1"},{"message":"2"},{"message":"3"},{"message":"4"}]}`, 400, "more than the limit of 3"},
		{"bad tenant id", "/ingest", "application/json", "", "team/../etc", `{"emitter_id":"e","packet_id":1,"messages":[{"message":"1"}]}`, 400, "X-Scope-OrgID"},
		{"snappy bomb", "/loki/api/v1/push", "application/x-protobuf", "", "t1", string(snappyBomb()), 413, "after snappy"},
		{"admin weight on the wrong method", "/admin/analyzers/analyzer-1/weight", "application/json", "", "", `{"weight":"x"}`, 405, "not allowed"},
		{"admin drain of an unknown analyzer", "/admin/analyzers/nope/drain", "application/json", "", "", "", 404, "no analyzer nope"},
		{"admin drain that is not JSON", "/admin/analyzers/analyzer-1/drain", "text/plain", "", "", "", 415, "send Content-Type: application/json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.tenant != "" {
				h["X-Scope-OrgID"] = tc.tenant
			}
			if tc.encoding != "" {
				h["Content-Encoding"] = tc.encoding
			}
			resp, body := post(t, url+tc.path, tc.ct, []byte(tc.body), h)
			require.Equal(t, tc.status, resp.StatusCode, body)
			require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			require.Contains(t, body, `"error":`)
			require.Contains(t, body, tc.mention)
		})
	}
	req, _ := http.NewRequest(http.MethodPut, url+"/admin/analyzers/analyzer-1/weight", strings.NewReader(`{"weight":-2}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "invalid weight")
	require.Zero(t, distributorMetrics(t, s).TotalPackets, "nothing invalid was accepted")
}

// snappyBomb is a small snappy block whose header claims 1 GiB.
func snappyBomb() []byte {
	return append(binary.AppendUvarint(nil, 1<<30), 0)
}

// lazy formats a value only when a failure message is printed.
type lazy func() any

func (l lazy) String() string { return fmt.Sprintf("%+v", l()) }
