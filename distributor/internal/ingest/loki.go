package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"

	"github.com/dsplab/dsplab/internal/envelope"
)

// LokiMeta says who pushed: the tenant (X-Scope-OrgID), the emitter name
// and the packet id the distributor assigned to this push.
type LokiMeta struct {
	Tenant, EmitterID, PacketID string
	Now                         time.Time
}

// DecodeLokiProto decodes a snappy-compressed protobuf PushRequest, the
// format Promtail, Alloy and Loki's own clients send.
func DecodeLokiProto(body []byte, meta LokiMeta, lim Limits) (*envelope.Envelope, error) {
	lim = lim.withDefaults()
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return nil, malformed("snappy: %v", err)
	}
	if n > lim.MaxDecompressed {
		return nil, fmt.Errorf("%w: %d bytes after snappy, limit %d", ErrTooLarge, n, lim.MaxDecompressed)
	}
	if err := lim.reserve(int64(n)); err != nil {
		return nil, err
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return nil, malformed("snappy: %v", err)
	}
	entries, pairs, err := protoCounts(raw)
	if err != nil {
		return nil, malformed("protobuf PushRequest: %v", err)
	}
	if entries > lim.MaxMessages {
		return nil, tooManyEntries(entries, lim)
	}
	// The decoded request: strings copied, a struct per entry and pair;
	// then the envelope's messages and its encoding.
	if err := lim.reserve(2*int64(n) + memberBytes*int64(2*entries+pairs)); err != nil {
		return nil, err
	}
	var req push.PushRequest
	if err := req.Unmarshal(raw); err != nil {
		return nil, malformed("protobuf PushRequest: %v", err)
	}
	b := newLokiBuilder(meta, lim)
	for si, s := range req.Streams {
		labels, err := ParseLabels(s.Labels)
		if err != nil {
			b.p.add(fmt.Sprintf("streams[%d].labels", si), err.Error())
			continue
		}
		b.stream(si, labels)
		for ei, e := range s.Entries {
			var sm map[string]string
			if len(e.StructuredMetadata) > 0 {
				sm = make(map[string]string, len(e.StructuredMetadata))
				for _, l := range e.StructuredMetadata {
					sm[l.Name] = l.Value
				}
			}
			b.entry(si, ei, e.Timestamp, e.Line, sm)
		}
	}
	return b.finish()
}

// lokiJSONPush is Loki's JSON push body. Streams carry either the current
// form ("stream" + "values") or the legacy one ("labels" + "entries").
type lokiJSONPush struct {
	Streams []struct {
		Stream  map[string]string `json:"stream"`
		Values  []lokiJSONValue   `json:"values"`
		Labels  string            `json:"labels"`
		Entries []struct {
			Ts   time.Time `json:"ts"`
			Line string    `json:"line"`
		} `json:"entries"`
	} `json:"streams"`
}

// lokiJSONValue is ["<unix ns as string>", "<line>", {structured metadata}?].
type lokiJSONValue struct {
	ts   time.Time
	line string
	sm   map[string]string
}

func (v *lokiJSONValue) UnmarshalJSON(b []byte) error {
	var parts []json.RawMessage
	if err := json.Unmarshal(b, &parts); err != nil {
		return fmt.Errorf("value must be an array [timestamp, line, metadata?]")
	}
	if len(parts) < 2 || len(parts) > 3 {
		return fmt.Errorf("value must have 2 or 3 elements, has %d", len(parts))
	}
	var tsStr string
	if err := json.Unmarshal(parts[0], &tsStr); err != nil {
		return fmt.Errorf("timestamp must be a string of unix nanoseconds")
	}
	ns, err := strconv.ParseInt(tsStr, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q is not unix nanoseconds", tsStr)
	}
	v.ts = time.Unix(0, ns).UTC()
	if err := json.Unmarshal(parts[1], &v.line); err != nil {
		return fmt.Errorf("line must be a string")
	}
	if len(parts) == 3 {
		if err := json.Unmarshal(parts[2], &v.sm); err != nil {
			return fmt.Errorf("structured metadata must be an object of strings")
		}
	}
	return nil
}

// DecodeLokiJSON decodes a JSON push body (already decompressed).
func DecodeLokiJSON(body []byte, meta LokiMeta, lim Limits) (*envelope.Envelope, error) {
	lim = lim.withDefaults()
	if len(body) > lim.MaxDecompressed {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(body), lim.MaxDecompressed)
	}
	if err := lim.reserve(jsonCost(body)); err != nil {
		return nil, err
	}
	var req lokiJSONPush
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		return nil, malformed("decode Loki push JSON: %v", err)
	}
	if dec.More() {
		return nil, malformed("decode Loki push JSON: trailing data after the push object")
	}
	b := newLokiBuilder(meta, lim)
	for si, s := range req.Streams {
		labels := s.Stream
		if labels == nil && s.Labels != "" {
			var err error
			if labels, err = ParseLabels(s.Labels); err != nil {
				b.p.add(fmt.Sprintf("streams[%d].labels", si), err.Error())
				continue
			}
		}
		b.stream(si, labels)
		for ei, v := range s.Values {
			b.entry(si, ei, v.ts, v.line, v.sm)
		}
		for ei, e := range s.Entries {
			b.entry(si, ei, e.Ts, e.Line, nil)
		}
	}
	return b.finish()
}

