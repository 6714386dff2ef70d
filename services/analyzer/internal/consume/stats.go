package consume

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/dsplab/dsplab/internal/ledger"
	"github.com/dsplab/dsplab/internal/telemetry"
)

// maxTenantSeries bounds the tenant label's values per analyzer.
const maxTenantSeries = 50

// Levels and tenants are chosen by clients, so everything counted by them
// is bounded: a client inventing 2,000 levels or 50,000 tenants must not
// grow the metrics' series, the counters' maps or the /stats answer.
//
//   - the level label (and messages_by_level): the known levels below,
//     plus the first maxExtraLevels others seen; later ones count as
//     otherLabel;
//   - messages_by_tenant in /stats: the first maxStatsTenants tenants;
//     later ones count as otherLabel.
//
// /stats says when it folded something (messages_by_*_truncated).
const (
	maxExtraLevels  = 10
	maxStatsTenants = 1000
	otherLabel      = "_other"
)

// knownLevels always have a series of their own.
var knownLevels = map[string]bool{"trace": true, "debug": true, "info": true, "notice": true, "warn": true, "warning": true,
	"error": true, "critical": true, "fatal": true, "panic": true}

// Stats are the analyzer's counters, served at /stats and as metrics.
type Stats struct {
	mu       sync.Mutex
	id       string
	packets  int64
	messages int64
	dups     int64
	unread   int64
	byLevel  map[string]int64
	byTenant map[string]int64
	labelled map[string]bool // tenants with a series of their own
	extra    map[string]bool // levels, not known ones, with a series of their own
	// levelsFolded and tenantsFolded say that some levels or tenants were
	// counted as otherLabel.
	levelsFolded, tenantsFolded bool
	lag                         int64
	last                        time.Time
	lastError                   string
	mode                        ledger.Mode
	ledgerRecords, ledgerErrors int64
	redeliveries                int64
	lastRebuild                 *Rebuild

	packetsC  metric.Int64Counter
	messagesC metric.Int64Counter
	dupsC     metric.Int64Counter
	unreadC   metric.Int64Counter
	ledgerC   metric.Int64Counter
	ledgerErC metric.Int64Counter
	redelivC  metric.Int64Counter
	tenantC   metric.Int64Counter
	procH     metric.Float64Histogram
	e2eH      metric.Float64Histogram
	attr      telemetry.Opts // analyzer=id
	// Attribute sets are built once per tenant label and level (building
	// one per packet was a visible share of the analyzer's CPU).
	tenantAttr map[string]telemetry.Opts
	levelAttr  map[string]telemetry.Opts
}

// maxCachedLevels bounds levelAttr; levels beyond it get a fresh set each time.
const maxCachedLevels = 64

// Snapshot is the /stats JSON.
type Snapshot struct {
	AnalyzerID       string `json:"analyzer_id"`
	PacketsProcessed int64  `json:"packets_processed"`
	MessagesProc     int64  `json:"messages_processed"`
	DuplicatePackets int64  `json:"duplicate_packets"`
	// UnreadableRecords are records of the topic that are no envelope
	// (garbage produced into it): skipped, committed, counted here.
	UnreadableRecords int64            `json:"unreadable_records"`
	MessagesByLevel   map[string]int64 `json:"messages_by_level"`
	MessagesByTenant  map[string]int64 `json:"messages_by_tenant"`
	// LevelsTruncated and TenantsTruncated say that levels or tenants past
	// the caps were counted under "_other".
	LevelsTruncated  bool       `json:"messages_by_level_truncated,omitempty"`
	TenantsTruncated bool       `json:"messages_by_tenant_truncated,omitempty"`
	ConsumerLag      int64      `json:"consumer_lag"`
	LastProcessedAt  *time.Time `json:"last_processed_at,omitempty"`
	LastError        string     `json:"last_error,omitempty"`
	// Delivery is the delivery mode in force (README "Delivery semantics").
	Delivery ledger.Mode `json:"delivery"`
	// LedgerRecords are the ledger records acknowledged, LedgerWriteErrors
	// those whose write failed (each is written again before a commit).
	LedgerRecords     int64 `json:"ledger_records"`
	LedgerWriteErrors int64 `json:"ledger_write_errors"`
	// RedeliveriesSkipped are records effectively-once did not process
	// again: the ledger held their processing.
	RedeliveriesSkipped int64 `json:"redeliveries_skipped"`
	// LastRebuild is the last rebuild of the processed set.
	LastRebuild *Rebuild `json:"last_rebuild,omitempty"`
}

