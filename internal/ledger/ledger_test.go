package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
)

func sample() Record {
	return Record{PacketID: "t-abc-3-17", EmitterID: "k6-t-abc-3", Tenant: "default", Analyzer: "analyzer-1", Topic: "logs.analyzer-1",
		Partition: 0, Offset: 123, ProcessedAt: time.Date(2026, 12, 6, 2, 0, 0, 123456789, time.UTC), Delivery: AtLeastOnce, Messages: 5}
}

func TestEncodeWritesTheContractsShapeAndDecodeReadsItBack(t *testing.T) {
	b, err := Encode(sample())
	require.NoError(t, err)
	require.JSONEq(t, `{"v":1,"packet_id":"t-abc-3-17","emitter_id":"k6-t-abc-3","tenant":"default","analyzer":"analyzer-1",
		"topic":"logs.analyzer-1","partition":0,"offset":123,"processed_at":"2026-12-06T02:00:00.123456789Z","delivery":"at-least-once","messages":5}`, string(b))
	r, err := Decode(b)
	require.NoError(t, err)
	want := sample()
	want.V = 1
	require.Equal(t, want, r)
	require.Equal(t, Source{"logs.analyzer-1", 0, 123}, r.Source())
}

// Encode appends by hand; its bytes must be json.Marshal's, whatever the
// strings hold and wherever the time is.
func TestEncodeIsEncodingJSON(t *testing.T) {
	check := func(r Record) {
		t.Helper()
		got, err := Encode(r)
		require.NoError(t, err)
		r.V, r.ProcessedAt = Version, r.ProcessedAt.UTC()
		want, err := json.Marshal(r)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	}
	check(sample())
	r := sample()
	r.PacketID, r.EmitterID, r.Tenant = "quote \" <html> & \u2028 \xff \x01", "", "ünï ✓"
	r.Partition, r.Offset, r.Messages = 7, 1<<62, 0
	r.ProcessedAt = time.Date(2026, 12, 6, 9, 0, 0, 0, time.FixedZone("x", 3600))
	check(r)
	for _, d := range Modes {
		r.Delivery = d
		check(r)
	}
	r.ProcessedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) // json.Marshal refuses it: so does Encode
	_, err := Encode(r)
	require.Error(t, err)
}

func TestEncodeRefusesARecordItCouldNotReadBack(t *testing.T) {
	r := sample()
	r.PacketID, r.Delivery = "", "twice"
	_, err := Encode(r)
	require.ErrorContains(t, err, "packet_id is empty")
	require.ErrorContains(t, err, `delivery mode "twice"`)
}

func TestDecodeRefusesWhatIsNotAV1LedgerRecordAndSaysWhy(t *testing.T) {
	good, err := Encode(sample())
	require.NoError(t, err)
	for _, c := range []struct{ name, value, why string }{
		{"empty", ``, "not a JSON object"},
		{"text", `hello kcat`, "not a JSON object"},
		{"an array", `[1,2]`, "not a JSON object"},
		{"null", `null`, "not a JSON object"},
		{"an envelope of logs.*", `{"tenant":"t","packet_id":"p","emitter_id":"e","received_at":"2026-12-06T02:00:00Z","source":"ingest","messages":[]}`, "unknown field"},
		{"version 2", `{"v":2,"packet_id":"p","analyzer":"a","topic":"t","processed_at":"2026-12-06T02:00:00Z","delivery":"at-least-once"}`, "version 2"},
		{"no version", `{"packet_id":"p","analyzer":"a","topic":"t","processed_at":"2026-12-06T02:00:00Z","delivery":"at-least-once"}`, "version 0"},
		{"no packet id", `{"v":1,"analyzer":"a","topic":"t","processed_at":"2026-12-06T02:00:00Z","delivery":"at-least-once"}`, "packet_id is empty"},
		{"negative offset", `{"v":1,"packet_id":"p","analyzer":"a","topic":"t","offset":-1,"processed_at":"2026-12-06T02:00:00Z","delivery":"at-least-once"}`, "must not be negative"},
		{"no time", `{"v":1,"packet_id":"p","analyzer":"a","topic":"t","delivery":"at-least-once"}`, "processed_at is missing"},
		{"unknown mode", `{"v":1,"packet_id":"p","analyzer":"a","topic":"t","processed_at":"2026-12-06T02:00:00Z","delivery":"exactly-once"}`, `"exactly-once"`},
		{"wrong type", `{"v":"1"}`, "cannot unmarshal"},
		{"truncated", string(good[:len(good)/2]), "unexpected EOF"},
		{"two objects", string(good) + string(good), "data after the JSON object"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode([]byte(c.value))
			require.ErrorIs(t, err, ErrNotLedgerRecord)
			require.ErrorContains(t, err, c.why)
		})
	}
}

