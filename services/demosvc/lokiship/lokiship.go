// Package lokiship ships a service's own log lines to a Loki push endpoint
// (the distributor's /loki/api/v1/push) the way Promtail does: batches,
// protobuf + snappy, a tenant in X-Scope-OrgID, and backoff on 429 and 503
// (honouring Retry-After) and on network errors, retrying the same batch.
//
// The buffer is bounded: when the endpoint is down long enough to fill it,
// the oldest lines are dropped and counted, so the service itself never
// blocks or grows without bound because its log sink is unavailable.
package lokiship

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Config of a shipper.
type Config struct {
	URL           string // push endpoint, e.g. http://distributor:8080/loki/api/v1/push
	Tenant        string // X-Scope-OrgID
	Labels        map[string]string
	BatchSize     int           // lines per push (100)
	FlushInterval time.Duration // at most this long between pushes (1s)
	BufferSize    int           // lines held while the endpoint is away (10000)
	MaxBackoff    time.Duration // (30s)
}

type entry struct {
	ts    time.Time
	level string
	line  string
}

// Shipper is safe for concurrent use.
type Shipper struct {
	cfg     Config
	client  *http.Client
	log     *slog.Logger
	mu      sync.Mutex
	buf     []entry
	kick    chan struct{}
	shipped metric.Int64Counter
	dropped metric.Int64Counter
	retries metric.Int64Counter
}

// New returns a shipper; Run sends.
func New(cfg Config, m metric.Meter, log *slog.Logger) (*Shipper, error) {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.BufferSize < cfg.BatchSize {
		cfg.BufferSize = max(10_000, cfg.BatchSize)
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	s := &Shipper{cfg: cfg, client: &http.Client{Timeout: 10 * time.Second}, log: log, kick: make(chan struct{}, 1)}
	var err error
	if s.shipped, err = m.Int64Counter("demo_log_lines_shipped", metric.WithDescription("Log lines accepted by the Loki endpoint.")); err != nil {
		return nil, err
	}
	if s.dropped, err = m.Int64Counter("demo_log_lines_dropped", metric.WithDescription("Log lines dropped, by reason (buffer_full, rejected).")); err != nil {
		return nil, err
	}
	if s.retries, err = m.Int64Counter("demo_log_push_retries", metric.WithDescription("Pushes retried, by status (429, 503, network).")); err != nil {
		return nil, err
	}
	return s, nil
}

// Log queues one line. It never blocks.
func (s *Shipper) Log(ts time.Time, level, line string) {
	s.mu.Lock()
	s.buf = append(s.buf, entry{ts, level, line})
	over := len(s.buf) - s.cfg.BufferSize
	if over > 0 {
		s.buf = append(s.buf[:0:0], s.buf[over:]...)
	}
	full := len(s.buf) >= s.cfg.BatchSize
	s.mu.Unlock()
	if over > 0 {
		s.dropped.Add(context.Background(), int64(over), metric.WithAttributes(attribute.String("reason", "buffer_full")))
	}
	if full {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// Run pushes batches until ctx ends, then makes one last bounded attempt
// to flush what is left.
func (s *Shipper) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			s.flush(fctx, false)
			return nil
		case <-t.C:
		case <-s.kick:
		}
		s.flush(ctx, true)
	}
}

// flush sends everything buffered, a batch at a time; with retry it backs
// off and retries a batch the endpoint refused for now.
func (s *Shipper) flush(ctx context.Context, retry bool) {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		s.mu.Lock()
		n := min(len(s.buf), s.cfg.BatchSize)
		batch := append([]entry(nil), s.buf[:n]...)
		s.mu.Unlock()
		if n == 0 {
			return
		}
		wait, err := s.push(ctx, batch)
		if err == nil {
			s.remove(batch)
			s.shipped.Add(ctx, int64(n))
			backoff = 250 * time.Millisecond
			continue
		}
		var permanent *permanentError
		if asPermanent(err, &permanent) {
			s.remove(batch)
			s.dropped.Add(ctx, int64(n), metric.WithAttributes(attribute.String("reason", "rejected")))
			s.log.Warn("log push rejected; batch dropped", "err", err)
			continue
		}
		if !retry {
			return
		}
		s.retries.Add(ctx, 1, metric.WithAttributes(attribute.String("status", statusOf(err))))
		if wait == 0 {
			wait, backoff = backoff, min(2*backoff, s.cfg.MaxBackoff)
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(wait, s.cfg.MaxBackoff)):
		}
	}
}

// remove drops the first len(batch) entries if they are still the batch
// (the buffer may have been trimmed meanwhile).
func (s *Shipper) remove(batch []entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(batch)
	if len(s.buf) >= n && s.buf[0] == batch[0] {
		s.buf = s.buf[n:]
	}
}

type permanentError struct{ status int }

func (e *permanentError) Error() string { return "push answered " + strconv.Itoa(e.status) }

func asPermanent(err error, target **permanentError) bool {
	p, ok := err.(*permanentError)
	if ok {
		*target = p
	}
	return ok
}

type retryError struct{ status string }

func (e *retryError) Error() string { return "push: " + e.status }

func statusOf(err error) string {
	if r, ok := err.(*retryError); ok {
		return r.status
	}
	return "network"
}

// push sends one batch. It returns how long the endpoint asked to wait.
func (s *Shipper) push(ctx context.Context, batch []entry) (time.Duration, error) {
	byLevel := map[string][]push.Entry{}
	for _, e := range batch {
		byLevel[e.level] = append(byLevel[e.level], push.Entry{Timestamp: e.ts, Line: e.line})
	}
	levels := make([]string, 0, len(byLevel))
	for l := range byLevel {
		levels = append(levels, l)
	}
	sort.Strings(levels)
	var req push.PushRequest
	for _, l := range levels {
		req.Streams = append(req.Streams, push.Stream{Labels: labelString(s.cfg.Labels, l), Entries: byLevel[l]})
	}
	raw, err := req.Marshal()
	if err != nil {
		return 0, &permanentError{status: 0}
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(snappy.Encode(nil, raw)))
	if err != nil {
		return 0, err
	}
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	hreq.Header.Set("X-Scope-OrgID", s.cfg.Tenant)
	resp, err := s.client.Do(hreq)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		return 0, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode >= 500:
		wait := time.Duration(0)
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
			wait = time.Duration(secs) * time.Second
		}
		return wait, &retryError{status: strconv.Itoa(resp.StatusCode)}
	}
	return 0, &permanentError{status: resp.StatusCode}
}

// labelString renders {k="v",...,level="l"} with sorted keys.
func labelString(labels map[string]string, level string) string {
	keys := make([]string, 0, len(labels)+1)
	for k := range labels {
		if k != "level" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteByte('{')
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q,", k, labels[k])
	}
	fmt.Fprintf(&b, "level=%q}", level)
	return b.String()
}

// Pending is how many lines wait to be shipped.
func (s *Shipper) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.buf)
}
