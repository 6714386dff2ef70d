package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsplab/dsplab/internal/jsonr"
)

// referenceScan decodes an /ingest body with encoding/json, field by field
// and with exact (case-sensitive) field names: the meaning scanPacket must
// have. (encoding/json on the struct would also match "Emitter_ID" and
// "meſſages"; scanPacket deliberately does not.) Like encoding/json on a
// struct, it decodes every occurrence of a repeated key (any may be
// invalid) and the last one wins.
func referenceScan(body []byte) (in packetIn, total int, err error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return in, 0, err
	}
	fields, err := objectFields(body)
	if err != nil {
		return in, 0, err
	}
	for _, f := range fields {
		switch f.key {
		case "emitter_id":
			err = json.Unmarshal(f.raw, &in.EmitterID)
		case "packet_id":
			err = json.Unmarshal(f.raw, &in.PacketID)
		case "messages":
			in.Messages, total, err = referenceMessages(f.raw)
		}
		if err != nil {
			return in, 0, err
		}
	}
	return in, total, nil
}

func referenceMessages(raw json.RawMessage) ([]messageIn, int, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil || elems == nil {
		return nil, 0, err
	}
	msgs := []messageIn{}
	for _, e := range elems {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(e, &obj); err != nil {
			return nil, 0, err
		}
		fields, err := objectFields(e)
		if err != nil {
			return nil, 0, err
		}
		var m messageIn
		for _, f := range fields {
			switch f.key {
			case "timestamp":
				m.Timestamp, err = referenceTimestamp(f.raw)
			case "message":
				err = json.Unmarshal(f.raw, &m.Message)
			case "level":
				err = json.Unmarshal(f.raw, &m.Level)
			case "metadata":
				err = json.Unmarshal(f.raw, &m.Metadata)
			}
			if err != nil {
				return nil, 0, err
			}
		}
		msgs = append(msgs, m)
	}
	return msgs, len(elems), nil
}

type objectField struct {
	key string
	raw json.RawMessage
}

// objectFields lists the members of a JSON object (already checked to be
// one, or null) in order, repeated keys included.
func objectFields(raw []byte) ([]objectField, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return nil, err // null: no members
	}
	var out []objectField
	for d.More() {
		k, err := d.Token()
		if err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, objectField{k.(string), v})
	}
	return out, nil
}

// referenceTimestamp is timestamp.go's rule written the obvious way: a
// string through time.Time's own decoder, a number through math/big's exact
// rationals, its unit found by comparing it with the thresholds.
func referenceTimestamp(raw json.RawMessage) (*time.Time, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		var t time.Time
		err := json.Unmarshal(raw, &t)
		return &t, err
	case json.Number:
		t, err := referenceEpoch(v.String())
		return &t, err
	}
	return nil, errors.New("timestamp: neither a string nor a number")
}

func referenceEpoch(num string) (time.Time, error) {
	epoch := time.Unix(0, 0).UTC()
	errNegative, errTooLarge := errors.New("negative"), errors.New("too large")
	mant, exp, hasExp := strings.Cut(strings.ToLower(num), "e")
	nonzero := strings.Trim(mant, "-0.") != ""
	// math/big would compute 10^exp exactly: an exponent beyond the
	// mantissa's length by 40 makes the value over 1e40 or under 1e-40,
	// decided without it.
	if e, err := strconv.Atoi(strings.TrimPrefix(exp, "+")); hasExp && (err != nil || e > len(mant)+40 || e < -(len(mant)+40)) {
		switch {
		case !nonzero:
			return epoch, nil
		case strings.HasPrefix(mant, "-"):
			return time.Time{}, errNegative
		case !strings.HasPrefix(exp, "-"):
			return time.Time{}, errTooLarge
		}
		return epoch, nil // below a nanosecond
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return time.Time{}, fmt.Errorf("big.Rat refuses %q", num)
	}
	if r.Sign() < 0 {
		return time.Time{}, errNegative
	}
	for _, u := range []struct{ below, perSecond uint64 }{{1e11, 1}, {1e14, 1e3}, {1e17, 1e6}, {1e19, 1e9}} {
		if r.Cmp(new(big.Rat).SetInt(new(big.Int).SetUint64(u.below))) >= 0 {
			continue
		}
		ns := new(big.Rat).Mul(r, big.NewRat(1e9, int64(u.perSecond)))
		q := new(big.Int).Quo(ns.Num(), ns.Denom()) // floor: ns >= 0
		sec, nsec := new(big.Int).QuoRem(q, big.NewInt(1e9), new(big.Int))
		return time.Unix(sec.Int64(), nsec.Int64()).UTC(), nil
	}
	return time.Time{}, errTooLarge
}

