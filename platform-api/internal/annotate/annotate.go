// Package annotate marks fault windows and traffic jobs on Grafana's
// dashboards through its annotations API. It is best effort: Grafana being
// down never fails or delays a fault (calls are asynchronous and bounded).
package annotate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/faults"
	"github.com/dsplab/dsplab/platform-api/internal/traffic"
)

// Grafana posts annotations. A zero URL disables it.
type Grafana struct {
	URL      string // http://grafana:3000
	User     string // basic auth (admin)
	Password string
	Token    string // a service account token instead of basic auth
	client   *http.Client
	log      *slog.Logger
	mu       sync.Mutex
	regions  map[string]*region // fault/job id → its annotation
	wg       sync.WaitGroup
}

// region is an annotation being posted: done is closed when Grafana has
// answered the POST, with the annotation's id (0 if it failed).
type region struct {
	done chan struct{}
	id   int64
}

// Options say which Grafana to annotate and how to sign in. A zero URL
// disables annotations.
type Options struct {
	URL      string // http://grafana:3000
	User     string // basic auth (admin)
	Password string
	Token    string // a service account token instead of basic auth
}

// New returns an annotator for the Grafana that o names.
func New(o Options, log *slog.Logger) *Grafana {
	return &Grafana{URL: strings.TrimSuffix(o.URL, "/"), User: o.User, Password: o.Password, Token: o.Token,
		client: &http.Client{Timeout: callTimeout}, log: log, regions: map[string]*region{}}
}

// callTimeout bounds each call to Grafana: a region's end waits at most
// two of them (its start's POST, then the PATCH), so Wait is bounded.
const callTimeout = 3 * time.Second

type annotation struct {
	Time    int64    `json:"time"`
	TimeEnd int64    `json:"timeEnd,omitempty"`
	Tags    []string `json:"tags"`
	Text    string   `json:"text"`
}

// FaultStarted implements faults.Observer: a region annotation from the
// start to the planned end, tagged dsplab, fault, the type and the target.
func (g *Grafana) FaultStarted(f faults.Fault) {
	end := f.StartedAt
	if f.EndsAt != nil {
		end = *f.EndsAt
	}
	g.start(f.ID, annotation{Time: f.StartedAt.UnixMilli(), TimeEnd: end.UnixMilli(),
		Tags: []string{"dsplab", "fault", string(f.Type), f.Target}, Text: fmt.Sprintf("fault %s on %s (%s): %s", f.Type, f.Target, f.ID, f.Command)})
}

// FaultEnded implements faults.Observer: the region ends when the fault
// really ended (stopped early, reverted, failed).
func (g *Grafana) FaultEnded(f faults.Fault) {
	if f.EndedAt != nil {
		g.end(f.ID, *f.EndedAt, fmt.Sprintf("fault %s on %s (%s) %s: %s", f.Type, f.Target, f.ID, f.State, f.EndReason))
	}
}

// JobStarted marks a traffic job.
func (g *Grafana) JobStarted(j traffic.Job) {
	g.start(j.ID, annotation{Time: j.StartedAt.UnixMilli(), TimeEnd: j.StartedAt.Add(j.Duration).UnixMilli(),
		Tags: []string{"dsplab", "traffic", j.Script, j.Profile}, Text: fmt.Sprintf("traffic %s %s %g/s → %s (%s)", j.Script, j.Profile, j.RPS, j.TargetURL, j.ID)})
}

// JobEnded ends a traffic job's region.
func (g *Grafana) JobEnded(j traffic.Job) {
	if j.EndedAt != nil {
		g.end(j.ID, *j.EndedAt, fmt.Sprintf("traffic %s %s (%s) %s", j.Script, j.Profile, j.ID, j.State))
	}
}

func (g *Grafana) start(key string, a annotation) {
	if g.URL == "" {
		return
	}
	r := &region{done: make(chan struct{})}
	g.mu.Lock()
	g.regions[key] = r
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(r.done)
		var res struct {
			ID int64 `json:"id"`
		}
		if err := g.do(http.MethodPost, "/api/annotations", a, &res); err != nil {
			g.log.Warn("grafana annotation (best effort)", "err", err)
			return
		}
		r.id = res.ID
	}()
}

// end closes the region of key once its start has been answered (the POST
// may still be in flight: the end waits for it, bounded by callTimeout,
// instead of polling). A region whose start failed, or was never seen
// (a fault taken over after a restart), has nothing to end.
func (g *Grafana) end(key string, at time.Time, text string) {
	if g.URL == "" {
		return
	}
	g.mu.Lock()
	r := g.regions[key]
	delete(g.regions, key)
	g.mu.Unlock()
	if r == nil {
		return
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		<-r.done
		if r.id == 0 {
			return
		}
		if err := g.do(http.MethodPatch, fmt.Sprintf("/api/annotations/%d", r.id), map[string]any{"timeEnd": at.UnixMilli(), "text": text}, nil); err != nil {
			g.log.Warn("grafana annotation end (best effort)", "err", err)
		}
	}()
}

func (g *Grafana) do(method, path string, body, out any) error {
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, g.URL+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	switch {
	case g.Token != "":
		req.Header.Set("Authorization", "Bearer "+g.Token)
	case g.User != "":
		req.SetBasicAuth(g.User, g.Password)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// Wait waits for the calls in flight (tests, shutdown): at most two calls'
// timeouts, since each call is bounded and an end waits only for its own
// start.
func (g *Grafana) Wait() { g.wg.Wait() }
