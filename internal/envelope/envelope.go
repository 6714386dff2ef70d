// Package envelope defines the Kafka record the distributor writes and the
// analyzers read: a JSON document holding one whole packet, plus the record
// headers that carry trace context, tenant and packet id.
package envelope

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/dsplab/dsplab/internal/jsonw"
)

// Record header keys.
const (
	HeaderTenant   = "tenant"
	HeaderPacketID = "packet_id"
)

// Source values say which endpoint a packet came in through.
const (
	SourceIngest = "ingest"
	SourceLoki   = "loki"
)

// Message is one log message of a packet.
type Message struct {
	Timestamp time.Time      `json:"timestamp"`
	Level     string         `json:"level"`
	Message   string         `json:"message"`
	Metadata  map[string]any `json:"metadata,omitempty"`
}

// Envelope is the value of every record on a logs.<analyzer-id> topic.
type Envelope struct {
	Tenant     string    `json:"tenant"`
	PacketID   string    `json:"packet_id"`
	EmitterID  string    `json:"emitter_id"`
	ReceivedAt time.Time `json:"received_at"`
	Source     string    `json:"source"`
	Messages   []Message `json:"messages"`
}

// Marshal encodes e as the record value. It is on the distributor's hot
// path, so it appends without reflection; the bytes are exactly those of
// json.Marshal(e) (TestMarshalIsEncodingJSON).
func (e *Envelope) Marshal() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, e.sizeHint()))
}

// AppendJSON appends the encoded envelope to dst.
func (e *Envelope) AppendJSON(dst []byte) ([]byte, error) {
	var ok bool
	dst = append(dst, `{"tenant":`...)
	dst = jsonw.AppendString(dst, e.Tenant)
	dst = append(dst, `,"packet_id":`...)
	dst = jsonw.AppendString(dst, e.PacketID)
	dst = append(dst, `,"emitter_id":`...)
	dst = jsonw.AppendString(dst, e.EmitterID)
	dst = append(dst, `,"received_at":`...)
	if dst, ok = jsonw.AppendTime(dst, e.ReceivedAt); !ok {
		return nil, fmt.Errorf("encode envelope: received_at %v: year outside [0,9999]", e.ReceivedAt)
	}
	dst = append(dst, `,"source":`...)
	dst = jsonw.AppendString(dst, e.Source)
	if e.Messages == nil {
		return append(dst, `,"messages":null}`...), nil
	}
	dst = append(dst, `,"messages":[`...)
	for i := range e.Messages {
		m := &e.Messages[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"timestamp":`...)
		if dst, ok = jsonw.AppendTime(dst, m.Timestamp); !ok {
			return nil, fmt.Errorf("encode envelope: messages[%d].timestamp %v: year outside [0,9999]", i, m.Timestamp)
		}
		dst = append(dst, `,"level":`...)
		dst = jsonw.AppendString(dst, m.Level)
		dst = append(dst, `,"message":`...)
		dst = jsonw.AppendString(dst, m.Message)
		if len(m.Metadata) > 0 {
			dst = append(dst, `,"metadata":`...)
			if out, ok := appendStringMap(dst, m.Metadata); ok {
				dst = out
			} else { // values other than strings: the reflective encoder
				md, err := json.Marshal(m.Metadata)
				if err != nil {
					return nil, fmt.Errorf("encode envelope: messages[%d].metadata: %w", i, err)
				}
				dst = append(dst, md...)
			}
		}
		dst = append(dst, '}')
	}
	return append(dst, "]}"...), nil
}

// appendStringMap appends md as json.Marshal does (keys sorted bytewise)
// when every value is a string, the seed's metadata; ok is false, with dst
// unchanged in content, for any other value.
func appendStringMap(dst []byte, md map[string]any) ([]byte, bool) {
	var buf [16]string
	keys := buf[:0]
	for k, v := range md {
		if _, ok := v.(string); !ok {
			return dst, false
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for j, k := range keys {
		if j > 0 {
			dst = append(dst, ',')
		}
		dst = jsonw.AppendString(dst, k)
		dst = append(dst, ':')
		dst = jsonw.AppendString(dst, md[k].(string))
	}
	return append(dst, '}'), true
}

func (e *Envelope) sizeHint() int {
	n := 160 + len(e.Tenant) + len(e.PacketID) + len(e.EmitterID)
	for i := range e.Messages {
		n += 90 + len(e.Messages[i].Level) + len(e.Messages[i].Message)
		if len(e.Messages[i].Metadata) > 0 {
			n += 14 // ,"metadata":{}
			for k, v := range e.Messages[i].Metadata {
				n += len(k) + 6 // "k":"",
				if s, ok := v.(string); ok {
					n += len(s)
				}
			}
		}
	}
	return n
}

// Unmarshal decodes a record value.
func Unmarshal(b []byte) (*Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("decode envelope: %w", err)
	}
	if e.PacketID == "" {
		return nil, fmt.Errorf("decode envelope: packet_id is empty")
	}
	return &e, nil
}
