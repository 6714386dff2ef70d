package ingest

// What a decoded request costs in memory, estimated before it is decoded,
// for the distributor's memory budget (Limits.Reserve). Measured with
// BenchmarkDecodeMemory: a 4.8 MB packet of messages with 64 metadata keys
// each holds 11.6 times its size once decoded and encoded (maps of small
// values cost ~100 bytes per key); a packet of plain messages 3.1 times.
// The estimate is a little above both: two copies of the body (its
// decoded strings, the encoded envelope; the body itself is reserved as it
// is read) plus memberBytes per JSON member or element (':' and '['
// counted, a fast pass over the body).

import "bytes"

const (
	bodyCopies  = 2
	memberBytes = 128
)

// jsonCost estimates the memory of decoding a JSON body and encoding it.
func jsonCost(body []byte) int64 {
	return bodyCopies*int64(len(body)) + memberBytes*int64(bytes.Count(body, []byte{':'})+bytes.Count(body, []byte{'['}))
}

// reserve asks the budget for n bytes (nothing without one).
func (l Limits) reserve(n int64) error {
	if l.Reserve == nil {
		return nil
	}
	return l.Reserve(n)
}
