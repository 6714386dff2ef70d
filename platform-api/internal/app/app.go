// Package app wires the platform API: configuration, the Docker runtime,
// the fault manager (reconciled before serving), metrics and HTTP.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/errgroup"

	"github.com/dsplab/dsplab/internal/httpserver"
	"github.com/dsplab/dsplab/internal/prom"
	"github.com/dsplab/dsplab/internal/telemetry"
	"github.com/dsplab/dsplab/platform-api/internal/alerts"
	"github.com/dsplab/dsplab/platform-api/internal/annotate"
	"github.com/dsplab/dsplab/platform-api/internal/api"
	"github.com/dsplab/dsplab/platform-api/internal/distributor"
	"github.com/dsplab/dsplab/platform-api/internal/docker"
	"github.com/dsplab/dsplab/platform-api/internal/experiments"
	"github.com/dsplab/dsplab/platform-api/internal/faults"
	"github.com/dsplab/dsplab/platform-api/internal/ledgercheck"
	"github.com/dsplab/dsplab/platform-api/internal/records"
	"github.com/dsplab/dsplab/platform-api/internal/traffic"
)

// Config is the platform's configuration, from the environment.
type Config struct {
	Listen  string
	Project string // COMPOSE_PROJECT; empty: the platform's own container's project
	Token   string // PLATFORM_API_TOKEN or the content of PLATFORM_API_TOKEN_FILE (token.go)
	// AllowedHosts are names the API may be reached by besides loopback,
	// IP literals and platform-api (ALLOWED_HOSTS, comma separated).
	AllowedHosts string
	// DistributorToken is the distributor's ADMIN_TOKEN, sent with every
	// call of its admin API (DISTRIBUTOR_ADMIN_TOKEN).
	DistributorToken string
	Limits           faults.Limits
	Pumba            faults.Pumba
	Traffic          traffic.Config
	Grafana          annotate.Options
	// GrafanaPublicURL is Grafana as a user's browser reaches it, for the
	// HTML reports' links (GRAFANA_PUBLIC_URL, http://localhost:3000;
	// "off": no links).
	GrafanaPublicURL string
	// PrometheusURL is queried by experiment checks (PROMETHEUS_URL).
	PrometheusURL string
	// ExperimentsDir holds the presets (EXPERIMENTS_DIR, /experiments).
	ExperimentsDir string
	// DistributorURL is the distributor whose config overlay the platform
	// sets (DISTRIBUTOR_URL, http://distributor:8080).
	DistributorURL string
	// ImageWait bounds how long a job waits for its image to be pulled
	// (IMAGE_PULL_WAIT_SECONDS, 300).
	ImageWait time.Duration
	// StateDir holds the platform's own state across restarts (STATE_DIR;
	// /var/lib/dsplab in compose, a volume). Empty: kept in memory only.
	StateDir string
	// Ledger is where the exact delivery ledger is read (KAFKA_BROKERS,
	// kafka:9092, "off" for none; KAFKA_TOPIC_PREFIX, logs.; LEDGER_TOPIC,
	// ledger.processed; LEDGER_MAX_RECORDS, 1000000;
	// LEDGER_TIMEOUT_SECONDS, 120; LEDGER_QUIET_SECONDS, 10: longer than a
	// restarted analyzer takes to rejoin its consumer group, 6 s).
	// LedgerOff says KAFKA_BROKERS=off.
	Ledger    ledgercheck.Config
	LedgerOff bool
	// AnalyzerToken is the analyzers' ADMIN_TOKEN, sent to their admin API
	// (ANALYZER_ADMIN_TOKEN; default: DISTRIBUTOR_ADMIN_TOKEN, which
	// compose gives the analyzers too).
	AnalyzerToken string
}

