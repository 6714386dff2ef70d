package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"
)

var now = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func TestDecodePacketAcceptsAValidPacketWithStringOrIntegerIDs(t *testing.T) {
	for _, body := range []string{
		`{"emitter_id":"k6-1","packet_id":"p-7","messages":[{"timestamp":"2026-11-22T09:00:00Z","level":"ERROR","message":"disk full","metadata":{"host":"a","n":3}}, {"message":"no level"}]}`,
		`{"emitter_id":"k6-1","packet_id":7,"messages":[{"level":"error","message":"disk full","metadata":{"host":"a","n":3}}, {"message":"no level"}]}`,
	} {
		env, err := DecodePacket([]byte(body), "team-a", now, Limits{})
		require.NoError(t, err)
		require.Equal(t, "team-a", env.Tenant)
		require.Equal(t, "k6-1", env.EmitterID)
		require.Contains(t, []string{"p-7", "7"}, env.PacketID)
		require.Len(t, env.Messages, 2)
		require.Equal(t, "error", env.Messages[0].Level)
		require.Equal(t, "info", env.Messages[1].Level, "a missing level means info")
		require.Equal(t, now, env.Messages[1].Timestamp, "a missing timestamp is the receive time")
		require.Equal(t, "ingest", env.Source)
	}
}

func TestDecodePacketListsEveryProblemAtOnce(t *testing.T) {
	body := `{"packet_id":"","messages":[{"level":"info"},{"message":"ok","level":"` + strings.Repeat("x", 40) + `"}]}`
	_, err := DecodePacket([]byte(body), "t", now, Limits{})
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	fields := map[string]bool{}
	for _, p := range ve.Problems {
		fields[p.Field] = true
	}
	require.Equal(t, map[string]bool{"emitter_id": true, "packet_id": true, "messages[0].message": true, "messages[1].level": true}, fields)
}

func TestDecodePacketRejectsMalformedBodies(t *testing.T) {
	for name, body := range map[string]string{
		"not json":          `{"emitter_id":`,
		"trailing data":     `{"emitter_id":"a","packet_id":"b","messages":[{"message":"m"}]} {}`,
		"negative id":       `{"emitter_id":"a","packet_id":-1,"messages":[{"message":"m"}]}`,
		"messages a string": `{"emitter_id":"a","packet_id":"b","messages":"m"}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodePacket([]byte(body), "t", now, Limits{})
			require.ErrorIs(t, err, ErrMalformed)
		})
	}
}

func TestDecodePacketEnforcesTheMessageLimit(t *testing.T) {
	_, err := DecodePacket([]byte(`{"emitter_id":"a","packet_id":"b","messages":[{"message":"1"},{"message":"2"},{"message":"3"}]}`), "t", now, Limits{MaxMessages: 2})
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "messages", ve.Problems[0].Field)
}

// lokiProtoBody builds a push body exactly as Loki's clients do: the push
// package's PushRequest, marshalled and snappy-compressed.
func lokiProtoBody(t testing.TB, req push.PushRequest) []byte {
	raw, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, raw)
}

func TestDecodeLokiProtoReadsStreamsEntriesAndStructuredMetadata(t *testing.T) {
	ts := time.Unix(1_700_000_000, 123).UTC()
	body := lokiProtoBody(t, push.PushRequest{Streams: []push.Stream{
		{Labels: `{app="api", level="warn"}`, Entries: []push.Entry{
			{Timestamp: ts, Line: "slow request"},
			{Timestamp: ts, Line: "boom", StructuredMetadata: push.LabelsAdapter{{Name: "level", Value: "error"}, {Name: "trace_id", Value: "abc"}}},
		}},
		{Labels: `{app="db"}`, Entries: []push.Entry{{Timestamp: ts, Line: "checkpoint"}}},
	}})
	env, err := DecodeLokiProto(body, LokiMeta{Tenant: "t1", EmitterID: "promtail", PacketID: "x1", Now: now}, Limits{})
	require.NoError(t, err)
	require.Len(t, env.Messages, 3)
	require.Equal(t, "warn", env.Messages[0].Level)
	require.Equal(t, "error", env.Messages[1].Level, "structured metadata level wins over the stream label")
	require.Equal(t, "abc", env.Messages[1].Metadata["trace_id"])
	require.Equal(t, "api", env.Messages[1].Metadata["app"])
	require.Equal(t, "info", env.Messages[2].Level)
	require.True(t, env.Messages[0].Timestamp.Equal(ts))
	require.Equal(t, "loki", env.Source)
}

func TestDecodeLokiProtoRejectsBadInput(t *testing.T) {
	_, err := DecodeLokiProto([]byte("not snappy at all"), LokiMeta{}, Limits{})
	require.ErrorIs(t, err, ErrMalformed)

	_, err = DecodeLokiProto(snappy.Encode(nil, []byte{0xff, 0xff, 0xff}), LokiMeta{}, Limits{})
	require.ErrorIs(t, err, ErrMalformed)

	big := lokiProtoBody(t, push.PushRequest{Streams: []push.Stream{{Labels: `{a="b"}`, Entries: []push.Entry{{Timestamp: now, Line: strings.Repeat("z", 4096)}}}}})
	_, err = DecodeLokiProto(big, LokiMeta{}, Limits{MaxDecompressed: 1024})
	require.ErrorIs(t, err, ErrTooLarge)

	badLabels := lokiProtoBody(t, push.PushRequest{Streams: []push.Stream{{Labels: `{a=b}`, Entries: []push.Entry{{Timestamp: now, Line: "x"}}}}})
	_, err = DecodeLokiProto(badLabels, LokiMeta{}, Limits{})
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "streams[0].labels", ve.Problems[0].Field)
}

func TestDecodeLokiJSONReadsCurrentAndLegacyForms(t *testing.T) {
	current := `{"streams":[{"stream":{"app":"api","level":"debug"},"values":[["1700000000000000000","hello"],["1700000000000000001","with md",{"trace_id":"t"}]]}]}`
	env, err := DecodeLokiJSON([]byte(current), LokiMeta{Tenant: "t", PacketID: "p", Now: now}, Limits{})
	require.NoError(t, err)
	require.Len(t, env.Messages, 2)
	require.Equal(t, "debug", env.Messages[0].Level)
	require.Equal(t, int64(1700000000000000001), env.Messages[1].Timestamp.UnixNano())
	require.Equal(t, "t", env.Messages[1].Metadata["trace_id"])

	legacy := `{"streams":[{"labels":"{app=\"api\"}","entries":[{"ts":"2026-11-22T10:00:00Z","line":"old style"}]}]}`
	env, err = DecodeLokiJSON([]byte(legacy), LokiMeta{Tenant: "t", PacketID: "p", Now: now}, Limits{})
	require.NoError(t, err)
	require.Equal(t, "old style", env.Messages[0].Message)
}

func TestDecodeLokiJSONNamesTheProblem(t *testing.T) {
	for name, body := range map[string]string{
		"timestamp not ns": `{"streams":[{"stream":{"a":"b"},"values":[["yesterday","x"]]}]}`,
		"value too short":  `{"streams":[{"stream":{"a":"b"},"values":[["1"]]}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeLokiJSON([]byte(body), LokiMeta{}, Limits{})
			require.ErrorIs(t, err, ErrMalformed)
		})
	}
	_, err := DecodeLokiJSON([]byte(`{"streams":[]}`), LokiMeta{}, Limits{})
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	require.False(t, errors.Is(err, ErrMalformed))
}

