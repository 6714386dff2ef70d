// Package app wires the distributor: it owns every long-lived component,
// the current configuration snapshot and reloading, and runs them under one
// errgroup, stopping them in order.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/dsplab/dsplab/distributor/internal/api"
	"github.com/dsplab/dsplab/distributor/internal/breaker"
	"github.com/dsplab/dsplab/distributor/internal/config"
	"github.com/dsplab/dsplab/distributor/internal/metrics"
	"github.com/dsplab/dsplab/distributor/internal/pipeline"
	"github.com/dsplab/dsplab/distributor/internal/pool"
	"github.com/dsplab/dsplab/distributor/internal/produce"
	"github.com/dsplab/dsplab/distributor/internal/ratelimit"
	"github.com/dsplab/dsplab/distributor/internal/route"
	"github.com/dsplab/dsplab/distributor/internal/sla"
	"github.com/dsplab/dsplab/internal/httpserver"
	"github.com/dsplab/dsplab/internal/telemetry"
)

// Options configure New.
type Options struct {
	ConfigPath string              // YAML file; empty means defaults + env
	Getenv     func(string) string // nil means os.Getenv
	// Listen overrides the configured listen address (tests use
	// "127.0.0.1:0").
	Listen    string
	Telemetry *telemetry.Providers
	Logger    *slog.Logger
	Version   string
}

// App is a running distributor.
type App struct {
	opts     Options
	log      *slog.Logger
	cfg      atomic.Pointer[config.Config]
	reloadMu sync.Mutex
	overlay  []byte // the run-time config overlay (admin API), under reloadMu
	reloadOK atomic.Bool

	limiter   *ratelimit.Limiter
	router    *route.Router
	pool      *pool.Pool
	producer  *produce.Producer
	admin     atomic.Pointer[produce.Admin] // replaced on reload when brokers change
	tracker   *sla.Tracker
	pipeline  *pipeline.Pipeline
	server    *httpserver.Server
	topicsOK  atomic.Bool
	topicKick chan struct{}
	security  api.Security // fixed at start-up (securityFromEnv)
}

// securityFromEnv reads the admin routes' protection: ADMIN_TOKEN,
// ALLOWED_HOSTS and PPROF. It is not part of config.Config on purpose: the
// run-time overlay (PUT /admin/config) must never be able to change it.
func securityFromEnv(getenv func(string) string) (api.Security, error) {
	s := api.Security{AdminToken: strings.TrimSpace(getenv("ADMIN_TOKEN")), AllowedHosts: getenv("ALLOWED_HOSTS")}
	if v := strings.TrimSpace(getenv("PPROF")); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return s, fmt.Errorf("PPROF=%q: must be true or false", v)
		}
		s.Pprof = on
	}
	return s, nil
}