// ConfigFromEnv reads PORT (5050), COMPOSE_PROJECT, PLATFORM_API_TOKEN and
// PLATFORM_API_TOKEN_FILE, ALLOWED_HOSTS, DISTRIBUTOR_ADMIN_TOKEN,
// MAX_FAULT_DURATION_SECONDS (600), MAX_CONCURRENT_FAULTS (10), K6_IMAGE
// (grafana/k6:1.8.1), K6_SCRIPTS_DIR (/k6, the image's copy of k6/),
// STACK_NETWORK (the project's network, for job containers and partition
// IPs), PUMBA_IMAGE (ghcr.io/alexei-led/pumba:1.1.7), PUMBA_NETTOOLS_IMAGE
// (ghcr.io/alexei-led/pumba-alpine-nettools:latest), DOCKER_SOCKET_HOST_PATH
// (/var/run/docker.sock, mounted into Pumba jobs), PUMBA_CLEANUP_TIMEOUT_SECONDS
// (30, each leftover-rule cleanup sidecar), PROMETHEUS_RW_URL (remote write;
// empty: off), MAX_TRAFFIC_RPS (20000), MAX_TRAFFIC_DURATION_SECONDS (3600)
// MAX_TRAFFIC_JOBS (3), and GRAFANA_URL (annotations; empty: off),
// GRAFANA_USER (admin), GRAFANA_PASSWORD (admin) or GRAFANA_TOKEN,
// PROMETHEUS_URL (http://prometheus:9090), EXPERIMENTS_DIR (/experiments),
// DISTRIBUTOR_URL (http://distributor:8080), IMAGE_PULL_WAIT_SECONDS
// (300), STATE_DIR (empty: nothing kept across restarts) and
// GRAFANA_PUBLIC_URL (http://localhost:3000, the reports' links), reporting
// every bad value at once.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var errs []error
	get := func(k, def string) string {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
		return def
	}
	positive := func(k, def string) int {
		n, err := strconv.Atoi(get(k, def))
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: must be a positive integer", k, get(k, def)))
		}
		return n
	}
	c := Config{
		Listen: ":" + get("PORT", "5050"), Project: get("COMPOSE_PROJECT", ""),
		AllowedHosts: getenv("ALLOWED_HOSTS"), DistributorToken: get("DISTRIBUTOR_ADMIN_TOKEN", ""),
		Limits: faults.Limits{
			MaxDuration:   time.Duration(positive("MAX_FAULT_DURATION_SECONDS", "600")) * time.Second,
			MaxConcurrent: positive("MAX_CONCURRENT_FAULTS", "10"),
		},
		Pumba: faults.Pumba{
			Image: get("PUMBA_IMAGE", "ghcr.io/alexei-led/pumba:1.1.7"), NettoolsImage: get("PUMBA_NETTOOLS_IMAGE", "ghcr.io/alexei-led/pumba-alpine-nettools:latest"),
			DockerSocket: get("DOCKER_SOCKET_HOST_PATH", "/var/run/docker.sock"), Network: get("STACK_NETWORK", ""),
			CleanupTimeout: time.Duration(positive("PUMBA_CLEANUP_TIMEOUT_SECONDS", "30")) * time.Second,
		},
		Traffic: traffic.Config{
			Image: get("K6_IMAGE", "grafana/k6:1.8.1"), ScriptsDir: get("K6_SCRIPTS_DIR", "/k6"),
			Network: get("STACK_NETWORK", ""), RemoteWriteURL: get("PROMETHEUS_RW_URL", ""),
			MaxRPS:      float64(positive("MAX_TRAFFIC_RPS", "20000")),
			MaxDuration: time.Duration(positive("MAX_TRAFFIC_DURATION_SECONDS", "3600")) * time.Second,
			MaxJobs:     positive("MAX_TRAFFIC_JOBS", "3"),
		},
	}
	c.PrometheusURL, c.ExperimentsDir = get("PROMETHEUS_URL", "http://prometheus:9090"), get("EXPERIMENTS_DIR", "/experiments")
	c.DistributorURL = get("DISTRIBUTOR_URL", "http://distributor:8080")
	c.ImageWait = time.Duration(positive("IMAGE_PULL_WAIT_SECONDS", "300")) * time.Second
	var err error
	if c.Token, err = platformToken(getenv); err != nil {
		errs = append(errs, err)
	}
	c.StateDir = get("STATE_DIR", "")
	if c.GrafanaPublicURL = get("GRAFANA_PUBLIC_URL", "http://localhost:3000"); c.GrafanaPublicURL == "off" {
		c.GrafanaPublicURL = ""
	}
	// Compose gives the analyzers the distributor's admin token.
	c.AnalyzerToken = get("ANALYZER_ADMIN_TOKEN", c.DistributorToken)
	brokers := get("KAFKA_BROKERS", "kafka:9092")
	c.LedgerOff = brokers == "off"
	for _, b := range strings.Split(brokers, ",") {
		if b = strings.TrimSpace(b); b != "" && !c.LedgerOff {
			c.Ledger.Brokers = append(c.Ledger.Brokers, b)
		}
	}
	c.Ledger.LogsPrefix, c.Ledger.LedgerTopic = get("KAFKA_TOPIC_PREFIX", "logs."), get("LEDGER_TOPIC", "ledger.processed")
	c.Ledger.MaxRecords = int64(positive("LEDGER_MAX_RECORDS", "1000000"))
	c.Ledger.Timeout = time.Duration(positive("LEDGER_TIMEOUT_SECONDS", "120")) * time.Second
	c.Ledger.Quiet = time.Duration(positive("LEDGER_QUIET_SECONDS", "10")) * time.Second
	if strings.HasPrefix(c.Ledger.LedgerTopic, c.Ledger.LogsPrefix) {
		errs = append(errs, fmt.Errorf("LEDGER_TOPIC=%q starts with KAFKA_TOPIC_PREFIX=%q: the ledger would be read as the distributor's topics", c.Ledger.LedgerTopic, c.Ledger.LogsPrefix))
	}
	c.Grafana.URL, c.Grafana.User, c.Grafana.Password, c.Grafana.Token = get("GRAFANA_URL", ""), get("GRAFANA_USER", "admin"), get("GRAFANA_PASSWORD", "admin"), getenv("GRAFANA_TOKEN")
	return c, errors.Join(errs...)
}

