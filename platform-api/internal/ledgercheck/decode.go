package ledgercheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// TODO(ledgerchk): replace with internal/ledger.Decode when the producer
// half lands (the contract's record, item 2).
type ledgerRecord struct {
	V           int       `json:"v"`
	PacketID    string    `json:"packet_id"`
	Analyzer    string    `json:"analyzer"`
	Topic       string    `json:"topic"`
	Partition   int       `json:"partition"`
	Offset      int64     `json:"offset"`
	ProcessedAt time.Time `json:"processed_at"`
	Delivery    string    `json:"delivery"`
}

// DecodeLedger reads a ledger record's value.
func DecodeLedger(b []byte) (string, Processing, error) {
	var r ledgerRecord
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&r); err != nil {
		return "", Processing{}, fmt.Errorf("not a ledger record: %w", err)
	}
	if r.V != 1 || r.PacketID == "" || r.Analyzer == "" {
		return "", Processing{}, errors.New("not a v1 ledger record")
	}
	return r.PacketID, Processing{Analyzer: r.Analyzer, Delivery: r.Delivery, ProcessedAt: r.ProcessedAt,
		Logs: Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}}, nil
}
