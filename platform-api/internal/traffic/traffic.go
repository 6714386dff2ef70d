// Package traffic runs k6 jobs: a container of the k6 image per job, with
// the shipped scripts copied in (no host bind mounts: the platform itself
// runs in a container), on the project's network, writing its metrics to
// Prometheus by remote write tagged with the job id. At the end the JSON
// summary is copied back out of the container.
//
// Job state lives in the job container's dsplab.job.* labels: after a
// platform restart, running jobs are watched again and finished ones are
// harvested.
package traffic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/apierr"
	"github.com/dsplab/dsplab/platform-api/internal/docker"
	"github.com/dsplab/dsplab/platform-api/internal/ids"
)

// Scripts and profiles the platform offers (k6/).
var (
	Scripts  = []string{"ingest-packets", "loki-push", "service-chain"}
	Profiles = []string{"constant", "ramp", "spike", "burst", "stochastic"}
)

// endpoint is each script's request path, stripped from a targetUrl that
// names it (the seed's clients send the full URL).
// ToDistributor says whether a script's requests go to the distributor:
// log packets the delivery ledger follows into Kafka. service-chain's go to
// service-a. An empty script is the default, ingest-packets.
func ToDistributor(script string) bool { return script != "service-chain" }

var endpoint = map[string]string{"ingest-packets": "/ingest", "loki-push": "/loki/api/v1/push", "service-chain": "/api/message-a"}

// reserved environment names are set by the platform, not by params.
var reserved = []string{"TARGET_URL", "RATE", "RPS", "DURATION", "PROFILE", "SUMMARY_PATH", "JOB_ID", "DSPLAB_JOB_ID"}

// paramName is the form of the k6 variables a request may set:
// UPPER_SNAKE_CASE, at most 64 characters.
var paramName = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)

// Config of the traffic runner.
type Config struct {
	Image          string // the k6 image (grafana/k6:1.8.1)
	ScriptsDir     string // directory holding the k6 scripts and lib/
	Network        string // "" = the project's network
	RemoteWriteURL string // Prometheus remote write; "" = off
	MaxRPS         float64
	MaxDuration    time.Duration
	MaxJobs        int
}

// Spec is a request for a job.
type Spec struct {
	TargetURL string
	RPS       float64
	Duration  time.Duration
	Script    string
	Profile   string
	Params    map[string]string
}

// States of a job.
const (
	StateRunning  = "running"
	StateFinished = "finished" // k6 exited 0
	StateFailed   = "failed"   // k6 exited non-zero (thresholds, errors)
	StateStopped  = "stopped"  // stopped early
)

// Job is one k6 run.
type Job struct {
	ID          string            `json:"id"`
	Script      string            `json:"script"`
	Profile     string            `json:"profile"`
	TargetURL   string            `json:"targetUrl"`
	RPS         float64           `json:"rps"`
	Duration    time.Duration     `json:"-"`
	Params      map[string]string `json:"params,omitempty"`
	State       string            `json:"state"`
	ContainerID string            `json:"containerId"`
	StartedAt   time.Time         `json:"startedAt"`
	EndedAt     *time.Time        `json:"endedAt,omitempty"`
	ExitCode    *int64            `json:"exitCode,omitempty"`
	Error       string            `json:"error,omitempty"`
	Command     string            `json:"command"`
	Summary     json.RawMessage   `json:"summary,omitempty"`
	stopping    bool
}

// Progress is the elapsed share of the planned duration (1 when ended).
func (j Job) Progress(now time.Time) float64 {
	if j.State != StateRunning {
		return 1
	}
	return min(0.99, max(0, now.Sub(j.StartedAt).Seconds()/j.Duration.Seconds()))
}

// Runtime is what the runner needs of Docker.
type Runtime interface {
	ProjectNetwork(ctx context.Context, name string) (string, error)
	CreateJob(ctx context.Context, j docker.JobSpec) (string, error)
	CopyDir(ctx context.Context, id, src, dest string) error
	Start(ctx context.Context, id string) error
	Stop(ctx context.Context, id string, timeout time.Duration) error
	Wait(ctx context.Context, id string) (int64, error)
	ReadFile(ctx context.Context, id, path string, limit int64) ([]byte, error)
	Logs(ctx context.Context, id string, lines int) (string, error)
	Jobs(ctx context.Context, kind string) ([]docker.Container, error)
	Remove(ctx context.Context, id string) error
	EnsureImages(ctx context.Context, refs ...string) error
}

