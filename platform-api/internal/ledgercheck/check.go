package ledgercheck

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Partition names one partition of a topic.
type Partition struct {
	Topic     string
	Partition int
}

// Source is what the checker needs of Kafka (kafka.go; a fake in tests).
type Source interface {
	// Partitions lists every partition of every topic.
	Partitions(ctx context.Context) ([]Partition, error)
	// Starts returns, for each partition, the offset of its first record
	// at or after since (its end if none).
	Starts(ctx context.Context, ps []Partition, since time.Time) (map[Partition]int64, error)
	// Ends returns each partition's end offset: the offset the next
	// record written will get.
	Ends(ctx context.Context, ps []Partition) (map[Partition]int64, error)
	// Fetch returns records of p from offset on, in offset order; at
	// least one when offset is below p's end.
	Fetch(ctx context.Context, p Partition, offset int64) ([]Record, error)
}

// Query says what to read and how long to wait.
type Query struct {
	// JobIDs are the traffic jobs whose packets are counted.
	JobIDs []string
	// Since is where the reading starts: records written before it are
	// skipped (the experiment's start, less a margin for clocks).
	Since time.Time
	// LogsPrefix names the topics the distributor writes (logs.);
	// LedgerTopic the analyzers' processing records (ledger.processed).
	LogsPrefix, LedgerTopic string
	// MaxRecords bounds the records read (every job's); Timeout the whole
	// check, waiting included.
	MaxRecords int64
	Timeout    time.Duration
	// Quiet is how long without a new processing of the job's packets
	// means the backlog has drained (while some are still unprocessed);
	// Poll is the pause between two reads.
	Quiet, Poll time.Duration
	// Hurry, once closed, ends the waiting: the check stops at the next
	// pause and reports what it read (a second stop of the experiment).
	Hurry <-chan struct{}
}

// Result is the exact ledger of one experiment.
type Result struct {
	JobIDs []string  `json:"jobIds" example:"t-1a2b3c4d5e6f"`
	Since  time.Time `json:"since"`
	ReadAt time.Time `json:"readAt"`
	// Attempted and Accepted are k6's own counts of the job's packets
	// (sent, and answered 2xx); nil when k6 left no summary.
	Attempted *int64 `json:"attempted"`
	Accepted  *int64 `json:"accepted"`
	// AcceptedNotWritten is how many more packets k6 saw answered 2xx than
	// logs.* holds (a 2xx means written: anything above 0 is a loss
	// before Kafka, or packets whose ids do not name the job). A count
	// only: k6 does not say which. Nil without k6's count.
	AcceptedNotWritten *int64 `json:"acceptedNotWritten"`
	Counts
	Examples Examples `json:"examples"`
	// RecordsRead counts every record read (other jobs' too).
	RecordsRead int64 `json:"recordsRead"`
	// WaitedSeconds is how long the checker waited for the analyzers to
	// process the backlog.
	WaitedSeconds float64 `json:"waitedSeconds"`
	// Truncated says why the reading stopped before its end (a cap was
	// hit): the counts are then partial, and lost may count packets
	// still in work.
	Truncated string `json:"truncated,omitempty"`
	// Error says why Kafka could not be read (the counts are then what
	// was read before).
	Error string `json:"error,omitempty"`
}

// Complete says whether the counts are the whole truth: read to the end,
// within the caps, without an error.
func (r *Result) Complete() bool { return r != nil && r.Error == "" && r.Truncated == "" }

// Check reads the logs.* topics and the ledger topic from q.Since on, and
// reads again every q.Poll until the job's packets are all processed or no
// processing has arrived for q.Quiet (the backlog drained), within
// q.Timeout and q.MaxRecords. Reading is incremental: each round reads
// every partition from where the last one stopped to its end at that
// moment, so a record is read once.
func Check(ctx context.Context, src Source, decode Decoder, q Query) Result {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, q.Timeout)
	defer cancel()
	res := Result{JobIDs: slices.Clone(q.JobIDs), Since: q.Since.UTC()}
	t := NewTally(q.JobIDs, decode)
	next := map[Partition]int64{}
	lastGrowth := time.Now()
	for {
		before := t.Processings()
		err := round(ctx, src, t, q, next)
		if t.Processings() > before {
			lastGrowth = time.Now()
		}
		switch {
		case errors.Is(err, errCap):
			res.Truncated = fmt.Sprintf("stopped after %d records (the cap, LEDGER_MAX_RECORDS)", t.Records())
		case err != nil && ctx.Err() != nil:
			res.Truncated = fmt.Sprintf("time limit of %s reached while reading (LEDGER_TIMEOUT_SECONDS)", q.Timeout)
		case err != nil:
			res.Error = err.Error()
		}
		if err != nil || t.Lost() == 0 || time.Since(lastGrowth) >= q.Quiet {
			break
		}
		if err := wait(ctx, q.Hurry, q.Poll); errors.Is(err, errHurried) {
			res.Truncated = fmt.Sprintf("the experiment was stopped again while %d packets were still unprocessed: the ledger as it stood", t.Lost())
			break
		} else if err != nil {
			res.Truncated = fmt.Sprintf("time limit of %s reached while %d packets were still unprocessed (LEDGER_TIMEOUT_SECONDS)", q.Timeout, t.Lost())
			break
		}
	}
	res.Counts, res.Examples = t.Counts()
	res.RecordsRead, res.WaitedSeconds, res.ReadAt = t.Records(), time.Since(start).Seconds(), time.Now().UTC()
	return res
}