func TestParseLabels(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]string
		ok   bool
	}{
		{`{}`, map[string]string{}, true},
		{`{a="b"}`, map[string]string{"a": "b"}, true},
		{` { a = "b" , c_2="d\"e\\" } `, map[string]string{"a": "b", "c_2": `d"e\`}, true},
		{`{a="b",}`, map[string]string{"a": "b"}, true},
		{`{a="b"`, nil, false},
		{`{2a="b"}`, nil, false},
		{`{a=b}`, nil, false},
		{`{a="b" c="d"}`, nil, false},
		{`{a="b",a="c"}`, nil, false},
		{`{a="unterminated}`, nil, false},
	}
	for _, tt := range tests {
		got, err := ParseLabels(tt.in)
		if !tt.ok {
			require.Error(t, err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		require.Equal(t, tt.want, got, tt.in)
	}
}

func TestEnvelopeRoundTripsThroughJSON(t *testing.T) {
	env, err := DecodePacket([]byte(`{"emitter_id":"e","packet_id":"1","messages":[{"message":"m","metadata":{"k":"v"}}]}`), "t", now, Limits{})
	require.NoError(t, err)
	b, err := env.Marshal()
	require.NoError(t, err)
	var back map[string]any
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, "1", back["packet_id"])
}

func TestValidateTenant(t *testing.T) {
	for _, ok := range []string{"default", "team-a", "A_b.c*d!e'(f)", strings.Repeat("x", 150)} {
		require.NoError(t, ValidateTenant(ok), ok)
	}
	for _, bad := range []string{"", ".", "..", "a/b", "a b", "ünï", strings.Repeat("x", 151), "a\x00"} {
		require.Error(t, ValidateTenant(bad), bad)
	}
}

func benchPacket(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"emitter_id":"bench-1","packet_id":42,"messages":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"timestamp":"2026-11-22T10:00:00Z","level":"info","message":"message 1: user=42 action=checkout status=ok latency_ms=12 region=eu-west-1 padding to 120 bytes"}`)
	}
	b.WriteString("]}")
	return []byte(b.String())
}

func BenchmarkDecodePacket5Messages(b *testing.B) {
	body := benchPacket(5)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodePacket(body, "t", now, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeSeedPacket5Messages decodes and encodes a packet as the
// seed's emitter sends it (integer millisecond timestamps, three metadata
// strings per message, a string packet id): the benchmark's load.
func BenchmarkDecodeSeedPacket5Messages(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"emitter_id":"emitter-1","messages":[`)
	for i := range 5 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"timestamp":1640995200%03d,"level":"INFO","message":"Sample log message %d from auth","metadata":{"service":"demo-service","version":"1.0.0","instance":"instance-%d"}}`, i, i+1, i)
	}
	sb.WriteString(`],"packet_id":"emitter-1-42"}`)
	body := []byte(sb.String())
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		env, err := DecodePacket(body, "t", now, Limits{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := env.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeLokiProto10Lines(b *testing.B) {
	entries := make([]push.Entry, 10)
	for i := range entries {
		entries[i] = push.Entry{Timestamp: now, Line: strings.Repeat("l", 120)}
	}
	body := lokiProtoBody(b, push.PushRequest{Streams: []push.Stream{{Labels: `{app="bench", level="info"}`, Entries: entries}}})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeLokiProto(body, LokiMeta{Tenant: "t", PacketID: "p", Now: now}, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEnvelopeMarshal5Messages(b *testing.B) {
	env, err := DecodePacket(benchPacket(5), "t", now, Limits{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := env.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}