// Observer hears of job windows (Grafana annotations). Calls must not
// block for long.
type Observer interface {
	JobStarted(j Job)
	JobEnded(j Job)
}

// Manager is safe for concurrent use. A job being started holds a slot
// (starting) from the cap check, under the lock, until it runs or fails:
// concurrent starts never exceed MaxJobs.
type Manager struct {
	obs      []Observer
	rt       Runtime
	cfg      Config
	log      *slog.Logger
	ctx      context.Context // the platform's root context: jobs outlive requests
	mu       sync.Mutex
	jobs     map[string]*Job
	starting int
	wg       sync.WaitGroup
}

const (
	jobKind     = "traffic"
	summaryPath = "/tmp/k6-summary.json"
	scriptsPath = "/scripts"
)

// Label keys of a traffic job container.
const (
	labelScript  = "dsplab.job.script"
	labelProfile = "dsplab.job.profile"
	labelTarget  = "dsplab.job.target_url"
	labelRPS     = "dsplab.job.rps"
	labelDur     = "dsplab.job.duration_seconds"
	labelStarted = "dsplab.job.started_at"
	labelParams  = "dsplab.job.params"
)

// New returns a runner whose jobs live under ctx.
func New(ctx context.Context, rt Runtime, cfg Config, log *slog.Logger, obs ...Observer) *Manager {
	return &Manager{rt: rt, cfg: cfg, log: log, ctx: ctx, jobs: map[string]*Job{}, obs: obs}
}

// validate fills defaults and returns every problem of s.
func (m *Manager) validate(s *Spec) error {
	var p apierr.Problems
	if s.Script == "" {
		s.Script = "ingest-packets"
	}
	s.Script = strings.TrimSuffix(s.Script, ".js")
	if s.Profile == "" {
		s.Profile = "constant"
	}
	validateTarget(s, &p)
	p.Check(s.RPS > 0 && s.RPS <= m.cfg.MaxRPS, "rps", "must be above 0 and at most %g", m.cfg.MaxRPS)
	p.Duration("durationSeconds", s.Duration, m.cfg.MaxDuration)
	p.Check(slices.Contains(Scripts, s.Script), "script", "%q is not one of %s", s.Script, strings.Join(Scripts, ", "))
	p.Check(slices.Contains(Profiles, s.Profile), "profile", "%q is not one of %s", s.Profile, strings.Join(Profiles, ", "))
	for _, k := range slices.Sorted(maps.Keys(s.Params)) {
		switch {
		case !paramName.MatchString(k):
			p.Add("params."+k, "must be an UPPER_SNAKE_CASE k6 variable of the script (see k6/*.js)")
		case slices.Contains(reserved, k):
			p.Add("params."+k, "is set by the platform from the request's own fields")
		case len(s.Params[k]) > 1024:
			p.Add("params."+k, "is longer than 1024 characters")
		}
	}
	return p.Err("traffic job")
}

// validateTarget checks the target URL and normalises it: no trailing
// slash, and no endpoint path the script adds itself.
func validateTarget(s *Spec, p *apierr.Problems) {
	u, err := url.Parse(s.TargetURL)
	switch {
	case s.TargetURL == "":
		p.Add("targetUrl", "is required, e.g. http://distributor:8080")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		p.Add("targetUrl", "%q must be an absolute http(s) URL", s.TargetURL)
	default:
		if path := endpoint[s.Script]; path != "" && strings.TrimSuffix(u.Path, "/") == path {
			u.Path = "" // the seed's clients name the endpoint; the scripts add it
		}
		s.TargetURL = strings.TrimSuffix(u.String(), "/")
	}
}

// Start validates s and starts the k6 job; it returns once the container
// runs.
func (m *Manager) Start(ctx context.Context, s Spec) (Job, error) {
	if err := m.validate(&s); err != nil {
		return Job{}, err
	}
	if err := m.reserve(); err != nil {
		return Job{}, err
	}
	j, err := m.create(ctx, s)
	m.mu.Lock()
	m.starting--
	if err == nil {
		m.jobs[j.ID] = j
	}
	out := *j
	m.mu.Unlock()
	if err != nil {
		return Job{}, err
	}
	m.log.InfoContext(ctx, "traffic job started", "id", j.ID, "script", j.Script, "profile", j.Profile, "rps", j.RPS, "duration", j.Duration, "target", j.TargetURL)
	for _, o := range m.obs {
		o.JobStarted(out)
	}
	m.watch(j)
	return out, nil
}