// lokiBuilder turns streams and entries into one envelope, validating as it
// goes. A push becomes one packet: it is routed to one analyzer, whole.
type lokiBuilder struct {
	env    *envelope.Envelope
	lim    Limits
	p      problems
	labels map[string]any // metadata shared by the current stream's entries
	level  string
	count  int
	err    error // from lim.Reserve: stops the build
}

func newLokiBuilder(meta LokiMeta, lim Limits) *lokiBuilder {
	return &lokiBuilder{lim: lim, env: &envelope.Envelope{
		Tenant: meta.Tenant, PacketID: meta.PacketID, EmitterID: meta.EmitterID,
		ReceivedAt: meta.Now, Source: envelope.SourceLoki,
	}}
}

func (b *lokiBuilder) stream(si int, labels map[string]string) {
	if len(labels) == 0 {
		b.p.add(fmt.Sprintf("streams[%d].stream", si), "must have at least one label")
	}
	if len(labels) > b.lim.MaxMetadataPairs {
		b.p.add(fmt.Sprintf("streams[%d].stream", si), fmt.Sprintf("has %d labels, more than the limit of %d", len(labels), b.lim.MaxMetadataPairs))
	}
	b.labels = make(map[string]any, len(labels))
	for k, v := range labels {
		b.labels[k] = v
	}
	b.level = levelOf(labels, nil)
}

func (b *lokiBuilder) entry(si, ei int, ts time.Time, line string, sm map[string]string) {
	b.count++
	if b.err != nil {
		return
	}
	if b.count > b.lim.MaxMessages {
		return // reported once in finish
	}
	field := fmt.Sprintf("streams[%d].values[%d]", si, ei)
	switch {
	case len(line) > b.lim.MaxMessageBytes:
		b.p.add(field, fmt.Sprintf("line is %d bytes, more than the limit of %d", len(line), b.lim.MaxMessageBytes))
	case !utf8.ValidString(line):
		b.p.add(field, "line is not valid UTF-8")
	}
	if len(sm) > b.lim.MaxMetadataPairs {
		b.p.add(field, fmt.Sprintf("has %d structured metadata pairs, more than the limit of %d", len(sm), b.lim.MaxMetadataPairs))
	}
	if ts.IsZero() {
		ts = b.env.ReceivedAt
	}
	md, level := b.labels, b.level
	if len(sm) > 0 && b.err == nil && len(b.p.list) == 0 {
		// The entry's own metadata map: its stream's labels and its pairs,
		// copied for every such entry.
		if b.err = b.lim.reserve(memberBytes * int64(len(b.labels)+len(sm))); b.err != nil {
			return
		}
		md = make(map[string]any, len(b.labels)+len(sm))
		for k, v := range b.labels {
			md[k] = v
		}
		for k, v := range sm {
			md[k] = v
		}
		if l := levelOf(nil, sm); l != "" {
			level = l
		}
	}
	if level == "" {
		level = "info"
	}
	b.env.Messages = append(b.env.Messages, envelope.Message{Timestamp: ts, Level: level, Message: line, Metadata: md})
}

func (b *lokiBuilder) finish() (*envelope.Envelope, error) {
	if b.err != nil {
		return nil, b.err
	}
	switch {
	case b.count == 0:
		b.p.add("streams", "must hold at least one entry")
	case b.count > b.lim.MaxMessages:
		b.p.add("streams", fmt.Sprintf("hold %d entries, more than the limit of %d", b.count, b.lim.MaxMessages))
	}
	if err := b.p.err("loki push"); err != nil {
		return nil, err
	}
	return b.env, nil
}

// levelOf finds a log level in the conventional label names.
func levelOf(labels, sm map[string]string) string {
	for _, m := range []map[string]string{sm, labels} {
		for _, k := range []string{"level", "detected_level", "severity", "lvl"} {
			if v, ok := m[k]; ok && v != "" && len(v) <= maxLevelLen {
				return normLevel(v)
			}
		}
	}
	return ""
}

func tooManyEntries(n int, lim Limits) error {
	return &ValidationError{What: "loki push", Problems: []Problem{{Field: "streams", Problem: fmt.Sprintf("hold %d entries, more than the limit of %d", n, lim.MaxMessages)}}}
}