func TestParseModeKnowsTheThreeModes(t *testing.T) {
	for _, m := range Modes {
		got, err := ParseMode(string(m))
		require.NoError(t, err)
		require.Equal(t, m, got)
	}
	_, err := ParseMode("exactly-once")
	require.ErrorContains(t, err, "must be one of at-most-once, at-least-once, effectively-once")
}

// FuzzDecode: Decode never panics, and what it accepts encodes and decodes
// to the same record.
func FuzzDecode(f *testing.F) {
	good, _ := Encode(sample())
	f.Add(good)
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"v":1,"packet_id":"p","analyzer":"a","topic":"t","processed_at":"2026-12-06T02:00:00+01:00","delivery":"at-most-once"} `))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrNotLedgerRecord) {
				t.Fatalf("Decode error %v does not wrap ErrNotLedgerRecord", err)
			}
			return
		}
		again, err := Encode(r)
		if err != nil {
			t.Fatalf("Encode of a decoded record: %v", err)
		}
		r2, err := Decode(again)
		if err != nil || !r2.ProcessedAt.Equal(r.ProcessedAt) || r2.PacketID != r.PacketID || r2.Offset != r.Offset {
			t.Fatalf("round trip: %+v -> %s -> %+v, %v", r, again, r2, err)
		}
	})
}

// Read runs against kfake, a Kafka-protocol broker in process (a stand-in
// for Apache Kafka; the same one devkafka serves).
func TestReadVisitsEveryRecordUpToTheEndAsOfTheCallAndHonoursSince(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "ledger.test"))
	require.NoError(t, err)
	defer c.Close()
	brokers := c.ListenAddrs()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: "ledger.test", BatchTimeout: time.Millisecond, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	var msgs []kafka.Message
	old := time.Now().Add(-time.Hour)
	for i := range 20 {
		m := kafka.Message{Key: []byte(strconv.Itoa(i)), Value: []byte(strconv.Itoa(i))}
		if i < 5 {
			m.Time = old
		}
		msgs = append(msgs, m)
	}
	require.NoError(t, w.WriteMessages(t.Context(), msgs...))

	seen := map[string]bool{}
	require.NoError(t, Read(t.Context(), brokers, "ledger.test", time.Time{}, func(m kafka.Message) error {
		require.False(t, seen[string(m.Value)], "each record once")
		seen[string(m.Value)] = true
		return nil
	}))
	require.Len(t, seen, 20)

	recent := 0
	require.NoError(t, Read(t.Context(), brokers, "ledger.test", time.Now().Add(-time.Minute), func(m kafka.Message) error {
		n, _ := strconv.Atoi(string(m.Value))
		require.GreaterOrEqual(t, n, 5, "records older than since are not visited")
		recent++
		return nil
	}))
	require.Equal(t, 15, recent)

	stop := errors.New("stop")
	require.ErrorIs(t, Read(t.Context(), brokers, "ledger.test", time.Time{}, func(kafka.Message) error { return stop }), stop)

	empty := 0
	require.NoError(t, Read(t.Context(), brokers, "ledger.test", time.Now().Add(time.Hour), func(kafka.Message) error { empty++; return nil }))
	require.Zero(t, empty)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, Read(ctx, brokers, "ledger.test", time.Time{}, func(kafka.Message) error { return nil }), "no wait for records produced later")
}