// reserve takes a slot under the cap for a job about to be created.
func (m *Manager) reserve() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	running := m.starting
	for _, j := range m.jobs {
		if j.State == StateRunning {
			running++
		}
	}
	if running >= m.cfg.MaxJobs {
		return fmt.Errorf("%w: %d traffic jobs running, the cap is %d", apierr.ErrTooMany, running, m.cfg.MaxJobs)
	}
	m.starting++
	return nil
}

// create makes and starts the job's container; nothing is left behind
// when it fails.
func (m *Manager) create(ctx context.Context, s Spec) (*Job, error) {
	// The k6 image first: a pull may take minutes, and the job's clock
	// starts after it.
	j := &Job{}
	if err := m.rt.EnsureImages(ctx, m.cfg.Image); err != nil {
		return j, err
	}
	net, err := m.rt.ProjectNetwork(ctx, m.cfg.Network)
	if err != nil {
		return j, err
	}
	*j = Job{ID: ids.New(ids.Traffic), Script: s.Script, Profile: s.Profile, TargetURL: s.TargetURL, RPS: s.RPS, Duration: s.Duration,
		Params: s.Params, State: StateRunning, StartedAt: time.Now().UTC()}
	spec := m.jobSpec(j, net)
	j.Command = "k6 " + strings.Join(spec.Cmd, " ")
	id, err := m.rt.CreateJob(ctx, spec)
	if err != nil {
		return j, err
	}
	j.ContainerID = id
	if err := m.rt.CopyDir(ctx, id, m.cfg.ScriptsDir, scriptsPath); err == nil {
		err = m.rt.Start(ctx, id)
	}
	if err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := m.rt.Remove(rctx, id); rerr != nil {
			m.log.Error("remove the container of a k6 job that did not start", "id", j.ID, "err", rerr)
		}
		return j, fmt.Errorf("start k6 job: %w", err)
	}
	return j, nil
}

// jobSpec is the k6 container of job j on network net: its variables
// (the request's and the platform's), remote write when configured, and
// the labels a restarted platform reads the job back from.
func (m *Manager) jobSpec(j *Job, net string) docker.JobSpec {
	env := []string{"K6_NO_USAGE_REPORT=true", "HOME=/tmp", "DSPLAB_JOB_ID=" + j.ID}
	vars := map[string]string{"TARGET_URL": j.TargetURL, "RATE": strconv.FormatFloat(j.RPS, 'f', -1, 64),
		"DURATION": strconv.Itoa(int(j.Duration.Seconds())) + "s", "PROFILE": j.Profile, "JOB_ID": j.ID, "SUMMARY_PATH": summaryPath,
		// The packet ids' prefix: the delivery ledger finds the job's packets by it.
		"DSPLAB_JOB_ID": j.ID}
	for k, v := range j.Params {
		vars[k] = v
	}
	cmd := []string{"run", "--quiet", "--tag", "job_id=" + j.ID}
	if m.cfg.RemoteWriteURL != "" {
		cmd = append(cmd, "--out", "experimental-prometheus-rw")
		env = append(env, "K6_PROMETHEUS_RW_SERVER_URL="+m.cfg.RemoteWriteURL, "K6_PROMETHEUS_RW_TREND_STATS=p(50),p(95),p(99),avg,max",
			"K6_PROMETHEUS_RW_PUSH_INTERVAL=5s")
	}
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		cmd = append(cmd, "-e", k+"="+vars[k])
	}
	cmd = append(cmd, scriptsPath+"/"+j.Script+".js")
	params, _ := json.Marshal(j.Params)
	return docker.JobSpec{
		Name: "dsplab-traffic-" + j.ID, Image: m.cfg.Image, Cmd: cmd, Env: env, Network: net,
		// k6 on SIGTERM stops its scenarios and still writes the summary.
		StopTimeout: 30,
		Labels: map[string]string{
			docker.LabelJobID: j.ID, docker.LabelJobKind: jobKind, labelScript: j.Script, labelProfile: j.Profile,
			labelTarget: j.TargetURL, labelRPS: strconv.FormatFloat(j.RPS, 'f', -1, 64),
			labelDur: strconv.Itoa(int(j.Duration.Seconds())), labelStarted: j.StartedAt.Format(time.RFC3339Nano), labelParams: string(params),
		},
	}
}

// watch waits for the job's container to exit, then harvests it.
func (m *Manager) watch(j *Job) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		code, err := m.rt.Wait(m.ctx, j.ContainerID)
		if m.ctx.Err() != nil {
			return // the platform is stopping: the next start harvests it
		}
		m.harvest(j, code, err)
	}()
}