var errCap = errors.New("record cap reached")

// errHurried: Query.Hurry was closed.
var errHurried = errors.New("hurried")

// wait pauses for d, unless ctx ends (its error) or hurry is closed
// (errHurried; a nil hurry never is).
func wait(ctx context.Context, hurry <-chan struct{}, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-hurry:
		return errHurried
	case <-tm.C:
		return nil
	}
}

// round reads every partition of the topics from next (or from q.Since,
// for a partition not seen before) to its end now.
func round(ctx context.Context, src Source, t *Tally, q Query, next map[Partition]int64) error {
	all, err := src.Partitions(ctx)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	var ps, fresh []Partition
	for _, p := range all {
		if p.Topic == q.LedgerTopic || strings.HasPrefix(p.Topic, q.LogsPrefix) {
			ps = append(ps, p)
			if _, seen := next[p]; !seen {
				fresh = append(fresh, p)
			}
		}
	}
	if len(fresh) > 0 {
		starts, err := src.Starts(ctx, fresh, q.Since)
		if err != nil {
			return fmt.Errorf("find offsets at %s: %w", q.Since.Format(time.RFC3339), err)
		}
		for _, p := range fresh {
			next[p] = starts[p]
		}
	}
	// The ledger's ends before the logs' ends: every processing read was
	// then of a packet written before the logs' ends were taken, so a
	// packet is never counted unexpected for being written between two
	// snapshots.
	var ledger, logs []Partition
	for _, p := range ps {
		if p.Topic == q.LedgerTopic {
			ledger = append(ledger, p)
		} else {
			logs = append(logs, p)
		}
	}
	if len(ledger) == 0 {
		return fmt.Errorf("topic %s does not exist: no analyzer has written a ledger record (do they run with LEDGER_TOPIC=%s?)", q.LedgerTopic, q.LedgerTopic)
	}
	ends, err := src.Ends(ctx, ledger)
	if err != nil {
		return fmt.Errorf("read end offsets of %s: %w", q.LedgerTopic, err)
	}
	logEnds, err := src.Ends(ctx, logs)
	if err != nil {
		return fmt.Errorf("read end offsets of %s*: %w", q.LogsPrefix, err)
	}
	maps.Copy(ends, logEnds)
	for _, p := range ps {
		if err := readTo(ctx, src, t, q, p, next, ends[p]); err != nil {
			return err
		}
	}
	return nil
}

// readTo reads p from next[p] to end.
func readTo(ctx context.Context, src Source, t *Tally, q Query, p Partition, next map[Partition]int64, end int64) error {
	for next[p] < end {
		rs, err := src.Fetch(ctx, p, next[p])
		if err != nil {
			return fmt.Errorf("read %s/%d at offset %d: %w", p.Topic, p.Partition, next[p], err)
		}
		if len(rs) == 0 {
			return fmt.Errorf("read %s/%d at offset %d: nothing below the end offset %d", p.Topic, p.Partition, next[p], end)
		}
		from := next[p]
		for _, r := range rs {
			if r.Offset < next[p] || r.Offset >= end {
				continue
			}
			if t.Records() >= q.MaxRecords {
				return errCap
			}
			if p.Topic == q.LedgerTopic {
				t.Processed(r)
			} else {
				t.Written(r)
			}
			next[p] = r.Offset + 1
		}
		switch last := rs[len(rs)-1].Offset; {
		case next[p] > from:
		case last >= end: // nothing below the end: the rest was deleted
			next[p] = end
		default:
			return fmt.Errorf("read %s/%d at offset %d: the broker answered older records only (up to %d)", p.Topic, p.Partition, from, last)
		}
	}
	return nil
}

// SetK6 records k6's own counts of the job's packets (nil: unknown).
func (r *Result) SetK6(attempted, accepted *int64) {
	r.Attempted, r.Accepted = attempted, accepted
	if accepted != nil {
		n := max(0, *accepted-r.Written)
		r.AcceptedNotWritten = &n
	}
}
