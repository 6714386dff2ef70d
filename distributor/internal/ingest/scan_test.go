package ingest

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// referenceScan decodes an /ingest body with encoding/json, field by field
// and with exact (case-sensitive) field names: the meaning scanPacket must
// have. (encoding/json on the struct would also match "Emitter_ID" and
// "meſſages"; scanPacket deliberately does not.)
func referenceScan(body []byte) (in packetIn, total int, err error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return in, 0, err
	}
	if raw, ok := top["emitter_id"]; ok {
		if err := json.Unmarshal(raw, &in.EmitterID); err != nil {
			return in, 0, err
		}
	}
	if raw, ok := top["packet_id"]; ok {
		if err := json.Unmarshal(raw, &in.PacketID); err != nil {
			return in, 0, err
		}
	}
	raw, ok := top["messages"]
	if !ok {
		return in, 0, nil
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return in, 0, err
	}
	if elems == nil {
		return in, 0, nil
	}
	in.Messages = []messageIn{}
	for _, e := range elems {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(e, &fields); err != nil {
			return in, 0, err
		}
		var m messageIn
		for k, dst := range map[string]any{"message": &m.Message, "level": &m.Level, "timestamp": &m.Timestamp, "metadata": &m.Metadata} {
			if raw, ok := fields[k]; ok {
				if err := json.Unmarshal(raw, dst); err != nil {
					return in, 0, err
				}
			}
		}
		in.Messages = append(in.Messages, m)
	}
	return in, len(elems), nil
}

// hasDuplicateKeys reports whether any object in body repeats a key (the
// two decoders then legitimately differ: field by field vs. last wins).
func hasDuplicateKeys(body []byte) bool {
	s := &scanner{b: body}
	dup := false
	var walk func() error
	walk = func() error {
		switch s.peek() {
		case '{':
			seen := map[string]bool{}
			return s.object(func(k string) error {
				dup = dup || seen[k]
				seen[k] = true
				return walk()
			})
		case '[':
			return s.array(func(int) error { return walk() })
		}
		_, err := s.skip()
		return err
	}
	walk()
	return dup
}

func checkAgreement(t *testing.T, body []byte) {
	t.Helper()
	got, gotN, gotErr := scanPacket(body, DefaultLimits.MaxMessages)
	want, wantN, wantErr := referenceScan(body)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("%q: scanPacket err=%v, encoding/json err=%v", body, gotErr, wantErr)
	}
	if gotErr != nil || hasDuplicateKeys(body) {
		return
	}
	if len(got.Messages) == 0 && len(want.Messages) == 0 {
		got.Messages, want.Messages = nil, nil // no messages either way
	}
	if gotN != wantN || !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\nscanPacket    %d %#v\nencoding/json %d %#v", body, gotN, got, wantN, want)
	}
}

var agreementCases = []string{
	`{"emitter_id":"e","packet_id":1,"messages":[{"message":"m"}]}`,
	`{"emitter_id":"e","packet_id":"p-1","messages":[{"message":"m","level":"WARN","timestamp":"2026-11-23T10:00:00.123+01:00","metadata":{"a":1,"b":[true,null,"x"]}}]}`,
	` { "emitter_id" : "\u00e9\ud83d\ude00\ud800x\\\"\/\b\f\n\r\t" , "packet_id" : 0 , "messages" : [ null , {} ] , "extra" : {"x":[1,2.5e-3,-0,{"y":null}]} } `,
	"{\"emitter_id\":\"bad \xff\xfe utf8 \xc3\",\"packet_id\":\"\\udc00\\ud800\\u0041\",\"messages\":[]}",
	`null`, `{}`, `{"messages":null}`, `{"messages":[null]}`,
	`{"emitter_id":"e","packet_id":1.5,"messages":[]}`, `{"packet_id":-1}`, `{"packet_id":{}}`, `{"packet_id":null}`, `{"packet_id":true}`,
	`{"messages":{}}`, `{"messages":"x"}`, `{"messages":[1]}`, `{"messages":[{"message":1}]}`, `{"messages":[{"level":[]}]}`,
	`{"messages":[{"timestamp":"yesterday"}]}`, `{"messages":[{"timestamp":12}]}`, `{"messages":[{"metadata":[1]}]}`, `{"messages":[{"metadata":"x"}]}`,
	`{"emitter_id":5}`, `{"emitter_id":null}`, `[]`, `"x"`, `1`, ``, ` `, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":[1,]}`, `{,}`,
	`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":-}`, `{"a":NaN}`, `{"a":Infinity}`, `{"a":tru}`, `{"a":nul}`,
	`{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12G4"}`, "{\"a\":\"tab\there\"}", `{"a":"unterminated}`, `{"a":1}}`, `{"a":1}]`, `{"a":1} {"b":2}`, `{"a":1} x`,
	"{\"a\":1}\x00", `{'a':1}`, `{a:1}`,
}

func TestScanPacketAgreesWithEncodingJSON(t *testing.T) {
	for _, c := range agreementCases {
		checkAgreement(t, []byte(c))
	}
	checkAgreement(t, []byte(strings.Repeat("[", maxDepth+5)+strings.Repeat("]", maxDepth+5)))
}

// FuzzDecodePacketAgreesWithEncodingJSON: the hand-written scanner accepts
// exactly what encoding/json accepts and decodes it to the same values.
func FuzzDecodePacketAgreesWithEncodingJSON(f *testing.F) {
	for _, c := range agreementCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkAgreement(t, body) })
}

func TestScanPacketCountsMessagesBeyondTheLimit(t *testing.T) {
	_, err := DecodePacket([]byte(`{"emitter_id":"e","packet_id":1,"messages":[{"message":"a"},{"message":"b"},{"message":"c"}]}`), "t", time.Now(), Limits{MaxMessages: 2})
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(ve.Error(), "holds 3 messages, more than the limit of 2") {
		t.Fatalf("err = %v", err)
	}
}
