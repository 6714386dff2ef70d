package ingest

import (
	"encoding/binary"
	"errors"
)

// Loki's protobuf push decodes into a struct per entry and per structured
// metadata pair: a few bytes on the wire can become ~100 in memory, and
// the decoder builds them all before the entry limit can be checked. So
// entries and pairs are counted on the wire first (PushRequest: streams
// = 1; Stream: entries = 2; Entry: structuredMetadata = 3).

var errProtoWire = errors.New("protobuf: bad wire format")

// protoCounts counts the entries and structured metadata pairs of a
// PushRequest without decoding it.
func protoCounts(b []byte) (entries, pairs int, err error) {
	err = eachField(b, func(num int, stream []byte) error {
		if num != 1 {
			return nil
		}
		return eachField(stream, func(num int, entry []byte) error {
			if num != 2 {
				return nil
			}
			entries++
			return eachField(entry, func(num int, _ []byte) error {
				if num == 3 {
					pairs++
				}
				return nil
			})
		})
	})
	return entries, pairs, err
}

// eachField calls fn with the number and contents of every
// length-delimited field of message b, skipping the other wire types.
func eachField(b []byte, fn func(num int, val []byte) error) error {
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return errProtoWire
		}
		b = b[n:]
		switch key & 7 {
		case 0: // varint
			if _, n = binary.Uvarint(b); n <= 0 {
				return errProtoWire
			}
			b = b[n:]
		case 1: // 64-bit
			if len(b) < 8 {
				return errProtoWire
			}
			b = b[8:]
		case 5: // 32-bit
			if len(b) < 4 {
				return errProtoWire
			}
			b = b[4:]
		case 2: // length-delimited
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return errProtoWire
			}
			if err := fn(int(key>>3), b[n:n+int(l)]); err != nil {
				return err
			}
			b = b[n+int(l):]
		default: // groups: Loki's messages have none
			return errProtoWire
		}
	}
	return nil
}