// NewStats creates the counters and their instruments on m. Every series
// carries the analyzer label, so dashboards can tell analyzers apart
// whichever way the metrics arrive.
func NewStats(id string, m metric.Meter) (*Stats, error) {
	s := &Stats{id: id, byLevel: map[string]int64{}, byTenant: map[string]int64{}, labelled: map[string]bool{}, extra: map[string]bool{},
		tenantAttr: map[string]telemetry.Opts{}, levelAttr: map[string]telemetry.Opts{}, attr: telemetry.NewOpts(attribute.String("analyzer", id))}
	var err error
	c := func(name, desc string) metric.Int64Counter {
		var x metric.Int64Counter
		if err == nil {
			x, err = m.Int64Counter(name, metric.WithDescription(desc))
		}
		return x
	}
	h := func(name, desc string) metric.Float64Histogram {
		var x metric.Float64Histogram
		if err == nil {
			x, err = m.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(telemetry.LatencyBuckets...))
		}
		return x
	}
	s.packetsC = c("analyzer_packets_processed", "Unique packets processed.")
	s.messagesC = c("analyzer_messages_processed", "Messages of unique packets processed, by level (the usual levels, then the first 10 others seen; later ones as _other).")
	s.dupsC = c("analyzer_duplicate_packets", "Packets seen again within the de-duplication window.")
	s.unreadC = c("analyzer_unreadable_records", "Records of the topic that are not a readable envelope, skipped (and committed) so that they do not block the partition.")
	s.ledgerC = c("analyzer_ledger_records", "Ledger records acknowledged by Kafka (one per processing of a packet).")
	s.ledgerErC = c("analyzer_ledger_write_errors", "Ledger records whose write failed; each is written again before the offsets after it are committed.")
	s.redelivC = c("analyzer_redeliveries_skipped", "Re-delivered records effectively-once did not process again because the ledger held their processing.")
	s.tenantC = c("analyzer_tenant_packets_processed", "Unique packets processed, by tenant (the first 50 tenants seen; later ones as _other): with tenant-hash routing each tenant has one analyzer.")
	s.procH = h("analyzer_processing_duration", "Time to process one packet.")
	s.e2eH = h("analyzer_end_to_end_latency", "From the distributor receiving a packet to its processing.")
	if err != nil {
		return nil, err
	}
	// Series exist from the start: 0, not "no data", until something happens.
	s.packetsC.Add(context.Background(), 0, s.attr.Add...)
	s.dupsC.Add(context.Background(), 0, s.attr.Add...)
	s.unreadC.Add(context.Background(), 0, s.attr.Add...)
	s.ledgerC.Add(context.Background(), 0, s.attr.Add...)
	s.ledgerErC.Add(context.Background(), 0, s.attr.Add...)
	s.redelivC.Add(context.Background(), 0, s.attr.Add...)
	lagG, err := m.Int64ObservableGauge("analyzer_consumer_lag", metric.WithDescription("Records behind the end of the topic at the last fetch."))
	if err != nil {
		return nil, err
	}
	modeG, err := m.Int64ObservableGauge("analyzer_delivery_mode",
		metric.WithDescription("1 for the analyzer's delivery mode in force (label delivery), 0 for the others."))
	if err != nil {
		return nil, err
	}
	modeAttrs := map[ledger.Mode]metric.ObserveOption{}
	for _, md := range ledger.Modes {
		modeAttrs[md] = metric.WithAttributes(attribute.String("analyzer", id), attribute.String("delivery", string(md)))
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		o.ObserveInt64(lagG, s.lag, metric.WithAttributes(attribute.String("analyzer", id)))
		for _, md := range ledger.Modes {
			v := int64(0)
			if md == s.mode {
				v = 1
			}
			o.ObserveInt64(modeG, v, modeAttrs[md])
		}
		return nil
	}, lagG, modeG)
	return s, err
}

