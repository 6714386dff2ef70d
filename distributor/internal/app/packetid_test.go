package app

import (
	"net/http"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/envelope"
	"github.com/dsplab/dsplab/internal/ledger"
)

// The delivery ledger finds a packet in Kafka by the id its emitter gave
// it (k6: "<job>-<vu>-<n>"): the distributor keeps it, unchanged, as the
// record key, the packet_id header and the envelope's packet_id. kfake
// stands in for Kafka here.
func TestAnIngestPacketsIDArrivesUnchangedInKeyHeaderAndEnvelope(t *testing.T) {
	s := startStack(t, "")
	ids := map[string]string{ // body's packet_id → the id in Kafka
		`"t-0123abcd-3-17"`: "t-0123abcd-3-17",
		`"k6-lq2x9-1-1"`:    "k6-lq2x9-1-1",
		`42`:                "42",
	}
	for raw := range ids {
		code, body := s.do(t, http.MethodPost, "/ingest", `{"emitter_id":"e1","packet_id":`+raw+`,"messages":[{"level":"info","message":"m"}]}`)
		require.Equal(t, http.StatusAccepted, code, body)
	}
	found := map[string]bool{}
	for _, topic := range []string{"logs.analyzer-1", "logs.analyzer-2"} {
		require.NoError(t, ledger.Read(t.Context(), s.brokers, topic, time.Time{}, func(m kafka.Message) error {
			env, err := envelope.Unmarshal(m.Value)
			require.NoError(t, err)
			require.Equal(t, env.PacketID, string(m.Key), "record key")
			var header string
			for _, h := range m.Headers {
				if h.Key == envelope.HeaderPacketID {
					header = string(h.Value)
				}
			}
			require.Equal(t, env.PacketID, header, "packet_id header")
			found[env.PacketID] = true
			return nil
		}))
	}
	for _, id := range ids {
		require.True(t, found[id], "%s not in Kafka as such (found %v)", id, found)
	}
	require.Len(t, found, len(ids))
}