// App is a running platform API.
type App struct {
	rt      *docker.Runtime
	faults  *faults.Manager
	traffic *traffic.Manager
	exps    *experiments.Manager
	grafana *annotate.Grafana
	stop    context.CancelFunc
	server  *httpserver.Server
	log     *slog.Logger
}

// New connects to Docker, reconciles faults left by an earlier run, and
// binds the HTTP port (listen overrides cfg.Listen when not empty).
func New(ctx context.Context, cfg Config, listen string, tel *telemetry.Providers, log *slog.Logger) (*App, error) {
	rt, err := docker.New(ctx, cfg.Project)
	if err != nil {
		return nil, err
	}
	// Job images are not compose services: nothing else pulls them. They
	// are checked and pulled in the background from now on, and ensured
	// again before each job.
	rt.ConfigureImages(docker.ImageOptions{Wait: cfg.ImageWait, Logger: log})
	rt.PrefetchImages(cfg.Traffic.Image, cfg.Pumba.Image, cfg.Pumba.NettoolsImage)
	meter := tel.MeterProvider.Meter("github.com/dsplab/dsplab/platform-api")
	obs, err := newFaultMetrics(meter)
	if err != nil {
		return nil, err
	}
	grafana := annotate.New(cfg.Grafana, log)
	m := faults.New(rt, cfg.Limits, cfg.Pumba, log, obs, grafana)
	// Jobs run under the platform's own context, never a request's.
	jobsCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	tm := traffic.New(jobsCtx, rt, cfg.Traffic, log, grafana)
	if err := registerGauges(meter, m, tm); err != nil {
		stop()
		return nil, err
	}
	reconcile(ctx, m, tm, log)
	alertStore := alerts.New(1000)
	dist := distributor.New(cfg.DistributorURL, cfg.DistributorToken).WithAnalyzerToken(cfg.AnalyzerToken)
	exps, err := newExperiments(cfg, experiments.Options{Querier: prom.New(cfg.PrometheusURL), Faults: m, Traffic: tm,
		Alerts: alertStore, Distributor: dist, Delivery: dist, MaxFaultSeconds: cfg.Limits.MaxDuration.Seconds(), Logger: log, OnVerdict: obs.experimentEnded}, meter, log)
	if err != nil {
		stop()
		return nil, err
	}
	a := &App{rt: rt, faults: m, traffic: tm, exps: exps, grafana: grafana, stop: stop, log: log}
	if listen == "" {
		listen = cfg.Listen
	}
	a.server, err = httpserver.Listen(listen, api.NewRouter(api.Deps{
		Targets: rt, Faults: m, Traffic: tm, Alerts: alertStore, Experiments: exps, Distributor: dist, Images: rt, Token: cfg.Token, AllowedHosts: cfg.AllowedHosts, MetricsHandler: tel.MetricsHandler,
		ReportLinks:    experiments.ReportLinks{GrafanaURL: cfg.GrafanaPublicURL},
		TracerProvider: tel.TracerProvider, Logger: log,
	}), httpserver.Options{Logger: log})
	if err != nil {
		stop()
		return nil, err
	}
	log.Info("platform API ready", "project", rt.Project(), "addr", a.server.Addr(), "token_required", cfg.Token != "", "allowed_hosts", cfg.AllowedHosts)
	return a, nil
}