// harvest reads the summary of an exited job, records the outcome and
// removes the container.
func (m *Manager) harvest(j *Job, code int64, waitErr error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), 30*time.Second)
	defer cancel()
	summary, rerr := m.rt.ReadFile(ctx, j.ContainerID, summaryPath, 64<<20)
	var compact json.RawMessage
	if rerr == nil {
		compact, rerr = compactSummary(summary)
	}
	var tail string
	if code != 0 || rerr != nil {
		tail, _ = m.rt.Logs(ctx, j.ContainerID, 20)
	}
	m.rt.Remove(ctx, j.ContainerID)
	now := time.Now().UTC()
	m.mu.Lock()
	defer func() {
		out := *j
		m.mu.Unlock()
		for _, o := range m.obs {
			o.JobEnded(out)
		}
	}()
	j.EndedAt, j.ExitCode, j.Summary = &now, &code, compact
	switch {
	case j.stopping:
		j.State = StateStopped
	case code == 0 && waitErr == nil:
		j.State = StateFinished
	default:
		j.State = StateFailed
	}
	var errs []string
	if waitErr != nil {
		errs = append(errs, waitErr.Error())
	}
	if rerr != nil {
		errs = append(errs, "summary: "+rerr.Error())
	}
	if code != 0 && !j.stopping {
		errs = append(errs, fmt.Sprintf("k6 exited %d (99: thresholds crossed)", code))
	}
	if len(errs) > 0 && tail != "" {
		errs = append(errs, "k6 output: "+strings.TrimSpace(tail))
	}
	j.Error = strings.Join(errs, "; ")
	m.log.Info("traffic job ended", "id", j.ID, "state", j.State, "exit", code)
}

// compactSummary keeps what the API shows of a k6 summary: everything but
// k6's raw metrics.
func compactSummary(b []byte) (json.RawMessage, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	delete(doc, "metrics")
	delete(doc, "state")
	return json.Marshal(doc)
}

// Stop ends a running job early; its summary is still collected.
func (m *Manager) Stop(ctx context.Context, id string) (Job, error) {
	m.mu.Lock()
	j, ok := m.jobs[id]
	if ok && j.State == StateRunning {
		j.stopping = true
	}
	m.mu.Unlock()
	if !ok {
		return Job{}, fmt.Errorf("%w: traffic job %s", apierr.ErrNotFound, id)
	}
	if err := m.rt.Stop(ctx, j.ContainerID, 30*time.Second); err != nil && !errors.Is(err, docker.ErrNotFound) {
		return Job{}, err
	}
	return m.Get(id)
}

// Get returns one job.
func (m *Manager) Get(id string) (Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return Job{}, fmt.Errorf("%w: traffic job %s", apierr.ErrNotFound, id)
	}
	return *j, nil
}

// List returns every job, newest first.
func (m *Manager) List() []Job {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Job, 0, len(m.jobs))
	for _, j := range m.jobs {
		out = append(out, *j)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].StartedAt.After(out[b].StartedAt) })
	return out
}

// Running counts running jobs (for metrics).
func (m *Manager) Running() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, j := range m.jobs {
		if j.State == StateRunning {
			n++
		}
	}
	return n
}

// Reconcile runs at start-up: job containers left by an earlier run are
// watched again if running, harvested if they exited.
func (m *Manager) Reconcile(ctx context.Context) error {
	cs, err := m.rt.Jobs(ctx, jobKind)
	if err != nil {
		return err
	}
	for _, c := range cs {
		l := c.Labels
		rps, _ := strconv.ParseFloat(l[labelRPS], 64)
		secs, _ := strconv.Atoi(l[labelDur])
		started, _ := time.Parse(time.RFC3339Nano, l[labelStarted])
		j := &Job{ID: l[docker.LabelJobID], Script: l[labelScript], Profile: l[labelProfile], TargetURL: l[labelTarget], RPS: rps,
			Duration: time.Duration(secs) * time.Second, State: StateRunning, ContainerID: c.ID, StartedAt: started}
		json.Unmarshal([]byte(l[labelParams]), &j.Params)
		m.mu.Lock()
		if _, known := m.jobs[j.ID]; known || j.ID == "" {
			m.mu.Unlock()
			continue
		}
		m.jobs[j.ID] = j
		m.mu.Unlock()
		m.log.Info("traffic job found after restart", "id", j.ID, "state", c.State)
		m.watch(j) // an exited container returns from Wait at once
	}
	return nil
}

// Wait waits for the watchers (tests, shutdown).
func (m *Manager) Wait() { m.wg.Wait() }
