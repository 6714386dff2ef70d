// Package ledgercheck is the exact delivery ledger: a Jepsen-style checker
// (after Jepsen's total-queue checker: every element attempted, acknowledged,
// dequeued, lost, duplicated or unexpected) that reads Kafka itself after an
// experiment. The logs.* topics hold every packet the distributor wrote
// before answering 2xx; the ledger topic (ledger.processed) holds one record
// per processing of a packet by an analyzer. Both are read for one traffic
// job's packets, found by their id prefix "<job id>-", and compared packet
// by packet:
//
//	written     ids in logs.*                      processed  ids in the ledger
//	lost        written, never processed           duplicates processed more than once
//	unexpected  processed, never written           unreadable ledger records that do not decode
//
// The invariant: written = processed - unexpected + lost, for every history
// in any order (a tally counts sets, never sequences).
package ledgercheck

import (
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/dsplab/dsplab/internal/envelope"
)

// MaxExamples is how many example ids each count shows.
const MaxExamples = 10

// Position is where a record is in Kafka.
type Position struct {
	Topic     string `json:"topic" example:"logs.analyzer-2"`
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset" example:"1234"`
}

// Record is a Kafka record as the checker reads it.
type Record struct {
	Position
	Time    time.Time
	Key     []byte
	Value   []byte
	Headers []kafka.Header
}

// Processing is one ledger record: an analyzer processed a packet.
type Processing struct {
	Analyzer    string    `json:"analyzer" example:"analyzer-2"`
	Delivery    string    `json:"delivery,omitempty" example:"at-least-once"`
	ProcessedAt time.Time `json:"processedAt"`
	// Logs is the logs.* record that was processed, as the analyzer
	// reported it; Ledger is the ledger record itself.
	Logs   Position `json:"logs"`
	Ledger Position `json:"ledger"`
}

// Example is one packet behind a count, and where it was.
type Example struct {
	PacketID  string       `json:"packetId" example:"t-1a2b3c4d5e6f-3-118"`
	Written   []Position   `json:"written,omitempty"`
	Processed []Processing `json:"processed,omitempty"`
}

// Unreadable is a ledger record that is not a ledger record.
type Unreadable struct {
	Position
	Error string `json:"error"`
}

// Examples are up to MaxExamples packets of each count, by id.
type Examples struct {
	Lost       []Example    `json:"lost"`
	Duplicates []Example    `json:"duplicates"`
	Unexpected []Example    `json:"unexpected"`
	Unreadable []Unreadable `json:"unreadable"`
}

// Counts are the exact ledger's numbers for one job's packets.
type Counts struct {
	// Written is the packet ids in logs.*; WrittenTwice those written
	// more than once (a retried write whose first attempt landed).
	Written      int64 `json:"written"`
	WrittenTwice int64 `json:"writtenTwice"`
	// Processed is the packet ids in the ledger (each once);
	// Processings the ledger records (each processing).
	Processed   int64 `json:"processed"`
	Processings int64 `json:"processings"`
	// Duplicates are the ids processed more than once; Redelivered those
	// of them whose same logs.* record was processed more than once (a
	// re-delivery after a crash, not a second copy of the packet).
	Duplicates  int64 `json:"duplicates"`
	Redelivered int64 `json:"redelivered"`
	Lost        int64 `json:"lost"`
	Unexpected  int64 `json:"unexpected"`
	// Unreadable counts ledger records that do not decode (whatever job:
	// an unreadable record names none).
	Unreadable int64 `json:"unreadable"`
}

// Decoder reads a ledger record's value.
type Decoder func(b []byte) (packetID string, p Processing, err error)

// Tally counts one job's packets from the records it is handed, in any
// order. Not safe for concurrent use.
type Tally struct {
	prefixes []string
	decode   Decoder
	packets  map[string]*packet
	// records is every record handed in; others those of other jobs.
	records, others int64
	unreadable      []Unreadable
	nUnreadable     int64
	processings     int64
}

type packet struct {
	written   []Position
	processed []Processing
}