// reconcile runs before serving: a fault left by a platform that was
// killed is reverted (expired) or taken over (still running); traffic jobs
// are watched again or harvested. Each step is bounded, and the network
// cleanups (sidecars that may hang) go on in the background, shown in the
// fault records: the API serves whatever they do.
func reconcile(ctx context.Context, m *faults.Manager, tm *traffic.Manager, log *slog.Logger) {
	if err := m.Reconcile(ctx); err != nil {
		log.Error("reconcile faults", "err", err)
	}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tm.Reconcile(tctx); err != nil {
		log.Error("reconcile traffic jobs", "err", err)
	}
}

// newExperiments loads the presets, opens the saved records and builds
// the experiment manager; then, the faults and traffic jobs being known
// again, an experiment that was running is concluded (its faults and jobs
// found by id).
func newExperiments(cfg Config, opts experiments.Options, meter metric.Meter, log *slog.Logger) (*experiments.Manager, error) {
	presets, err := experiments.LoadPresets(cfg.ExperimentsDir, cfg.Limits.MaxDuration.Seconds())
	if err != nil {
		return nil, fmt.Errorf("experiment presets: %w", err)
	}
	opts.Presets = presets
	if !cfg.LedgerOff {
		opts.Ledger = ledgercheck.New(cfg.Ledger)
	}
	if err := openState(cfg.StateDir, &opts, meter, log); err != nil {
		return nil, err
	}
	exps := experiments.NewManager(opts)
	if err := registerLedgerGauge(meter, exps); err != nil {
		return nil, err
	}
	exps.Restore()
	return exps, nil
}

// Addr is the HTTP listen address.
func (a *App) Addr() string { return a.server.Addr() }

// Run serves until ctx ends. On a graceful stop every active fault is
// reverted, since nobody would be left to revert it on time; after a
// kill -9 the markers remain and the next start reconciles them.
//
// The stop is in order and every step is bounded: running experiments are
// aborted (each reverts its faults and stops its traffic) and waited for,
// the faults still active are reverted (60 s), the fault manager's timers,
// watchers and retries are stopped and waited for, the traffic watchers
// end (their jobs keep running in their containers: the next start
// watches them again), and the Grafana annotations in flight, among them
// the ends of the faults just reverted, are sent (each call 3 s).
func (a *App) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.server.Run(gctx) })
	err := g.Wait()
	for _, e := range a.exps.List() {
		if e.State == experiments.StateRunning {
			a.exps.Stop(e.ID)
		}
	}
	a.exps.Wait()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	defer cancel()
	if reverted, rerr := a.faults.Reset(rctx); rerr != nil {
		a.log.Error("revert faults on shutdown", "err", rerr)
	} else if len(reverted) > 0 {
		a.log.Info("reverted active faults on shutdown", "count", len(reverted))
	}
	a.faults.Close()
	a.stop()
	a.traffic.Wait()
	a.grafana.Wait()
	a.rt.Close()
	return err
}

// faultMetrics counts faults (it implements faults.Observer) and
// experiments.
type faultMetrics struct {
	total       metric.Int64Counter
	experiments metric.Int64Counter
}

