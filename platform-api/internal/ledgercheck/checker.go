package ledgercheck

import (
	"context"
	"time"
)

// Config is the platform's ledger configuration.
type Config struct {
	// Brokers are the Kafka bootstrap addresses (KAFKA_BROKERS).
	Brokers []string
	// LogsPrefix names the distributor's topics (KAFKA_TOPIC_PREFIX,
	// logs.); LedgerTopic the analyzers' (LEDGER_TOPIC, ledger.processed).
	LogsPrefix, LedgerTopic string
	// MaxRecords (LEDGER_MAX_RECORDS) and Timeout (LEDGER_TIMEOUT_SECONDS)
	// bound one check; Quiet (LEDGER_QUIET_SECONDS) is how long without a
	// new processing means the backlog drained.
	MaxRecords int64
	Timeout    time.Duration
	Quiet      time.Duration
}

// Checker checks traffic jobs against one Kafka cluster.
type Checker struct {
	src Source
	cfg Config
}

// New returns a checker reading the cluster cfg names.
func New(cfg Config) *Checker { return &Checker{src: NewKafka(cfg.Brokers), cfg: cfg} }

// Check is the exact ledger of the jobs' packets written since since.
func (c *Checker) Check(ctx context.Context, jobIDs []string, since time.Time, hurry <-chan struct{}) Result {
	return Check(ctx, c.src, DecodeLedger, Query{JobIDs: jobIDs, Since: since, LogsPrefix: c.cfg.LogsPrefix, LedgerTopic: c.cfg.LedgerTopic,
		MaxRecords: c.cfg.MaxRecords, Timeout: c.cfg.Timeout, Quiet: c.cfg.Quiet, Poll: time.Second, Hurry: hurry})
}
