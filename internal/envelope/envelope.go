// Package envelope defines the Kafka record the distributor writes and the
// analyzers read: a JSON document holding one whole packet, plus the record
// headers that carry trace context, tenant and packet id.
package envelope

import (
	"encoding/json"
	"fmt"
	"time"
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

// Marshal encodes e as the record value.
func (e *Envelope) Marshal() ([]byte, error) { return json.Marshal(e) }

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