func newFaultMetrics(m metric.Meter) (*faultMetrics, error) {
	c, err := m.Int64Counter("platform_faults", metric.WithDescription("Faults started, by type and target."))
	if err != nil {
		return nil, err
	}
	e, err := m.Int64Counter("platform_experiments", metric.WithDescription("Experiments ended, by verdict."))
	for _, v := range experiments.Verdicts {
		e.Add(context.Background(), 0, metric.WithAttributes(attribute.String("verdict", string(v))))
	}
	return &faultMetrics{total: c, experiments: e}, err
}

func (f *faultMetrics) experimentEnded(verdict experiments.State) {
	f.experiments.Add(context.Background(), 1, metric.WithAttributes(attribute.String("verdict", string(verdict))))
}

func (f *faultMetrics) FaultStarted(x faults.Fault) {
	f.total.Add(context.Background(), 1, metric.WithAttributes(attribute.String("type", string(x.Type)), attribute.String("target", x.Target)))
}

func (f *faultMetrics) FaultEnded(faults.Fault) {}

// registerGauges exports platform_fault_active{type,target}: 1 while such
// a fault is active, 0 after (the series stays, so a panel shows the end).
func registerGauges(m metric.Meter, fm *faults.Manager, tm *traffic.Manager) error {
	g, err := m.Int64ObservableGauge("platform_fault_active", metric.WithDescription("Active faults by type and target."))
	if err != nil {
		return err
	}
	jobs, err := m.Int64ObservableGauge("platform_traffic_jobs_active", metric.WithDescription("Traffic (k6) jobs running."))
	if err != nil {
		return err
	}
	seen := map[[2]string]bool{}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		active := fm.Active()
		for k := range active {
			seen[k] = true
		}
		for k := range seen {
			o.ObserveInt64(g, int64(active[k]), metric.WithAttributes(attribute.String("type", k[0]), attribute.String("target", k[1])))
		}
		o.ObserveInt64(jobs, int64(tm.Running()))
		return nil
	}, g, jobs)
	return err
}

// LedgerSeries is how many experiments' exact ledgers are exported (the
// newest): each is ten series, and ended experiments are kept by the
// hundred.
const LedgerSeries = 20

// registerLedgerGauge exports platform_experiment_ledger_packets{experiment,
// name, count}: the exact ledger of the experiments that ended last, one
// series per count (written, processed, duplicates, lost, ...). A value
// appears when the experiment's ledger is read and stays while it is among
// the newest LedgerSeries: over time, a step per experiment.
func registerLedgerGauge(m metric.Meter, exps *experiments.Manager) error {
	_, err := m.Int64ObservableGauge("platform_experiment_ledger_packets",
		metric.WithDescription("The exact delivery ledger of the experiments that ended last, by count: packets attempted and accepted (k6), written, processed, duplicates, lost, unexpected; unreadable ledger records."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			for _, l := range exps.ExactLedgers(LedgerSeries) {
				for count, v := range experiments.LedgerCounts(l.Result) {
					o.Observe(v, metric.WithAttributes(attribute.String("experiment", l.ID), attribute.String("name", l.Name), attribute.String("count", count)))
				}
			}
			return nil
		}))
	return err
}

// openState opens the experiments' store under dir (nothing without a
// dir) and exports platform_state_records_skipped_total, the records
// found unreadable at start-up (skipped, logged and set aside).
func openState(dir string, o *experiments.Options, meter metric.Meter, log *slog.Logger) error {
	if dir == "" {
		log.Warn("STATE_DIR is not set: experiments and their reports are kept in memory only, and a restart loses them")
		return nil
	}
	st, err := records.Open(filepath.Join(dir, "experiments"), records.Options{KeepFinal: experiments.KeepFinished, Logger: log})
	if err != nil {
		return err
	}
	o.Store = st
	_, err = meter.Int64ObservableCounter("platform_state_records_skipped", metric.WithDescription("Records of the state directory found unreadable at start-up: skipped, logged and kept aside as *.corrupt."),
		metric.WithInt64Callback(func(_ context.Context, ob metric.Int64Observer) error {
			ob.Observe(st.Skipped())
			return nil
		}))
	return err
}
