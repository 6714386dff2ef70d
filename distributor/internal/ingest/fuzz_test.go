package ingest

import (
	"testing"

	"github.com/golang/snappy"
)

// The fuzz targets check that no input crashes a decoder, and that every
// accepted packet satisfies the invariants the router and analyzers rely on.
// Seed inputs live in testdata/fuzz/<Target>/.

func checkEnvelopeInvariants(t *testing.T, lim Limits, envOK bool, n int) {
	t.Helper()
	if envOK && (n == 0 || n > lim.withDefaults().MaxMessages) {
		t.Fatalf("accepted a packet with %d messages", n)
	}
}

func FuzzDecodePacket(f *testing.F) {
	f.Add([]byte(`{"emitter_id":"e","packet_id":1,"messages":[{"message":"m"}]}`))
	lim := Limits{MaxMessages: 50}
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := DecodePacket(body, "t", now, lim)
		if err == nil {
			checkEnvelopeInvariants(t, lim, true, len(env.Messages))
			if env.PacketID == "" || env.EmitterID == "" {
				t.Fatal("accepted a packet without ids")
			}
		}
	})
}

func FuzzDecodeLokiJSON(f *testing.F) {
	f.Add([]byte(`{"streams":[{"stream":{"a":"b"},"values":[["1","x"]]}]}`))
	lim := Limits{MaxMessages: 50}
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := DecodeLokiJSON(body, LokiMeta{Tenant: "t", PacketID: "p"}, lim)
		if err == nil {
			checkEnvelopeInvariants(t, lim, true, len(env.Messages))
		}
	})
}

// FuzzDecodeLokiProto fuzzes the decompressed protobuf; the fuzzer mutates
// the raw message and the target compresses it, so that mutations reach the
// protobuf decoder instead of dying in snappy. Raw snappy input is covered
// by FuzzDecodeLokiSnappy.
func FuzzDecodeLokiProto(f *testing.F) {
	// seeds: testdata/fuzz/FuzzDecodeLokiProto
	lim := Limits{MaxMessages: 50}
	f.Fuzz(func(t *testing.T, raw []byte) {
		env, err := DecodeLokiProto(snappy.Encode(nil, raw), LokiMeta{Tenant: "t", PacketID: "p"}, lim)
		if err == nil {
			checkEnvelopeInvariants(t, lim, true, len(env.Messages))
		}
	})
}

func FuzzDecodeLokiSnappy(f *testing.F) {
	// seeds: testdata/fuzz/FuzzDecodeLokiSnappy
	f.Fuzz(func(t *testing.T, body []byte) {
		_, _ = DecodeLokiProto(body, LokiMeta{Tenant: "t", PacketID: "p"}, Limits{MaxDecompressed: 1 << 20})
	})
}

func FuzzParseLabels(f *testing.F) {
	f.Add(`{a="b", c="d\"e"}`)
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseLabels(s)
		if err == nil && m == nil {
			t.Fatal("nil map without error")
		}
	})
}
