package ingest

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEveryTimestampFormALogClientSendsIsReadAsTheSameInstant(t *testing.T) {
	seed := time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC) // 1640995200: the seed's README example
	tests := []struct {
		name, ts string
		want     time.Time
	}{
		{"integer milliseconds, as the seed's emitter (time.Now().UnixMilli())", `1640995200000`, seed},
		{"integer seconds", `1640995200`, seed},
		{"fractional seconds, as Python's time.time()", `1640995200.25`, seed.Add(250 * time.Millisecond)},
		{"integer microseconds", `1640995200000123`, seed.Add(123 * time.Microsecond)},
		{"integer nanoseconds, as Go's UnixNano", `1640995200000000007`, seed.Add(7)},
		{"fractional milliseconds", `1640995200123.456789`, seed.Add(123456789)},
		{"an exponent", `1.6409952e12`, seed},
		{"digits below the nanosecond are dropped", `1640995200.9999999999`, seed.Add(999999999)},
		{"RFC 3339, as before", `"2022-01-01T01:00:00+01:00"`, seed},
		{"RFC 3339 with nanoseconds", `"2022-01-01T00:00:00.000000007Z"`, seed.Add(7)},
		{"the largest number of seconds", `99999999999`, time.Unix(99999999999, 0)},
		{"1e11 is milliseconds", `1e11`, time.Unix(1e8, 0)},
		{"1e14 is microseconds", `100000000000000`, time.Unix(1e8, 0)},
		{"1e17 is nanoseconds", `1e17`, time.Unix(1e8, 0)},
		{"the largest number of nanoseconds", `9999999999999999999`, time.Unix(9999999999, 999999999)},
		{"zero is the epoch", `0`, time.Unix(0, 0)},
		{"minus zero is the epoch", `-0.0`, time.Unix(0, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, err := DecodePacket([]byte(`{"emitter_id":"e","packet_id":"p","messages":[{"message":"m","timestamp":`+tc.ts+`}]}`), "t", now, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if got := env.Messages[0].Timestamp; !got.Equal(tc.want) {
				t.Fatalf("timestamp %s = %v, want %v", tc.ts, got, tc.want)
			}
			b, err := env.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			// A number becomes UTC; a string keeps the offset it was sent with.
			want := `"timestamp":"` + tc.want.UTC().Format(time.RFC3339Nano) + `"`
			if strings.Contains(tc.ts, "+01:00") {
				want = `"timestamp":"2022-01-01T01:00:00+01:00"`
			}
			if !strings.Contains(string(b), want) {
				t.Fatalf("envelope %s does not carry %s", b, want)
			}
		})
	}
}

func TestTimestampsThatAreNotAnInstantGetA400NamingTheField(t *testing.T) {
	for ts, mention := range map[string]string{
		`-1640995200000`:         "before the Unix epoch",
		`10000000000000000000`:   "1e19 or more",
		`1e400`:                  "1e19 or more",
		`true`:                   "RFC 3339 string or a number",
		`{"unix":1}`:             "RFC 3339 string or a number",
		`"1640995200000"`:        "cannot parse",
		`"2022-01-01 00:00:00Z"`: "cannot parse",
	} {
		_, err := DecodePacket([]byte(`{"emitter_id":"e","packet_id":"p","messages":[{"message":"m","timestamp":`+ts+`}]}`), "t", now, Limits{})
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "messages[0].timestamp") || !strings.Contains(err.Error(), mention) {
			t.Errorf("timestamp %s: err = %v, want malformed naming messages[0].timestamp and %q", ts, err, mention)
		}
	}
}

func BenchmarkParseEpochNumber(b *testing.B) {
	num := []byte("1640995200000")
	for b.Loop() {
		if _, err := parseEpochNumber(num); err != nil {
			b.Fatal(err)
		}
	}
}