// NewTally counts the packets whose id starts with "<job id>-" for one of
// jobIDs.
func NewTally(jobIDs []string, decode Decoder) *Tally {
	t := &Tally{decode: decode, packets: map[string]*packet{}}
	for _, id := range jobIDs {
		t.prefixes = append(t.prefixes, id+"-")
	}
	return t
}

func (t *Tally) mine(id string) bool {
	for _, p := range t.prefixes {
		if strings.HasPrefix(id, p) {
			return true
		}
	}
	return false
}

func (t *Tally) get(id string) *packet {
	p := t.packets[id]
	if p == nil {
		p = &packet{}
		t.packets[id] = p
	}
	return p
}

// Written takes a record of a logs.* topic. Its packet id is the
// packet_id header the distributor writes, or else the envelope's.
func (t *Tally) Written(r Record) {
	t.records++
	id := packetID(r)
	if !t.mine(id) {
		t.others++
		return
	}
	p := t.get(id)
	p.written = append(p.written, r.Position)
}

func packetID(r Record) string {
	for _, h := range r.Headers {
		if h.Key == envelope.HeaderPacketID {
			return string(h.Value)
		}
	}
	if e, err := envelope.Unmarshal(r.Value); err == nil {
		return e.PacketID
	}
	return ""
}

// Processed takes a record of the ledger topic. One that does not decode
// is counted as unreadable with its position, never dropped silently.
func (t *Tally) Processed(r Record) {
	t.records++
	id, p, err := t.decode(r.Value)
	if err != nil {
		t.nUnreadable++
		if len(t.unreadable) < MaxExamples {
			t.unreadable = append(t.unreadable, Unreadable{Position: r.Position, Error: err.Error()})
		}
		return
	}
	if !t.mine(id) {
		t.others++
		return
	}
	p.Ledger = r.Position
	t.processings++
	pk := t.get(id)
	pk.processed = append(pk.processed, p)
}

// Records is how many records were handed in, of every job.
func (t *Tally) Records() int64 { return t.records }

// Processings is how many ledger records of the job were seen.
func (t *Tally) Processings() int64 { return t.processings }

// Lost is how many written packets have not been processed (yet).
func (t *Tally) Lost() int64 {
	var n int64
	for _, p := range t.packets {
		if len(p.written) > 0 && len(p.processed) == 0 {
			n++
		}
	}
	return n
}

// Counts computes the numbers and examples (the examples' ids sorted, so
// the same history gives the same answer in any order).
func (t *Tally) Counts() (Counts, Examples) {
	c := Counts{Processings: t.processings, Unreadable: t.nUnreadable}
	ex := Examples{Lost: []Example{}, Duplicates: []Example{}, Unexpected: []Example{}, Unreadable: slices.Clone(t.unreadable)}
	if ex.Unreadable == nil {
		ex.Unreadable = []Unreadable{}
	}
	ids := make([]string, 0, len(t.packets))
	for id := range t.packets {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	add := func(list *[]Example, id string, p *packet) {
		if len(*list) < MaxExamples {
			*list = append(*list, Example{PacketID: id, Written: p.written, Processed: p.processed})
		}
	}
	for _, id := range ids {
		p := t.packets[id]
		w, n := len(p.written) > 0, len(p.processed)
		if w {
			c.Written++
		}
		if len(p.written) > 1 {
			c.WrittenTwice++
		}
		if n > 0 {
			c.Processed++
		}
		switch {
		case w && n == 0:
			c.Lost++
			add(&ex.Lost, id, p)
		case !w && n > 0:
			c.Unexpected++
			add(&ex.Unexpected, id, p)
		}
		if n > 1 {
			c.Duplicates++
			add(&ex.Duplicates, id, p)
			if redelivered(p.processed) {
				c.Redelivered++
			}
		}
	}
	return c, ex
}

// redelivered says whether one logs.* record was processed twice.
func redelivered(ps []Processing) bool {
	seen := map[Position]bool{}
	for _, p := range ps {
		if seen[p.Logs] {
			return true
		}
		seen[p.Logs] = true
	}
	return false
}
