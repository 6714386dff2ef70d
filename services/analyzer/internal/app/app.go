// Package app wires an analyzer: configuration from the environment, the
// consumer, and the HTTP endpoints /health, /stats, /metrics and the admin
// routes /admin/delivery and /admin/processing (admin.go).
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"golang.org/x/sync/errgroup"

	"github.com/dsplab/dsplab/internal/httpserver"
	"github.com/dsplab/dsplab/internal/ledger"
	"github.com/dsplab/dsplab/internal/telemetry"
	"github.com/dsplab/dsplab/services/analyzer/internal/consume"
)

// Config is the analyzer's configuration, from the environment.
type Config struct {
	Listen   string
	Consumer consume.Config
	// StateFile (DELIVERY_STATE_FILE) keeps a delivery mode switched at
	// run time across restarts of the process; empty: not kept.
	StateFile string
	// ProcessingStateFile (PROCESSING_STATE_FILE) keeps a processing delay
	// set at run time across restarts of the process; empty: not kept.
	ProcessingStateFile string
	// AdminToken (ADMIN_TOKEN) and AllowedHosts (ALLOWED_HOSTS) protect
	// the admin routes as the distributor's are protected.
	AdminToken, AllowedHosts string
}

// ConfigFromEnv reads PORT, ANALYZER_ID, KAFKA_BROKERS, PROCESSING_DELAY_MS,
// MAX_MESSAGES_PER_SEC, KAFKA_TOPIC_PREFIX, KAFKA_GROUP, DEDUP_WINDOW,
// KAFKA_SESSION_TIMEOUT_MS, DELIVERY, LEDGER_TOPIC (set and empty: no
// ledger), COMMIT_INTERVAL_MS, FETCH_MIN_BYTES, FETCH_MAX_WAIT_MS,
// LEDGER_BATCH_TIMEOUT_MS, DELIVERY_STATE_FILE, PROCESSING_STATE_FILE,
// ADMIN_TOKEN and ALLOWED_HOSTS, and reports every bad value at once.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	getenv := func(k string) string { v, _ := lookup(k); return v }
	get := func(k, def string) string {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
		return def
	}
	var errs []error
	num := func(k, def string) float64 {
		f, err := strconv.ParseFloat(get(k, def), 64)
		if err != nil || f < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: must be a non-negative number", k, get(k, def)))
		}
		return f
	}
	ms := func(k, def string) time.Duration { return time.Duration(num(k, def) * float64(time.Millisecond)) }
	id := get("ANALYZER_ID", "analyzer-1")
	port := get("PORT", "9001")
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		errs = append(errs, fmt.Errorf("PORT=%q: not a port number", port))
	}
	ledgerTopic, set := lookup("LEDGER_TOPIC")
	if !set {
		ledgerTopic = ledger.DefaultTopic
	}
	mode, err := ledger.ParseMode(get("DELIVERY", string(ledger.AtLeastOnce)))
	if err != nil {
		errs = append(errs, fmt.Errorf("DELIVERY: %w", err))
	}
	c := Config{Listen: ":" + port, StateFile: strings.TrimSpace(getenv("DELIVERY_STATE_FILE")),
		ProcessingStateFile: strings.TrimSpace(getenv("PROCESSING_STATE_FILE")),
		AdminToken:          strings.TrimSpace(getenv("ADMIN_TOKEN")), AllowedHosts: getenv("ALLOWED_HOSTS"),
		Consumer: consume.Config{
			ID:                 id,
			Topic:              get("KAFKA_TOPIC_PREFIX", "logs.") + id,
			Group:              get("KAFKA_GROUP", id), // the distributor reads lag of group <group_prefix><id>
			ProcessingDelay:    ms("PROCESSING_DELAY_MS", "0"),
			MaxMessagesPerSec:  num("MAX_MESSAGES_PER_SEC", "0"),
			DedupWindow:        int(num("DEDUP_WINDOW", "100000")),
			SessionTimeout:     ms("KAFKA_SESSION_TIMEOUT_MS", "6000"),
			LedgerTopic:        strings.TrimSpace(ledgerTopic),
			Delivery:           mode,
			CommitInterval:     ms("COMMIT_INTERVAL_MS", "200"),
			FetchMinBytes:      int(num("FETCH_MIN_BYTES", strconv.Itoa(consume.DefaultFetchMinBytes))),
			FetchMaxWait:       ms("FETCH_MAX_WAIT_MS", strconv.Itoa(int(consume.DefaultFetchMaxWait/time.Millisecond))),
			LedgerBatchTimeout: ms("LEDGER_BATCH_TIMEOUT_MS", strconv.Itoa(int(consume.DefaultLedgerBatchTimeout/time.Millisecond))),
		}}
	for _, b := range strings.Split(get("KAFKA_BROKERS", "127.0.0.1:9092"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.Consumer.Brokers = append(c.Consumer.Brokers, b)
		}
	}
	if len(c.Consumer.Brokers) == 0 {
		errs = append(errs, errors.New("KAFKA_BROKERS: needs at least one broker"))
	}
	if c.Consumer.DedupWindow < 1 {
		errs = append(errs, errors.New("DEDUP_WINDOW: must be at least 1"))
	}
	if n := c.Consumer.FetchMinBytes; n < 1 || n > consume.MaxFetchBytes {
		errs = append(errs, fmt.Errorf("FETCH_MIN_BYTES=%q: must be from 1 to %d", get("FETCH_MIN_BYTES", ""), consume.MaxFetchBytes))
	}
	if d := c.Consumer.FetchMaxWait; d < time.Millisecond || d > 10*time.Second {
		errs = append(errs, fmt.Errorf("FETCH_MAX_WAIT_MS=%q: must be from 1 to 10000", get("FETCH_MAX_WAIT_MS", "")))
	}
	if d := c.Consumer.LedgerBatchTimeout; d < time.Millisecond || d > time.Second {
		errs = append(errs, fmt.Errorf("LEDGER_BATCH_TIMEOUT_MS=%q: must be from 1 to 1000", get("LEDGER_BATCH_TIMEOUT_MS", "")))
	}
	if c.Consumer.CommitInterval < 10*time.Millisecond {
		errs = append(errs, errors.New("COMMIT_INTERVAL_MS: must be at least 10"))
	}
	if mode == ledger.EffectivelyOnce && c.Consumer.LedgerTopic == "" {
		errs = append(errs, fmt.Errorf("DELIVERY=effectively-once: %w", consume.ErrNoLedger))
	}
	return c, errors.Join(errs...)
}

