// Package packettest builds /ingest packets of a given size for tests and
// benchmarks: plain ones, and the metadata-heavy shape of the memory
// attack (issue 14), whose decoded form is many times its wire size.
package packettest

import (
	"fmt"
	"strings"
)

// Plain is a packet of emitter of at least size bytes: ~110-byte info
// messages without metadata.
func Plain(emitter string, size int) []byte {
	return build(emitter, size, func(b *strings.Builder) {
		b.WriteString(`{"level":"info","message":"message 1: user=42 action=checkout status=ok latency_ms=12 region=eu-west-1 pad"}`)
	})
}

// MetadataHeavy is a packet of emitter of at least size bytes whose
// messages carry 64 small metadata keys each.
func MetadataHeavy(emitter string, size int) []byte {
	return build(emitter, size, func(b *strings.Builder) {
		b.WriteString(`{"message":"m","metadata":{`)
		for k := range 64 {
			if k > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(b, `"k%d":%d`, k, k)
		}
		b.WriteString(`}}`)
	})
}

func build(emitter string, size int, message func(*strings.Builder)) []byte {
	var b strings.Builder
	b.WriteString(`{"emitter_id":"` + emitter + `","packet_id":1,"messages":[`)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		message(&b)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}