// New loads the configuration, builds every component and binds the
// listening socket. Nothing runs until Run.
func New(o Options) (*App, error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	cfg, err := config.Load(o.ConfigPath, o.Getenv)
	if err != nil {
		return nil, err
	}
	sec, err := securityFromEnv(o.Getenv)
	if err != nil {
		return nil, err
	}
	a := &App{opts: o, log: o.Logger, topicKick: make(chan struct{}, 1), security: sec}
	a.cfg.Store(&cfg)
	a.reloadOK.Store(true)
	a.log.Info("admin routes", "token_required", sec.AdminToken != "", "pprof", sec.Pprof, "allowed_hosts", sec.AllowedHosts)

	meter := o.Telemetry.MeterProvider.Meter("github.com/dsplab/dsplab/distributor")
	inst, err := metrics.New(meter)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	a.limiter = ratelimit.New(cfg.RateLimits())
	a.router = route.New(cfg.Routing.Strategy)
	a.admin.Store(produce.NewAdmin(cfg.Kafka))
	a.producer = produce.New(cfg.Kafka, produce.Options{Observer: topicWatch{inst, a.kickTopics}, TracerProvider: o.Telemetry.TracerProvider, Logger: a.log,
		OnBreakerChange: func(_, to breaker.State) {
			if to == breaker.Closed {
				a.kickTopics() // Kafka is back: make sure the topics are there
			}
		}})
	a.pool = pool.New(cfg, pool.Options{LagReader: a.lagReader(), OnChange: a.updateRoutes, Logger: a.log})
	a.tracker = sla.New(slaConfig(cfg))
	a.pipeline = pipeline.New(a.router, a.producer, a, inst)
	if err := metrics.RegisterGauges(meter, a, o.Version, runtime.Version()); err != nil {
		return nil, fmt.Errorf("gauges: %w", err)
	}
	listen := cfg.Listen
	if o.Listen != "" {
		listen = o.Listen
	}
	a.server, err = httpserver.Listen(listen, a.handler(inst), httpserver.Options{Logger: a.log, MaxConnections: cfg.Limits.MaxConnections})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// topicWatch passes write outcomes on to the metrics and re-runs topic
// creation when Kafka says a topic is missing (a broker that lost its
// state, or a topic deleted by hand).
type topicWatch struct {
	next produce.Observer
	kick func()
}

func (t topicWatch) KafkaBatch(topic string, records int) { t.next.KafkaBatch(topic, records) }

func (t topicWatch) KafkaWrite(ctx context.Context, d time.Duration, errType string) {
	t.next.KafkaWrite(ctx, d, errType)
	if errType == produce.TypeUnknownTopic {
		t.kick()
	}
}

// lagReader reads through whichever admin client is current.
func (a *App) lagReader() pool.LagReader {
	return lagFunc(func(ctx context.Context, topic, group string) (int64, error) {
		return a.admin.Load().Lag(ctx, topic, group)
	})
}

type lagFunc func(ctx context.Context, topic, group string) (int64, error)

func (f lagFunc) Lag(ctx context.Context, topic, group string) (int64, error) {
	return f(ctx, topic, group)
}

func slaConfig(c config.Config) sla.Config {
	return sla.Config{EvalPeriod: c.SLA.EvalPeriod, Window: c.SLA.Window, ErrorRateThreshold: c.SLA.ErrorRateThreshold, MaxConsecutiveKafkaErrors: int64(c.SLA.MaxConsecutiveKafkaErrors)}
}

func (a *App) handler(inst *metrics.Instruments) http.Handler {
	return api.NewRouter(api.Deps{
		Config:         func() config.Config { return *a.cfg.Load() },
		Limiter:        a.limiter,
		Pipeline:       a.pipeline,
		Analyzers:      a.pool,
		Ready:          a.ready,
		SLA:            a.tracker,
		Reload:         a.Reload,
		SetOverlay:     a.SetOverlay,
		Overlay:        a.Overlay,
		Metrics:        inst,
		MetricsHandler: a.opts.Telemetry.MetricsHandler,
		TracerProvider: a.opts.Telemetry.TracerProvider,
		Logger:         a.log,
		Security:       a.security,
	})
}

// Addr is the HTTP listen address.
func (a *App) Addr() string { return a.server.Addr() }

// Run serves until ctx ends; SIGHUP reloads the configuration.
func (a *App) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.server.Run(ctx) })
	g.Go(func() error { return a.pool.Run(ctx) })
	g.Go(func() error { return a.tracker.Run(ctx, a.producer.ConsecutiveErrors) })
	g.Go(func() error { return a.ensureTopics(ctx) })
	g.Go(func() error { return a.reloadOnSIGHUP(ctx) })
	err := g.Wait()
	// The HTTP server has drained its requests; now close the writer,
	// which flushes nothing pending because every write is synchronous.
	if cerr := a.producer.Close(); cerr != nil {
		a.log.Warn("close kafka writer", "err", cerr)
	}
	return err
}

func (a *App) reloadOnSIGHUP(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			if err := a.Reload(ctx); err != nil {
				a.log.Error("reload on SIGHUP failed; previous configuration kept", "err", err)
			}
		}
	}
}

// Reload re-reads the file and environment. An invalid configuration is
// rejected and the last good one kept; distributor_config_last_reload_
// successful says which happened.
func (a *App) Reload(ctx context.Context) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	return a.reloadLocked(ctx)
}

// SetOverlay replaces the run-time overlay (see config.LoadWithOverlay;
// empty clears it) and reloads. If the result is invalid, the previous
// overlay and configuration are kept and the error says why.
//
// A secret shown redacted by Overlay and sent back as it was shown (the
// platform restores the overlay it read before an experiment) keeps the
// value in force.
func (a *App) SetOverlay(ctx context.Context, overlay []byte) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	overlay, err := config.ResolveRedacted(overlay, *a.cfg.Load())
	if err != nil {
		return err
	}
	prev := a.overlay
	a.overlay = overlay
	if err := a.reloadLocked(ctx); err != nil {
		a.overlay = prev
		return err
	}
	return nil
}

// Overlay returns the run-time overlay in force ("" if none), secrets
// redacted (config.RedactOverlay).
func (a *App) Overlay() []byte {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	return config.RedactOverlay(a.overlay)
}