// App is a running analyzer.
type App struct {
	ledgerTopic string
	delayFile   string // PROCESSING_STATE_FILE
	consumer    *consume.Consumer
	stats       *consume.Stats
	server      *httpserver.Server
}

// New builds the analyzer and binds its port (listen overrides cfg.Listen
// when not empty).
func New(cfg Config, listen string, tel *telemetry.Providers, log *slog.Logger) (*App, error) {
	stats, err := consume.NewStats(cfg.Consumer.ID, tel.MeterProvider.Meter("github.com/dsplab/dsplab/services/analyzer"))
	if err != nil {
		return nil, err
	}
	if err := loadMode(&cfg, log); err != nil {
		return nil, err
	}
	if err := loadDelay(&cfg, log); err != nil {
		return nil, err
	}
	if cfg.StateFile != "" {
		cfg.Consumer.OnModeChange = func(m ledger.Mode) error { return saveMode(cfg.StateFile, m) }
	}
	a := &App{ledgerTopic: cfg.Consumer.LedgerTopic, delayFile: cfg.ProcessingStateFile, stats: stats, consumer: consume.New(cfg.Consumer, stats, tel.TracerProvider, log)}
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Get("/health", a.health)
	r.Get("/stats", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, a.stats.Snapshot()) })
	r.Method(http.MethodGet, "/metrics", tel.MetricsHandler)
	r.Group(func(r chi.Router) { a.adminRoutes(r, cfg) })
	if listen == "" {
		listen = cfg.Listen
	}
	a.server, err = httpserver.Listen(listen, r, httpserver.Options{Logger: log, ShutdownTimeout: 5 * time.Second})
	return a, err
}

// Addr is the HTTP listen address.
func (a *App) Addr() string { return a.server.Addr() }

// Stats returns the analyzer's counters.
func (a *App) Stats() consume.Snapshot { return a.stats.Snapshot() }

// Run consumes and serves until ctx ends.
func (a *App) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.server.Run(ctx) })
	g.Go(func() error { return a.consumer.Run(ctx) })
	return g.Wait()
}

// health answers healthy while the consume loop runs. A Kafka outage does
// not make an analyzer unhealthy (its reader keeps retrying); the
// distributor sees Kafka trouble on its own writes.
func (a *App) health(w http.ResponseWriter, r *http.Request) {
	if !a.consumer.Running() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unhealthy"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "healthy", "delivery": string(a.consumer.Mode())})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
