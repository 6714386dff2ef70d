package ledgercheck

import "github.com/dsplab/dsplab/internal/ledger"

// DecodeLedger reads a ledger record's value with the analyzers' own
// decoder (internal/ledger): anything it refuses is unreadable.
func DecodeLedger(b []byte) (string, Processing, error) {
	r, err := ledger.Decode(b)
	if err != nil {
		return "", Processing{}, err
	}
	return r.PacketID, Processing{Analyzer: r.Analyzer, Delivery: string(r.Delivery), ProcessedAt: r.ProcessedAt,
		Logs: Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}}, nil
}