// hasDuplicateKeys reports whether any object in body repeats a key (the
// two decoders then legitimately differ: field by field vs. last wins).
func hasDuplicateKeys(body []byte) bool {
	s := scanner{jsonr.New(body)}
	dup := false
	var walk func() error
	walk = func() error {
		switch s.Peek() {
		case '{':
			seen := map[string]bool{}
			return s.Object(func(k string) error {
				dup = dup || seen[k]
				seen[k] = true
				return walk()
			})
		case '[':
			return s.Array(func(int) error { return walk() })
		}
		_, err := s.Skip()
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
	// timestamps: every form timestamp.go accepts or refuses
	`{"emitter_id":"emitter-1","messages":[{"timestamp":1640995200000,"level":"INFO","message":"Sample log message 1 from auth","metadata":{"instance":"instance-3","service":"demo-service","version":"1.0.0"}}],"packet_id":"emitter-1-42"}`,
	`{"messages":[{"timestamp":1640995200},{"timestamp":1640995200.5},{"timestamp":1640995200123456},{"timestamp":1640995200123456789}]}`,
	`{"messages":[{"timestamp":1.6409952e9},{"timestamp":1.6409952E+12},{"timestamp":16409952000e-1},{"timestamp":1640995200.123456789123},{"timestamp":1640995200123.4567}]}`,
	`{"messages":[{"timestamp":99999999999},{"timestamp":99999999999.999999999999},{"timestamp":100000000000},{"timestamp":1e11},{"timestamp":99999999999999.9}]}`,
	`{"messages":[{"timestamp":1e14},{"timestamp":99999999999999999},{"timestamp":1e17},{"timestamp":9999999999999999999},{"timestamp":9999999999999999999.99}]}`,
	`{"messages":[{"timestamp":0},{"timestamp":-0},{"timestamp":0.0},{"timestamp":-0.0e5},{"timestamp":0.000000001},{"timestamp":0.0000000009},{"timestamp":1e-999999999}]}`,
	`{"messages":[{"timestamp":10000000000000000000}]}`, `{"messages":[{"timestamp":1e19}]}`, `{"messages":[{"timestamp":1e999999999}]}`, `{"messages":[{"timestamp":1e99999999999999999999}]}`,
	`{"messages":[{"timestamp":-1}]}`, `{"messages":[{"timestamp":-1e-999999999}]}`, `{"messages":[{"timestamp":-1640995200000}]}`, `{"messages":[{"timestamp":0.0000e99999999999999}]}`,
	`{"messages":[{"timestamp":true}]}`, `{"messages":[{"timestamp":{}}]}`, `{"messages":[{"timestamp":[1]}]}`, `{"messages":[{"timestamp":"1640995200000"}]}`, `{"messages":[{"timestamp":null}]}`,
	`{"messages":[{"timestamp":01}]}`, `{"messages":[{"timestamp":1.}]}`, `{"messages":[{"timestamp":1e}]}`, `{"messages":[{"timestamp":+1}]}`,
	// a repeated key: every occurrence is decoded (any may be invalid), the last wins
	`{"messages":[{"timestamp":"","timestamp":0}]}`, `{"messages":[{"timestamp":0,"timestamp":-1}]}`, `{"messages":[{"timestamp":1,"timestamp":2}],"messages":null}`,
	`{"emitter_id":"a","emitter_id":1}`, `{"packet_id":{},"packet_id":1}`, `{"messages":[{"metadata":{"a":1},"metadata":{"b":2}}]}`,
	// metadata of string values (read by the scanner) and every way out of that shape (left to encoding/json)
	`{"messages":[{"metadata":{}}]}`, `{"messages":[{"metadata":{ "b" : "x" , "a":"y\u00e9\n" }}]}`, `{"messages":[{"metadata":{"a":"x","a":"y"}}]}`,
	`{"messages":[{"metadata":{"a":"x","b":2}}]}`, `{"messages":[{"metadata":{"a":"x","b":}}]}`, `{"messages":[{"metadata":{"a":"x",}}]}`,
	`{"messages":[{"metadata":{"a":"\x"}}]}`, `{"messages":[{"metadata":{"a":"x"},"metadata":{"b":"y"}}]}`, `{"messages":[{"metadata":{"a":"x"},"metadata":{"a":1}}]}`,
	`{"messages":[{"metadata":null}]}`, `{"messages":[{"metadata":{"a":"x"}`, `{"messages":[{"metadata":{"a" "x"}}]}`, "{\"messages\":[{\"metadata\":{\"\xff\":\"\xfe\"}}]}",
}

func TestScanPacketAgreesWithEncodingJSON(t *testing.T) {
	for _, c := range agreementCases {
		checkAgreement(t, []byte(c))
	}
	checkAgreement(t, []byte(strings.Repeat("[", jsonr.MaxDepth+5)+strings.Repeat("]", jsonr.MaxDepth+5)))
}

// FuzzDecodePacketAgreesWithEncodingJSON: the hand-written scanner accepts
// exactly what encoding/json accepts and decodes it to the same values;
// timestamps by timestamp.go's rule, which referenceTimestamp writes again
// independently (math/big).
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
