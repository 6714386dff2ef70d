package envelope

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/dsplab/dsplab/internal/jsonr"
)

// Summary is what a consumer that only counts needs of an envelope: the
// ids, the receive time and each message's level. Decoding it skips the
// message lines and metadata (the analyzers' hot path).
type Summary struct {
	Tenant     string           `json:"tenant"`
	PacketID   string           `json:"packet_id"`
	EmitterID  string           `json:"emitter_id"`
	ReceivedAt time.Time        `json:"received_at"`
	Messages   []SummaryMessage `json:"messages"`
}

// SummaryMessage is a message of a Summary: its level.
type SummaryMessage struct {
	Level string `json:"level"`
}

// UnmarshalSummary decodes the summary of a record value; it fails where
// Unmarshal fails on the fields it reads.
//
// What the distributor writes (Envelope.Marshal) is read by a hand-written
// scanner (internal/jsonr): encoding/json's reflection was 62 % of an
// analyzer's own work per record (BenchmarkProcessRecord). Anything else —
// a key that only matches a field without regard to case, a field of
// another type, a repeated "messages", invalid JSON — goes to
// encoding/json, so the result and every error are its own
// (FuzzUnmarshalSummaryAgreesWithEncodingJSON).
func UnmarshalSummary(b []byte) (*Summary, error) {
	s, ok := scanSummary(b)
	if !ok {
		s = Summary{}
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("decode envelope: %w", err)
		}
	}
	if s.PacketID == "" {
		return nil, fmt.Errorf("decode envelope: packet_id is empty")
	}
	return &s, nil
}

// errFallBack ends the scan: encoding/json decides.
var errFallBack = fmt.Errorf("not the common shape")

// scanSummary reads b as encoding/json would into a Summary, or returns
// false for anything outside the common shape (see UnmarshalSummary).
func scanSummary(b []byte) (Summary, bool) {
	var out Summary
	s := jsonr.New(b)
	if s.Peek() != '{' {
		return out, false
	}
	sawMessages := false
	err := s.ObjectBytes(func(key []byte) error {
		switch string(key) {
		case "tenant":
			return optString(s, &out.Tenant)
		case "packet_id":
			return optString(s, &out.PacketID)
		case "emitter_id":
			return optString(s, &out.EmitterID)
		case "received_at":
			if s.Null() {
				return nil
			}
			if s.Peek() != '"' {
				return errFallBack
			}
			raw, err := s.Skip()
			if err != nil {
				return err
			}
			return out.ReceivedAt.UnmarshalJSON(raw)
		case "messages":
			if sawMessages { // encoding/json decodes into the first's elements
				return errFallBack
			}
			sawMessages = true
			if s.Null() {
				return nil
			}
			if s.Peek() != '[' {
				return errFallBack
			}
			out.Messages = make([]SummaryMessage, 0, 8)
			return s.Array(func(int) error {
				out.Messages = append(out.Messages, SummaryMessage{})
				return summaryMessage(s, &out.Messages[len(out.Messages)-1])
			})
		}
		return skipUnknown(s, key, "tenant", "packet_id", "emitter_id", "received_at", "messages")
	})
	if err != nil || !s.AtEnd() {
		return Summary{}, false
	}
	return out, true
}

func summaryMessage(s *jsonr.Scanner, m *SummaryMessage) error {
	if s.Null() {
		return nil
	}
	if s.Peek() != '{' {
		return errFallBack
	}
	return s.ObjectBytes(func(key []byte) error {
		if string(key) == "level" {
			if s.Null() {
				return nil
			}
			if s.Peek() != '"' {
				return errFallBack
			}
			l, err := s.StrBytes()
			m.Level = level(l)
			return err
		}
		return skipUnknown(s, key, "level")
	})
}

// optString reads a string into dst; null leaves dst as it is.
func optString(s *jsonr.Scanner, dst *string) error {
	if s.Null() {
		return nil
	}
	if s.Peek() != '"' {
		return errFallBack
	}
	v, err := s.Str()
	*dst = v
	return err
}

// skipUnknown skips the value of a key that is none of fields, unless
// encoding/json would match it to one of them anyway (it ignores case, and
// folds a few non-ASCII letters such as the Kelvin sign): then the scan
// falls back.
func skipUnknown(s *jsonr.Scanner, key []byte, fields ...string) error {
	for i := 0; i < len(key); i++ {
		if key[i] >= utf8.RuneSelf {
			return errFallBack
		}
	}
	for _, f := range fields {
		if bytes.EqualFold(key, []byte(f)) {
			return errFallBack
		}
	}
	_, err := s.Skip()
	return err
}

// level returns b as a string, without an allocation for the levels the
// distributor writes.
func level(b []byte) string {
	switch string(b) {
	case "info":
		return "info"
	case "warn":
		return "warn"
	case "error":
		return "error"
	case "debug":
		return "debug"
	case "fatal":
		return "fatal"
	case "trace":
		return "trace"
	}
	return string(b)
}
