package jsonw

import (
	"encoding/json"
	"testing"
	"time"
)

func TestAppendStringIsEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \ back`, "<html> & </html>", "tab\tnl\ncr\r\b\f\x00\x1f\x7f",
		"ünïcödé ✓ 日本", "line\u2028sep\u2029", "bad \xff utf8 \xc3", "emoji 😀"} {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, s); string(got) != string(want) {
			t.Errorf("AppendString(%q) = %s, encoding/json: %s", s, got, want)
		}
	}
}

func FuzzAppendStringIsEncodingJSON(f *testing.F) {
	f.Add("x<\"\xff\u2028")
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, s); string(got) != string(want) {
			t.Fatalf("AppendString(%q) = %s, encoding/json: %s", s, got, want)
		}
	})
}

func TestAppendTimeIsEncodingJSON(t *testing.T) {
	for _, tm := range []time.Time{time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 5*3600+1800)),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999, time.UTC)} {
		want, err := json.Marshal(tm)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := AppendTime(nil, tm)
		if !ok || string(got) != string(want) {
			t.Errorf("AppendTime(%v) = %s %v, encoding/json: %s", tm, got, ok, want)
		}
	}
	if _, ok := AppendTime(nil, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)); ok {
		t.Error("year 10000 accepted; encoding/json refuses it")
	}
}