func (s *Stats) processed(ctx context.Context, tenant string, levels []levelCount, n int, took, e2e time.Duration) {
	s.mu.Lock()
	s.packets++
	s.messages += int64(n)
	tenantLabel := tenant
	if !s.labelled[tenant] {
		if len(s.labelled) < maxTenantSeries {
			s.labelled[tenant] = true
		} else {
			tenantLabel = "_other"
		}
	}
	if _, ok := s.byTenant[tenant]; !ok && len(s.byTenant) >= maxStatsTenants {
		tenant, s.tenantsFolded = otherLabel, true
	}
	s.byTenant[tenant] += int64(n)
	s.last = time.Now().UTC()
	// The attribute caches are read under the lock; the metrics are
	// recorded after it, so that a metric collection (whose callbacks take
	// s.mu) never waits on a record.
	tenantAttr := s.cached(s.tenantAttr, tenantLabel, "tenant", -1)
	type levelOpts struct {
		attr telemetry.Opts
		n    int64
	}
	byLevel := make([]levelOpts, 0, 8) // a packet has a handful of levels: stays on the stack
	for _, lc := range levels {
		l := s.levelLabel(lc.level)
		s.byLevel[l] += lc.n
		byLevel = append(byLevel, levelOpts{s.cached(s.levelAttr, l, "level", maxCachedLevels), lc.n})
	}
	s.mu.Unlock()
	s.packetsC.Add(ctx, 1, s.attr.Add...)
	s.tenantC.Add(ctx, 1, tenantAttr.Add...)
	for _, lc := range byLevel {
		s.messagesC.Add(ctx, lc.n, lc.attr.Add...)
	}
	s.procH.Record(ctx, took.Seconds(), s.attr.Record...)
	s.e2eH.Record(ctx, max(e2e, 0).Seconds(), s.attr.Record...)
}

// levelLabel is the label a level is counted under (see maxExtraLevels).
// s.mu is held.
func (s *Stats) levelLabel(l string) string {
	switch {
	case knownLevels[l] || s.extra[l]:
		return l
	case len(s.extra) < maxExtraLevels:
		s.extra[l] = true
		return l
	}
	s.levelsFolded = true
	return otherLabel
}

func (s *Stats) duplicate(ctx context.Context) {
	s.mu.Lock()
	s.dups++
	s.mu.Unlock()
	s.dupsC.Add(ctx, 1, s.attr.Add...)
}

func (s *Stats) unreadable(ctx context.Context) {
	s.mu.Lock()
	s.unread++
	s.mu.Unlock()
	s.unreadC.Add(ctx, 1, s.attr.Add...)
}

func (s *Stats) setMode(m ledger.Mode) {
	s.mu.Lock()
	s.mode = m
	s.mu.Unlock()
}

func (s *Stats) ledgerWritten(n int, err error) {
	s.mu.Lock()
	if err != nil {
		s.ledgerErrors += int64(n)
	} else {
		s.ledgerRecords += int64(n)
	}
	s.mu.Unlock()
	if err != nil {
		s.ledgerErC.Add(context.Background(), int64(n), s.attr.Add...)
		return
	}
	s.ledgerC.Add(context.Background(), int64(n), s.attr.Add...)
}

func (s *Stats) redelivered(ctx context.Context) {
	s.mu.Lock()
	s.redeliveries++
	s.mu.Unlock()
	s.redelivC.Add(ctx, 1, s.attr.Add...)
}

func (s *Stats) rebuilt(rb Rebuild) {
	s.mu.Lock()
	s.lastRebuild = &rb
	s.mu.Unlock()
}

func (s *Stats) setLag(lag int64) {
	s.mu.Lock()
	s.lag = lag
	s.mu.Unlock()
}

func (s *Stats) setError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.lastError = ""
		return
	}
	s.lastError = err.Error()
}

// cached returns the attribute set {analyzer, key=value} from m, building
// and keeping it while m holds fewer than limit sets (limit < 0: always).
// s.mu is held.
func (s *Stats) cached(m map[string]telemetry.Opts, value, key string, limit int) telemetry.Opts {
	if o, ok := m[value]; ok {
		return o
	}
	o := telemetry.NewOpts(attribute.String("analyzer", s.id), attribute.String(key, value))
	if limit < 0 || len(m) < limit {
		m[value] = o
	}
	return o
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := Snapshot{AnalyzerID: s.id, PacketsProcessed: s.packets, MessagesProc: s.messages, DuplicatePackets: s.dups, UnreadableRecords: s.unread,
		MessagesByLevel: map[string]int64{}, MessagesByTenant: map[string]int64{}, ConsumerLag: s.lag, LastError: s.lastError,
		LevelsTruncated: s.levelsFolded, TenantsTruncated: s.tenantsFolded, Delivery: s.mode, LedgerRecords: s.ledgerRecords,
		LedgerWriteErrors: s.ledgerErrors, RedeliveriesSkipped: s.redeliveries}
	if s.lastRebuild != nil {
		rb := *s.lastRebuild
		snap.LastRebuild = &rb
	}
	for k, v := range s.byLevel {
		snap.MessagesByLevel[k] = v
	}
	for k, v := range s.byTenant {
		snap.MessagesByTenant[k] = v
	}
	if !s.last.IsZero() {
		t := s.last
		snap.LastProcessedAt = &t
	}
	return snap
}
