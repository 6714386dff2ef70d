package ingest

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/packettest"
)

// The estimate a decoder reserves covers what decoding and encoding
// really hold: checked against the heap for the cheapest and the most
// expensive JSON shapes (BenchmarkDecodeMemory shows the numbers).
func TestTheReservedEstimateCoversTheDecodedPacket(t *testing.T) {
	for name, body := range map[string][]byte{"metadata": packettest.MetadataHeavy("e", 1<<20), "plain": packettest.Plain("e", 1<<20)} {
		t.Run(name, func(t *testing.T) {
			var reserved int64
			live := liveBytes(t, func() any {
				env, err := DecodePacket(body, "t", now, Limits{MaxMessages: 100_000, Reserve: func(n int64) error { reserved += n; return nil }})
				require.NoError(t, err)
				v, err := env.Marshal()
				require.NoError(t, err)
				return [2]any{env, v}
			})
			require.GreaterOrEqual(t, reserved, live, "reserved %d, held %d", reserved, live)
			require.Less(t, reserved, 3*live, "not wildly above either")
		})
	}
}

// liveBytes is what the value made by fn keeps on the heap (the body is
// not counted: the budget reserves it as it is read).
func liveBytes(t *testing.T, fn func() any) int64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	v := fn()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	return int64(after.HeapAlloc) - int64(before.HeapAlloc)
}

var errNoRoom = errors.New("no room")

// A decoder asks before it decodes and stops when refused, for every
// format; and a protobuf push with more entries than the limit is refused
// before it is decoded (on the wire a tiny entry becomes a struct of ~100
// bytes, and the limit used to be checked only after decoding them all).
func TestDecodersAskTheBudgetFirstAndStopWhenRefused(t *testing.T) {
	refuse := Limits{Reserve: func(int64) error { return errNoRoom }}
	_, err := DecodePacket(packettest.Plain("e", 1000), "t", now, refuse)
	require.ErrorIs(t, err, errNoRoom)
	_, err = DecodeLokiJSON([]byte(`{"streams":[{"stream":{"a":"b"},"values":[["1","x"]]}]}`), LokiMeta{Tenant: "t", PacketID: "p"}, refuse)
	require.ErrorIs(t, err, errNoRoom)
	proto := lokiProtoBody(t, push.PushRequest{Streams: []push.Stream{{Labels: `{a="b"}`, Entries: []push.Entry{{Timestamp: now, Line: "x"}}}}})
	_, err = DecodeLokiProto(proto, LokiMeta{Tenant: "t", PacketID: "p"}, refuse)
	require.ErrorIs(t, err, errNoRoom)

	// Structured metadata: each entry's map is reserved as it is built.
	calls := 0
	second := Limits{Reserve: func(int64) error {
		if calls++; calls > 2 {
			return errNoRoom
		}
		return nil
	}}
	sm := push.LabelsAdapter{{Name: "trace_id", Value: "1"}}
	proto = lokiProtoBody(t, push.PushRequest{Streams: []push.Stream{{Labels: `{a="b"}`, Entries: []push.Entry{{Timestamp: now, Line: "x", StructuredMetadata: sm}, {Timestamp: now, Line: "y", StructuredMetadata: sm}}}}})
	_, err = DecodeLokiProto(proto, LokiMeta{Tenant: "t", PacketID: "p"}, second)
	require.ErrorIs(t, err, errNoRoom)

	many := push.Stream{Labels: `{a="b"}`}
	for range 200 {
		many.Entries = append(many.Entries, push.Entry{})
	}
	var reserved int64
	_, err = DecodeLokiProto(lokiProtoBody(t, push.PushRequest{Streams: []push.Stream{many}}), LokiMeta{Tenant: "t", PacketID: "p"},
		Limits{MaxMessages: 100, Reserve: func(n int64) error { reserved += n; return nil }})
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	require.Contains(t, ve.Error(), "hold 200 entries, more than the limit of 100")
	require.Less(t, reserved, int64(10_000), "refused before the decode was reserved")
}

func TestStructuredMetadataPairsPerEntryAreLimited(t *testing.T) {
	var sm push.LabelsAdapter
	for i := range 65 {
		sm = append(sm, push.LabelAdapter{Name: fmt.Sprintf("k%d", i), Value: "v"})
	}
	proto := lokiProtoBody(t, push.PushRequest{Streams: []push.Stream{{Labels: `{a="b"}`, Entries: []push.Entry{{Timestamp: now, Line: "x", StructuredMetadata: sm}}}}})
	_, err := DecodeLokiProto(proto, LokiMeta{Tenant: "t", PacketID: "p"}, Limits{})
	require.ErrorContains(t, err, "has 65 structured metadata pairs, more than the limit of 64")
}

// BenchmarkDecodeMemory reports what a decoded and encoded 4.8 MB packet
// holds per byte of body (live-x) and what the budget reserves for it
// (reserved-x): the numbers behind cost.go.
func BenchmarkDecodeMemory(b *testing.B) {
	for name, body := range map[string][]byte{"metadata-4.8MB": packettest.MetadataHeavy("e", 4_800_000), "plain-4.8MB": packettest.Plain("e", 4_800_000)} {
		b.Run(name, func(b *testing.B) {
			var live, reserved int64
			for b.Loop() {
				reserved = 0
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				env, err := DecodePacket(body, "t", time.Now(), Limits{MaxMessages: 100_000, Reserve: func(n int64) error { reserved += n; return nil }})
				if err != nil {
					b.Fatal(err)
				}
				v, _ := env.Marshal()
				runtime.GC()
				runtime.ReadMemStats(&after)
				runtime.KeepAlive(env)
				runtime.KeepAlive(v)
				live = int64(after.HeapAlloc) - int64(before.HeapAlloc)
			}
			b.ReportMetric(float64(live)/float64(len(body)), "live-x")
			b.ReportMetric(float64(reserved)/float64(len(body)), "reserved-x")
		})
	}
}
