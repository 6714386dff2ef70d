// Package ledger is the delivery ledger: the record an analyzer produces to
// the ledger topic (ledger.processed) each time it processes a packet, and
// the one decoder every reader of that topic uses (the analyzers rebuilding
// their processed set, the platform's checker, the tests).
//
// The topic is the single source of truth for processing, as the logs.*
// topics are for what the distributor accepted: a packet written to
// logs.<analyzer> and never recorded here was lost; one recorded twice was
// processed twice. A record is keyed by its packet id and says where the
// packet was read from (topic, partition, offset), so a re-delivery of the
// same Kafka record can be told from a second copy of the packet.
package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/dsplab/dsplab/internal/jsonw"
)

// DefaultTopic is the ledger topic's name unless LEDGER_TOPIC says another.
const DefaultTopic = "ledger.processed"

// Version is the only record version this package writes and reads.
const Version = 1

// Mode is an analyzer's delivery semantics: when it commits a record's
// offset relative to processing it.
type Mode string

// The delivery modes (README "Delivery semantics").
const (
	// AtMostOnce commits a batch's offsets before processing it: a crash
	// loses what was committed and not yet processed.
	AtMostOnce Mode = "at-most-once"
	// AtLeastOnce commits after processing and after the ledger records
	// are acknowledged: a crash re-delivers what was processed since the
	// last commit.
	AtLeastOnce Mode = "at-least-once"
	// EffectivelyOnce is AtLeastOnce plus a processed set rebuilt from
	// this topic at start-up: a re-delivered record already in the ledger
	// is skipped, so the ledger write is the commit point.
	EffectivelyOnce Mode = "effectively-once"
)

// Modes lists every mode, in the order they are taught.
var Modes = []Mode{AtMostOnce, AtLeastOnce, EffectivelyOnce}

// ParseMode reads a mode by name.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("delivery mode %q: must be one of at-most-once, at-least-once, effectively-once", s)
}

// Record is one processing of one packet: the value of a ledger record
// (its key is PacketID).
type Record struct {
	V           int       `json:"v"`
	PacketID    string    `json:"packet_id"`
	EmitterID   string    `json:"emitter_id"`
	Tenant      string    `json:"tenant"`
	Analyzer    string    `json:"analyzer"`
	Topic       string    `json:"topic"`
	Partition   int       `json:"partition"`
	Offset      int64     `json:"offset"`
	ProcessedAt time.Time `json:"processed_at"`
	Delivery    Mode      `json:"delivery"`
	Messages    int       `json:"messages"`
}

// Encode returns the record value: r as JSON with V set to Version and
// ProcessedAt in UTC. An analyzer encodes one per packet, so it appends the
// fields by hand (internal/jsonw); the bytes are json.Marshal's
// (TestEncodeIsEncodingJSON).
func Encode(r Record) ([]byte, error) {
	r.V = Version
	r.ProcessedAt = r.ProcessedAt.UTC()
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("encode ledger record: %w", err)
	}
	b := make([]byte, 0, 200+len(r.PacketID)+len(r.EmitterID)+len(r.Tenant)+len(r.Analyzer)+len(r.Topic))
	b = strconv.AppendInt(append(b, `{"v":`...), int64(r.V), 10)
	b = jsonw.AppendString(append(b, `,"packet_id":`...), r.PacketID)
	b = jsonw.AppendString(append(b, `,"emitter_id":`...), r.EmitterID)
	b = jsonw.AppendString(append(b, `,"tenant":`...), r.Tenant)
	b = jsonw.AppendString(append(b, `,"analyzer":`...), r.Analyzer)
	b = jsonw.AppendString(append(b, `,"topic":`...), r.Topic)
	b = strconv.AppendInt(append(b, `,"partition":`...), int64(r.Partition), 10)
	b = strconv.AppendInt(append(b, `,"offset":`...), r.Offset, 10)
	b, ok := jsonw.AppendTime(append(b, `,"processed_at":`...), r.ProcessedAt)
	if !ok { // a year json.Marshal refuses too: its error
		return json.Marshal(r)
	}
	b = jsonw.AppendString(append(b, `,"delivery":`...), string(r.Delivery))
	b = strconv.AppendInt(append(b, `,"messages":`...), int64(r.Messages), 10)
	return append(b, '}'), nil
}

// ErrNotLedgerRecord is wrapped by every error of Decode.
var ErrNotLedgerRecord = errors.New("not a v1 ledger record")

// Decode reads a record value. Anything else — not a JSON object, another
// version, unknown or missing fields, trailing data — is refused with an
// error wrapping ErrNotLedgerRecord that names the problem; a reader counts
// such records as unreadable and goes on.
func Decode(b []byte) (Record, error) {
	if !bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte("{")) {
		return Record{}, fmt.Errorf("%w: not a JSON object", ErrNotLedgerRecord)
	}
	var r Record
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrNotLedgerRecord, err)
	}
	if dec.More() {
		return Record{}, fmt.Errorf("%w: data after the JSON object", ErrNotLedgerRecord)
	}
	if r.V != Version {
		return Record{}, fmt.Errorf("%w: version %d", ErrNotLedgerRecord, r.V)
	}
	if err := r.validate(); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrNotLedgerRecord, err)
	}
	return r, nil
}

// validate lists every missing or impossible field at once.
func (r Record) validate() error {
	var errs []error
	for _, f := range [...]struct{ name, v string }{{"packet_id", r.PacketID}, {"analyzer", r.Analyzer}, {"topic", r.Topic}} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("%s is empty", f.name))
		}
	}
	if r.Partition < 0 || r.Offset < 0 || r.Messages < 0 {
		errs = append(errs, fmt.Errorf("partition %d, offset %d, messages %d: must not be negative", r.Partition, r.Offset, r.Messages))
	}
	if r.ProcessedAt.IsZero() {
		errs = append(errs, errors.New("processed_at is missing"))
	}
	if _, err := ParseMode(string(r.Delivery)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Source is where a processed packet was read from: one Kafka record of a
// logs.* topic. Two ledger records with the same Source are two processings
// of one delivery (a re-delivery); two with the same packet id and another
// Source are two copies of the packet.
type Source struct {
	Topic     string
	Partition int
	Offset    int64
}

// Source returns where r's packet was read from.
func (r Record) Source() Source { return Source{r.Topic, r.Partition, r.Offset} }
