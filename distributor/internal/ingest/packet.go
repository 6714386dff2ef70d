// Package ingest decodes and validates what emitters send the distributor:
// /ingest packets (JSON) and Loki pushes (JSON, or protobuf with snappy as
// Promtail and Alloy send it). Every decoder turns a request into one
// envelope.Envelope; a packet is atomic and is never split.
package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dsplab/dsplab/internal/envelope"
	"github.com/dsplab/dsplab/internal/jsonr"
)

// Limits bound what one request may hold.
type Limits struct {
	MaxMessages      int // messages (Loki entries) in one packet
	MaxMessageBytes  int // bytes of one message line
	MaxDecompressed  int // bytes after decompression
	MaxIDLength      int // emitter_id, packet_id, tenant
	MaxMetadataPairs int // metadata keys of one message
	// Reserve, when set, is asked for the bytes a decoder is about to
	// hold (estimated, see cost.go) before it decodes; its error is
	// returned as it is, and the decoder stops.
	Reserve func(n int64) error
}

// DefaultLimits are used when a field of Limits is zero.
var DefaultLimits = Limits{MaxMessages: 10_000, MaxMessageBytes: 256 << 10, MaxDecompressed: 20 << 20, MaxIDLength: 256, MaxMetadataPairs: 64}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	d.Reserve = l.Reserve
	if l.MaxMessages > 0 {
		d.MaxMessages = l.MaxMessages
	}
	if l.MaxMessageBytes > 0 {
		d.MaxMessageBytes = l.MaxMessageBytes
	}
	if l.MaxDecompressed > 0 {
		d.MaxDecompressed = l.MaxDecompressed
	}
	if l.MaxIDLength > 0 {
		d.MaxIDLength = l.MaxIDLength
	}
	if l.MaxMetadataPairs > 0 {
		d.MaxMetadataPairs = l.MaxMetadataPairs
	}
	return d
}

// packetIn is the wire form of an /ingest packet.
type packetIn struct {
	EmitterID string      `json:"emitter_id"`
	PacketID  flexID      `json:"packet_id"`
	Messages  []messageIn `json:"messages"`
}

type messageIn struct {
	Timestamp *time.Time     `json:"timestamp"` // RFC 3339 or a number since the epoch (timestamp.go)
	Level     string         `json:"level"`
	Message   *string        `json:"message"`
	Metadata  map[string]any `json:"metadata"`
}

// flexID accepts a JSON string or an integer, since emitters number their
// packets (k6 scripts send increasing integers per emitter).
type flexID string

func (f *flexID) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexID(s)
		return nil
	}
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if _, err := strconv.ParseUint(string(b), 10, 64); err != nil {
		return fmt.Errorf("packet_id must be a string or a non-negative integer")
	}
	*f = flexID(b)
	return nil
}

// knownLevels are the levels analyzers count separately; others are kept
// as sent (lower-cased) but must be short.
const maxLevelLen = 16

// DecodePacket decodes and validates an /ingest body for tenant. now stamps
// received_at and fills a missing message timestamp.
func DecodePacket(body []byte, tenant string, now time.Time, lim Limits) (*envelope.Envelope, error) {
	lim = lim.withDefaults()
	if err := lim.reserve(jsonCost(body)); err != nil {
		return nil, err
	}
	in, total, err := scanPacket(body, lim.MaxMessages)
	if err != nil {
		return nil, malformed("decode packet JSON: %v", err)
	}
	var p problems
	checkID(&p, "emitter_id", in.EmitterID, lim.MaxIDLength)
	checkID(&p, "packet_id", string(in.PacketID), lim.MaxIDLength)
	switch {
	case total == 0:
		p.add("messages", "must hold at least one message")
	case total > lim.MaxMessages:
		p.add("messages", fmt.Sprintf("holds %d messages, more than the limit of %d", total, lim.MaxMessages))
	}
	env := &envelope.Envelope{
		Tenant: tenant, PacketID: string(in.PacketID), EmitterID: in.EmitterID,
		ReceivedAt: now, Source: envelope.SourceIngest,
		Messages: make([]envelope.Message, 0, min(len(in.Messages), lim.MaxMessages)),
	}
	for i, m := range in.Messages {
		if i >= lim.MaxMessages {
			break
		}
		field := "messages[" + strconv.Itoa(i) + "]"
		out := envelope.Message{Level: normLevel(m.Level), Metadata: m.Metadata}
		switch {
		case m.Message == nil:
			p.add(field+".message", "is required")
		case len(*m.Message) > lim.MaxMessageBytes:
			p.add(field+".message", fmt.Sprintf("is %d bytes, more than the limit of %d", len(*m.Message), lim.MaxMessageBytes))
		case !utf8.ValidString(*m.Message):
			p.add(field+".message", "is not valid UTF-8")
		default:
			out.Message = *m.Message
		}
		if len(out.Level) > maxLevelLen {
			p.add(field+".level", fmt.Sprintf("is longer than %d characters", maxLevelLen))
		}
		if len(m.Metadata) > lim.MaxMetadataPairs {
			p.add(field+".metadata", fmt.Sprintf("has %d keys, more than the limit of %d", len(m.Metadata), lim.MaxMetadataPairs))
		}
		if m.Timestamp != nil {
			out.Timestamp = *m.Timestamp
		} else {
			out.Timestamp = now
		}
		env.Messages = append(env.Messages, out)
	}
	if err := p.err("packet"); err != nil {
		return nil, err
	}
	return env, nil
}

