// Package ids makes the ids of the platform's records: a prefix naming the
// kind, a dash and 12 random hex digits (f-1a2b3c4d5e6f). They also name
// the records' containers and Docker labels, so they are lower case and
// short.
package ids

import (
	"crypto/rand"
	"encoding/hex"
)

// Prefixes of the record kinds.
const (
	Fault      = "f"
	Traffic    = "t"
	Experiment = "x"
)

// New returns a fresh id of the kind prefix.
func New(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return prefix + "-" + hex.EncodeToString(b)
}
