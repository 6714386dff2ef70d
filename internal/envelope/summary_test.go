package envelope

import (
	"encoding/json"
	"reflect"
	"testing"
)

// summarySeeds: what the distributor writes, and each way out of the
// common shape the scanner reads.
func summarySeeds(t testing.TB) [][]byte {
	b, err := sample().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	seeds := [][]byte{b}
	for _, s := range []string{
		`{"tenant":"t","packet_id":"p","emitter_id":"e","received_at":"2026-12-06T09:30:01.5Z","messages":[{"level":"info"},{"level":"WARN","message":"x"}]}`,
		`{"packet_id":"p","messages":null}`, `{"packet_id":"p","messages":[null,{},{"level":null}]}`,
		`{"Packet_ID":"p"}`, `{"pac\u212aet_id":"p"}`, `{"packet\u005fid":"p"}`, `{"packet_id":"p","packet_id":null}`,
		`{"packet_id":"p","messages":[{"level":"a"},{"level":"b"}],"messages":[{}]}`, `{"packet_id":1}`,
		`{"packet_id":"p","received_at":"2026-12-06"}`, `{"packet_id":"p","received_at":17}`, `{"packet_id":"p","received_at":null}`,
		`{"packet_id":"p","messages":[{"LEVEL":"x"}]}`, `{"packet_id":"p","messages":[{"level":"info","level":"error"}]}`,
		`{"packet_id":"p","messages":{}}`, `{"packet_id":"p","messages":[1]}`, `{"packet_id":"p"} x`, `null`, `[]`, `{"packet_id":"p\xff"}`,
		`{"packet_id":"p","extra":{"deep":[1,2,{"a":"b"}]},"source":"ingest"}`, `{"tenant":"\ud800","packet_id":"\"q\""}`,
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// The hand-written path must give what encoding/json gives: the same
// summary, or an error where it errs. (Errors need not be the same text:
// the fallback makes them encoding/json's.)
func checkSummary(t *testing.T, b []byte) {
	t.Helper()
	var want Summary
	werr := json.Unmarshal(b, &want)
	got, ok := scanSummary(b)
	if !ok {
		return // encoding/json decides: the same by construction
	}
	if werr != nil {
		t.Fatalf("scanner read %q; encoding/json: %v", b, werr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("scanner read %q as\n%#v\nencoding/json as\n%#v", b, got, want)
	}
	if _, err := UnmarshalSummary(b); (err == nil) != (want.PacketID != "") {
		t.Fatalf("UnmarshalSummary(%q): %v", b, err)
	}
}

func TestUnmarshalSummaryAgreesWithEncodingJSON(t *testing.T) {
	for _, b := range summarySeeds(t) {
		checkSummary(t, b)
	}
	// and the common shape is the scanner's, not the fallback's
	b, _ := sample().Marshal()
	if _, ok := scanSummary(b); !ok {
		t.Fatal("the distributor's envelope fell back to encoding/json")
	}
}

func FuzzUnmarshalSummaryAgreesWithEncodingJSON(f *testing.F) {
	for _, b := range summarySeeds(f) {
		f.Add(b)
	}
	f.Fuzz(checkSummary)
}