func checkID(p *problems, field, v string, max int) {
	switch {
	case v == "":
		p.add(field, "is required")
	case len(v) > max:
		p.add(field, fmt.Sprintf("is longer than %d bytes", max))
	case !utf8.ValidString(v):
		p.add(field, "is not valid UTF-8")
	}
}

// normLevel lower-cases a level; an empty level means info.
func normLevel(l string) string {
	if l == "" {
		return "info"
	}
	return strings.ToLower(l)
}

// scanner is the JSON scanner with the packet's own readers.
type scanner struct{ *jsonr.Scanner }

// scanPacket reads an /ingest body into packetIn with the same meaning as
// encoding/json.Unmarshal into it (field names match exactly, though; the
// API documents them in lower case), keeping at most maxMessages messages
// and counting all of them.
func scanPacket(body []byte, maxMessages int) (in packetIn, total int, err error) {
	s := scanner{jsonr.New(body)}
	if s.Null() {
		err = s.end()
		return in, 0, err
	}
	err = s.ObjectBytes(func(key []byte) error {
		switch string(key) {
		case "emitter_id":
			return s.optString(&in.EmitterID, field{-1, "emitter_id"})
		case "packet_id":
			if s.Peek() == '"' { // a string id: decoded here, not by encoding/json
				id, err := s.Str()
				in.PacketID = flexID(id)
				return err
			}
			raw, err := s.Skip()
			if err != nil {
				return err
			}
			if err := in.PacketID.UnmarshalJSON(raw); err != nil {
				return fmt.Errorf("packet_id: %w", err)
			}
			return nil
		case "messages":
			if s.Null() {
				in.Messages, total = nil, 0
				return nil
			}
			if s.Peek() != '[' {
				return errors.New("messages: must be an array")
			}
			in.Messages, total = in.Messages[:0], 0
			return s.Array(func(i int) error {
				total++
				if i >= maxMessages {
					_, err := s.Skip()
					return err
				}
				in.Messages = append(in.Messages, messageIn{})
				return s.message(&in.Messages[len(in.Messages)-1], i)
			})
		}
		_, err := s.Skip()
		return err
	})
	if err == nil {
		err = s.end()
	}
	return in, total, err
}

// end checks that nothing but white space follows the value.
func (s scanner) end() error {
	if !s.AtEnd() {
		return s.Errorf("trailing data after the packet object")
	}
	return nil
}

// field names a field in an error: a packet's (i < 0) or messages[i]'s.
// It is formatted only when there is an error to report.
type field struct {
	i    int
	name string
}

// String is the field's name as errors show it.
func (f field) String() string {
	if f.i < 0 {
		return f.name
	}
	return "messages[" + strconv.Itoa(f.i) + "]." + f.name
}

// optString reads a string into dst; null leaves dst as it is.
func (s scanner) optString(dst *string, field field) error {
	switch s.Peek() {
	case 'n':
		return s.Literal("null")
	case '"':
		v, err := s.Str()
		*dst = v
		return err
	}
	if _, err := s.Skip(); err != nil {
		return err
	}
	return fmt.Errorf("%s: must be a string", field)
}

func (s scanner) message(m *messageIn, i int) error {
	if s.Null() {
		return nil
	}
	if s.Peek() != '{' {
		if _, err := s.Skip(); err != nil {
			return err
		}
		return fmt.Errorf("messages[%d]: must be an object", i)
	}
	return s.ObjectBytes(func(key []byte) error {
		switch string(key) {
		case "message":
			if s.Null() {
				m.Message = nil
				return nil
			}
			var v string
			if err := s.optString(&v, field{i, "message"}); err != nil {
				return err
			}
			m.Message = &v
			return nil
		case "level":
			return s.optString(&m.Level, field{i, "level"})
		case "timestamp":
			if s.Null() {
				m.Timestamp = nil
				return nil
			}
			c := s.Peek()
			raw, err := s.Skip()
			if err != nil {
				return err
			}
			var t time.Time
			switch {
			case c == '"': // RFC 3339
				err = t.UnmarshalJSON(raw)
			case c == '-' || c >= '0' && c <= '9': // since the epoch, unit by magnitude (timestamp.go)
				t, err = parseEpochNumber(raw)
			default:
				err = errTimestampType
			}
			if err != nil {
				return fmt.Errorf("messages[%d].timestamp: %w", i, err)
			}
			m.Timestamp = &t
			return nil
		case "metadata":
			// The seed's emitters send a few string values: read here.
			// Any other shape is encoding/json's, as before.
			if m.Metadata == nil { // a repeated key merges (encoding/json): left to it
				if md, ok := s.StringMap(); ok {
					m.Metadata = md
					return nil
				}
			}
			raw, err := s.Skip()
			if err != nil {
				return err
			}
			if err := json.Unmarshal(raw, &m.Metadata); err != nil {
				return fmt.Errorf("messages[%d].metadata: %w", i, err)
			}
			return nil
		}
		_, err := s.Skip()
		return err
	})
}