func (a *App) reloadLocked(ctx context.Context) error {
	next, err := config.LoadWithOverlay(a.opts.ConfigPath, a.opts.Getenv, a.overlay)
	if err != nil {
		a.reloadOK.Store(false)
		return err
	}
	prev := a.cfg.Load()
	if next.Listen != prev.Listen {
		a.log.Warn("listen address changes need a restart; keeping the current one", "current", prev.Listen, "configured", next.Listen)
	}
	a.limiter.SetConfig(next.RateLimits())
	a.router.SetStrategy(next.Routing.Strategy)
	a.producer.Reconfigure(next.Kafka)
	if !equalBrokers(prev.Kafka, next.Kafka) {
		a.admin.Store(produce.NewAdmin(next.Kafka))
	}
	a.tracker.SetConfig(slaConfig(next))
	a.cfg.Store(&next)
	a.pool.Update(next) // after the store: routes are rebuilt from the new snapshot
	a.reloadOK.Store(true)
	a.kickTopics()
	a.log.InfoContext(ctx, "configuration reloaded", "analyzers", len(next.Analyzers), "strategy", next.Routing.Strategy)
	return nil
}

func equalBrokers(a, b config.Kafka) bool {
	return fmt.Sprint(a.Brokers, a.SASLUser, a.SASLPassword) == fmt.Sprint(b.Brokers, b.SASLUser, b.SASLPassword)
}

// updateRoutes recomputes the router's members from the pool.
func (a *App) updateRoutes() { a.router.SetMembers(a.pool.Members()) }

func (a *App) kickTopics() {
	select {
	case a.topicKick <- struct{}{}:
	default:
	}
}

// ensureTopics creates the analyzers' topics at start-up and after every
// reload, retrying while Kafka is unreachable.
func (a *App) ensureTopics(ctx context.Context) error {
	for {
		cfg := a.cfg.Load()
		topics := make([]string, len(cfg.Analyzers))
		for i, an := range cfg.Analyzers {
			topics[i] = cfg.Kafka.Topic(an.ID)
		}
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := a.admin.Load().EnsureTopics(tctx, topics, cfg.Kafka.Partitions, cfg.Kafka.Replication)
		cancel()
		retry := time.Duration(0)
		if err != nil && ctx.Err() == nil {
			a.log.Warn("ensure topics; retrying", "err", err)
			retry = 2 * time.Second
		} else if err == nil {
			if !a.topicsOK.Swap(true) {
				a.log.Info("topics ready", "topics", topics)
			}
		}
		var timer <-chan time.Time
		if retry > 0 {
			timer = time.After(retry)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.topicKick:
		case <-timer:
		}
	}
}

func (a *App) ready() error {
	var errs []error
	if !a.topicsOK.Load() {
		errs = append(errs, errors.New("kafka topics not created yet"))
	}
	if len(a.pool.Members()) == 0 {
		errs = append(errs, errors.New("no healthy analyzer"))
	}
	if a.producer.BreakerState() == breaker.Open {
		errs = append(errs, errors.New("kafka breaker open"))
	}
	return errors.Join(errs...)
}

// Topic implements pipeline.Layout.
func (a *App) Topic(analyzerID string) string { return a.cfg.Load().Kafka.Topic(analyzerID) }

// KeyByTenant implements pipeline.Layout: tenant-hash routing keys records
// by tenant so one tenant stays on one partition, in order.
func (a *App) KeyByTenant() bool { return a.cfg.Load().Routing.Strategy == route.TenantHash }

// AnalyzerGauges implements metrics.State.
func (a *App) AnalyzerGauges() []metrics.AnalyzerGauge {
	st := a.pool.Statuses()
	out := make([]metrics.AnalyzerGauge, len(st))
	for i, s := range st {
		out[i] = metrics.AnalyzerGauge{ID: s.ID, Up: s.Up, BreakerState: s.BreakerState, Weight: s.EffectiveWeight, QueueDepth: s.Lag,
			BreakerTransitions: s.BreakerTransitions, UpTransitions: s.UpTransitions}
	}
	return out
}

// KafkaConsecutiveErrors implements metrics.State.
func (a *App) KafkaConsecutiveErrors() int64 { return a.producer.ConsecutiveErrors() }

// HealthUp implements metrics.State.
func (a *App) HealthUp() bool { return a.tracker.Last().HealthUp }

// SLASuccessRatio implements metrics.State.
func (a *App) SLASuccessRatio() float64 { return a.tracker.Last().SuccessRatio }

// ConfigReloadOK implements metrics.State.
func (a *App) ConfigReloadOK() bool { return a.reloadOK.Load() }

// ConnectionsShed is the number of connections answered 503 at the
// connection cap (metrics.State).
func (a *App) ConnectionsShed() int64 {
	if a.server == nil { // gauges are registered before the server exists
		return 0
	}
	return a.server.ShedConnections()
}
