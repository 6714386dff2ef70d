package envelope

import (
	"encoding/json"
	"testing"
	"time"
)

func sample() *Envelope {
	ts := time.Date(2026, 11, 23, 9, 30, 1, 120000000, time.UTC)
	return &Envelope{Tenant: "team-a", PacketID: "42", EmitterID: "k6-<1>", ReceivedAt: ts.Add(time.Millisecond), Source: SourceIngest,
		Messages: []Message{
			{Timestamp: ts, Level: "info", Message: "plain line"},
			{Timestamp: ts.In(time.FixedZone("x", -7*3600)), Level: "error", Message: "quote \" nl \n bad \xff & <b>", Metadata: map[string]any{"host": "a", "n": 3.5, "nested": map[string]any{"z": []any{1.0, "x", nil, true}}}},
			{Level: "debug", Message: ""},
			{Level: "warn", Message: "seed", Metadata: map[string]any{"version": "1.0.0", "service": "demo <svc> & co", "instance": "é\xff", "": "empty key", "Z": "upper"}},
		}}
}

// The hand-written encoder must write exactly what encoding/json writes, so
// that nothing reading the records can tell them apart.
func TestMarshalIsEncodingJSON(t *testing.T) {
	for _, e := range []*Envelope{sample(), {}, {PacketID: "p", Messages: []Message{}}} {
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("Marshal:\n got %s\nwant %s", got, want)
		}
	}
}

func TestMarshalRefusesWhatEncodingJSONRefuses(t *testing.T) {
	e := sample()
	e.Messages[0].Timestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := json.Marshal(e); err == nil {
		t.Fatal("encoding/json accepted year 10000")
	}
	if _, err := e.Marshal(); err == nil {
		t.Fatal("Marshal accepted year 10000")
	}
}

func FuzzMarshalIsEncodingJSON(f *testing.F) {
	f.Add("t", "p", "e", "info", "m", int64(0))
	f.Fuzz(func(t *testing.T, tenant, packet, emitter, level, msg string, nanos int64) {
		ts := time.Unix(0, nanos).UTC()
		e := &Envelope{Tenant: tenant, PacketID: packet, EmitterID: emitter, ReceivedAt: ts, Source: SourceLoki,
			Messages: []Message{{Timestamp: ts, Level: level, Message: msg}, {Level: msg, Message: level, Metadata: map[string]any{msg: level, level: emitter}}}}
		want, werr := json.Marshal(e)
		got, gerr := e.Marshal()
		if (werr == nil) != (gerr == nil) || string(got) != string(want) {
			t.Fatalf("Marshal = %s, %v; encoding/json = %s, %v", got, gerr, want, werr)
		}
	})
}

func BenchmarkMarshal5Messages(b *testing.B) {
	e := sample()
	e.Messages = append(e.Messages[:1], e.Messages[0], e.Messages[0], e.Messages[0], e.Messages[0])
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestUnmarshalSummaryReadsWhatUnmarshalReads(t *testing.T) {
	b, err := sample().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	full, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	s, err := UnmarshalSummary(b)
	if err != nil {
		t.Fatal(err)
	}
	if s.Tenant != full.Tenant || s.PacketID != full.PacketID || s.EmitterID != full.EmitterID || !s.ReceivedAt.Equal(full.ReceivedAt) || len(s.Messages) != len(full.Messages) {
		t.Fatalf("summary %+v of %+v", s, full)
	}
	for i := range s.Messages {
		if s.Messages[i].Level != full.Messages[i].Level {
			t.Fatalf("message %d level %q, want %q", i, s.Messages[i].Level, full.Messages[i].Level)
		}
	}
	for _, bad := range []string{`{"tenant":"t"}`, `{"packet_id":1}`, `not json`} {
		if _, err := UnmarshalSummary([]byte(bad)); err == nil {
			t.Errorf("UnmarshalSummary(%s) accepted", bad)
		}
	}
}

func BenchmarkUnmarshalSummary5Messages(b *testing.B) {
	e := sample()
	e.Messages = append(e.Messages[:1], e.Messages[0], e.Messages[0], e.Messages[0], e.Messages[0])
	v, _ := e.Marshal()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnmarshalSummary(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshal5Messages(b *testing.B) {
	e := sample()
	e.Messages = append(e.Messages[:1], e.Messages[0], e.Messages[0], e.Messages[0], e.Messages[0])
	v, _ := e.Marshal()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal(v); err != nil {
			b.Fatal(err)
		}
	}
}
