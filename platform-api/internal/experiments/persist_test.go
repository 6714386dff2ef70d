package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/platform-api/internal/alerts"
	"github.com/dsplab/dsplab/platform-api/internal/faults"
	"github.com/dsplab/dsplab/platform-api/internal/records"
	"github.com/dsplab/dsplab/platform-api/internal/traffic"
)

// These tests use the real store (records, on a temporary directory) and
// the in-memory world of experiments_test.go for faults, traffic,
// Prometheus and the distributor. A "kill -9" is a copy of the state
// directory as it is at that instant, and a copy of the world: a new
// manager restored from those is the restarted platform. The real kill
// -9 of the real binary, with the real distributor and Docker engine, is
// app's TestAKilledPlatformConcludesItsRunningExperimentAndUndoesIt.

// List makes the world's faults listable, as the fault manager's are.
func (w *world) List() []faults.Fault {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []faults.Fault
	for _, f := range w.faults {
		out = append(out, *f)
	}
	return out
}

// List makes the world's traffic jobs listable.
func (t trafficWorld) List() []traffic.Job {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []traffic.Job
	for _, j := range t.jobs {
		out = append(out, *j)
	}
	return out
}

// clone is the world as a restarted platform finds it: the same faults
// and jobs (the engine kept them), nothing stopped by it yet.
func (w *world) clone() *world {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := &world{start: w.start, values: w.values, faults: map[string]*faults.Fault{}, jobs: map[string]*traffic.Job{}}
	for id, f := range w.faults {
		cp := *f
		c.faults[id] = &cp
	}
	for id, j := range w.jobs {
		cp := *j
		c.jobs[id] = &cp
	}
	return c
}

// copyDir copies a state directory as a kill -9 leaves it.
func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	es, err := os.ReadDir(from)
	require.NoError(t, err)
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(to, e.Name()), b, 0o600))
	}
	return to
}

func openStore(t *testing.T, dir string) *records.Store {
	t.Helper()
	s, err := records.Open(dir, records.Options{KeepFinal: KeepFinished})
	require.NoError(t, err)
	return s
}

func restarted(w *world, dist DistributorConfig, st Store) *Manager {
	return NewManager(Options{Querier: w, Faults: w, Traffic: trafficWorld{w}, Alerts: alerts.New(100), Distributor: dist, MaxFaultSeconds: 600,
		Logger: slog.New(slog.DiscardHandler), Store: st})
}

func kinds(e Experiment) []string {
	var out []string
	for _, ev := range e.Timeline {
		out = append(out, ev.Kind)
	}
	return out
}

func TestAnEndedExperimentIsListedWithTheSameReportAfterARestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		w, _, as := newWorld(analyzerCrash)
		m := NewManager(Options{Querier: w, Faults: w, Traffic: trafficWorld{w}, Alerts: as, MaxFaultSeconds: 600, Logger: slog.New(slog.DiscardHandler), Store: openStore(t, dir)})
		go func() {
			time.Sleep(14 * time.Second)
			as.Add(alerts.Notification{Alerts: []alerts.Alert{{Status: "firing", Labels: map[string]string{"alertname": "AnalyzerDown"}}}}, time.Now())
		}()
		e, err := m.Start(crashDefinition())
		require.NoError(t, err)
		m.Wait()
		before, _ := m.Get(e.ID)
		require.Equal(t, Passed, before.State)

		m2 := restarted(w.clone(), nil, openStore(t, dir))
		m2.Restore()
		m2.Wait()
		after, err := m2.Get(e.ID)
		require.NoError(t, err)
		require.Len(t, m2.List(), 1)
		require.Equal(t, Markdown(before), Markdown(after))
		stopped, err := m2.Stop(e.ID)
		require.NoError(t, err, "stopping an ended experiment answers it, before a restart and after")
		require.Equal(t, Passed, stopped.State)
		b1, _ := json.Marshal(before)
		b2, _ := json.Marshal(after)
		require.JSONEq(t, string(b1), string(b2), "samples, timeline, alerts, ledger and verdict all survive")
		// The charts were read at the end and kept: the HTML report is the
		// same after the restart, Prometheus or not.
		require.NotNil(t, before.Charts)
		require.Equal(t, []FaultWindow{{ID: "f-analyzer-2", Type: "kill", Target: "analyzer-2", Command: "docker kill", Start: before.StartedAt.Add(10 * time.Second), End: before.StartedAt.Add(25 * time.Second)}}, before.Faults)
		var healthy Chart
		for _, c := range before.Charts.Charts {
			if c.ID == "healthy" {
				healthy = c
			}
		}
		require.Len(t, healthy.Series, 1)
		require.Equal(t, string(HTML(before, ReportLinks{})), string(HTML(after, ReportLinks{})))
	})
}

func TestAnExperimentRunningWhenThePlatformDiedIsConcludedInterruptedAndUndone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		const before = `{"routing":{"strategy":"tenant-hash"}}`
		w, _, as := newWorld(analyzerCrash)
		dist := &distWorld{overlay: before, start: time.Now()}
		m := NewManager(Options{Querier: w, Faults: w, Traffic: trafficWorld{w}, Alerts: as, Distributor: dist, MaxFaultSeconds: 600,
			Logger: slog.New(slog.DiscardHandler), Store: openStore(t, dir)})
		d := crashDefinition()
		d.Faults[0].DurationSeconds = 30
		d.ConfigChanges = []ConfigChange{{AtSeconds: 5, Overlay: map[string]any{"limits": map[string]any{"global": map[string]any{"rate": 5, "burst": 5}}}}}
		go func() {
			time.Sleep(14 * time.Second)
			as.Add(alerts.Notification{Alerts: []alerts.Alert{{Status: "firing", Labels: map[string]string{"alertname": "AnalyzerDown"}}}}, time.Now())
		}()
		e, err := m.Start(d)
		require.NoError(t, err)
		time.Sleep(20 * time.Second)

		// kill -9 at 20 s: the disk and the world as they are now.
		killedDir, w2 := copyDir(t, dir), w.clone()
		dist2 := &distWorld{overlay: dist.overlay, start: time.Now()}
		require.Equal(t, `{"limits":{"global":{"burst":5,"rate":5}}}`, dist2.overlay, "the experiment's overlay is in force")
		require.Equal(t, faults.StateActive, w2.faults["f-analyzer-2"].State)
		require.Equal(t, traffic.StateRunning, w2.jobs["t-1"].State)

		m2 := restarted(w2, dist2, openStore(t, killedDir))
		m2.Restore()
		got, err := m2.Get(e.ID)
		require.NoError(t, err)
		require.Equal(t, StateRunning, got.State, "listed at once, while it is being concluded")
		m2.Wait()
		got, _ = m2.Get(e.ID)
		require.Equal(t, Interrupted, got.State, got.Reason)
		require.Contains(t, got.Reason, "the platform stopped while it ran; at the restart: fault f-analyzer-2 reverted, the distributor's overlay from before restored, traffic job t-1 stopped")
		require.Equal(t, []string{"f-analyzer-2"}, w2.stopped)
		require.Equal(t, traffic.StateStopped, w2.jobs["t-1"].State)
		require.Equal(t, []string{before}, dist2.history, "the overlay from before the experiment, not a cleared one")
		require.Equal(t, []string{"started", "traffic-started", "config-changed", "fault-started", "detected",
			"interrupted", "fault-stopped", "config-restored", "traffic-stopped", "verdict"}, kinds(got))
		require.Len(t, got.Alerts, 1, "the alerts received before the kill were saved with it")
		require.NotNil(t, got.TimeToDetectSeconds)
		require.NotNil(t, got.EndedAt)
		for _, c := range got.Checks {
			if c.Phase == "before" {
				require.True(t, c.Passed, "judged before the kill")
			} else {
				require.Equal(t, notJudged, c.Error, c.Name)
			}
			if c.Phase == "during" {
				require.NotEmpty(t, c.Samples, "the samples taken before the kill are kept")
			}
		}
		md := Markdown(got)
		require.Contains(t, md, "# Experiment analyzer-crash — INTERRUPTED")
		require.Contains(t, md, "— "+notJudged)

		// Concluded once: a further restart lists it and changes nothing.
		w3, dist3 := w2.clone(), &distWorld{overlay: before}
		m3 := restarted(w3, dist3, openStore(t, killedDir))
		m3.Restore()
		m3.Wait()
		again, _ := m3.Get(e.ID)
		require.Equal(t, Interrupted, again.State)
		require.Empty(t, dist3.history)
		require.Empty(t, w3.stopped)
		m.Stop(e.ID) // the old manager, on its own world
		m.Wait()
	})
}

// snapshotting takes the state directory's picture (a kill -9) right
// after the world made a fault or a job, before the runner learnt its id.
type snapshotting struct {
	*world
	dir  string
	t    *testing.T
	shot func(dir string, w *world)
}

func (s snapshotting) Start(ctx context.Context, sp faults.Spec) (faults.Fault, error) {
	f, err := s.world.Start(ctx, sp)
	s.shot(copyDir(s.t, s.dir), s.world.clone())
	return f, err
}

type snapshottingTraffic struct{ snapshotting }

func (s snapshottingTraffic) Start(ctx context.Context, sp traffic.Spec) (traffic.Job, error) {
	j, err := trafficWorld{s.world}.Start(ctx, sp)
	s.mu.Lock()
	s.jobs[j.ID].TargetURL = sp.TargetURL // the fake leaves it out; the real manager has it
	s.mu.Unlock()
	s.shot(copyDir(s.t, s.dir), s.world.clone())
	return j, err
}
func (s snapshottingTraffic) Stop(ctx context.Context, id string) (traffic.Job, error) {
	return trafficWorld{s.world}.Stop(ctx, id)
}
func (s snapshottingTraffic) Get(id string) (traffic.Job, error) {
	return trafficWorld{s.world}.Get(id)
}

func TestAFaultOrJobMadeJustBeforeTheKillIsFoundAndUndoneThoughItsIDWasNotSaved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		w, _, as := newWorld(analyzerCrash)
		// The restart happens at once, on the copies: the fakes judge a
		// fault or job over by the clock.
		type outcome struct {
			e Experiment
			w *world
		}
		restart := func(dir string, w *world) outcome {
			m2 := restarted(w, nil, openStore(t, dir))
			m2.Restore()
			m2.Wait()
			es := m2.List()
			require.Len(t, es, 1)
			return outcome{es[0], w}
		}
		var atFault, atTraffic outcome
		snap := snapshotting{world: w, dir: dir, t: t}
		fs := snap
		fs.shot = func(d string, w *world) { atFault = restart(d, w) }
		ts := snapshottingTraffic{snap}
		ts.shot = func(d string, w *world) { atTraffic = restart(d, w) }
		m := NewManager(Options{Querier: w, Faults: fs, Traffic: ts, Alerts: as, MaxFaultSeconds: 600, Logger: slog.New(slog.DiscardHandler), Store: openStore(t, dir)})
		_, err := m.Start(crashDefinition())
		require.NoError(t, err)
		m.Wait()

		for _, c := range []struct {
			name string
			o    outcome
			want []string
		}{
			{"killed as the traffic job was made", atTraffic, []string{"traffic job t-1 stopped"}},
			{"killed as the fault was made", atFault, []string{"fault f-analyzer-2 reverted", "traffic job t-1 stopped"}},
		} {
			got := c.o.e
			require.Equal(t, Interrupted, got.State, c.name)
			for _, want := range c.want {
				require.Contains(t, got.Reason, want, c.name)
			}
			require.Equal(t, "t-1", got.TrafficJobID, c.name)
			require.Equal(t, traffic.StateStopped, c.o.w.jobs["t-1"].State, c.name)
			if c.o.w.faults["f-analyzer-2"] != nil {
				require.Equal(t, []string{"f-analyzer-2"}, c.o.w.stopped, c.name)
				require.Equal(t, []string{"f-analyzer-2"}, got.FaultIDs, c.name)
			}
		}
	})
}

// failingStore refuses every write, as a full or read-only disk does.
type failingStore struct{}

func (failingStore) Put(string, bool, any) error              { return errors.New("no space left on device") }
func (failingStore) Each(func(key string, data []byte) error) {}

func TestTheOverlayToPutBackIsOnDiskBeforeTheFirstConfigChangeOrNoChangeIsMade(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const before = `{"routing":{"strategy":"tenant-hash"}}`
		dir := t.TempDir()
		w, _, as := newWorld(func(q string, at float64) (float64, bool) { return analyzerCrash(q, 0) })
		dist := &checkingDist{distWorld: &distWorld{overlay: before}, check: func() {
			// What a kill -9 at this instant leaves: the overlay to put
			// back is already saved.
			st := openStore(t, copyDir(t, dir))
			var rec record
			st.Each(func(_ string, b []byte) error { return json.Unmarshal(b, &rec) })
			require.True(t, rec.Undo.OverlaySaved)
			require.Equal(t, before, rec.Undo.Overlay)
		}}
		d := Definition{Name: "rate-limit", ConfigChanges: []ConfigChange{{AtSeconds: 1, Overlay: map[string]any{"limits": map[string]any{"global": map[string]any{"rate": 5}}}}}}
		require.NoError(t, d.Validate(600))
		for _, st := range []Store{openStore(t, dir), failingStore{}} {
			dist.history = nil
			m := NewManager(Options{Querier: w, Faults: w, Traffic: trafficWorld{w}, Alerts: as, Distributor: dist, MaxFaultSeconds: 600, Logger: slog.New(slog.DiscardHandler), Store: st})
			e, err := m.Start(d)
			require.NoError(t, err)
			m.Wait()
			e, _ = m.Get(e.ID)
			if _, failing := st.(failingStore); failing {
				require.Equal(t, Failed, e.State)
				require.Contains(t, e.Reason, "config change not made: the overlay to put back could not be saved: no space left on device")
				require.Empty(t, dist.history, "the distributor was never changed")
				continue
			}
			require.Equal(t, Passed, e.State, e.Reason)
			require.Equal(t, 2, dist.checked, "checked before the change and before the restore")
		}
	})
}

type checkingDist struct {
	*distWorld
	check   func()
	checked int
}

func (c *checkingDist) SetOverlay(ctx context.Context, b []byte) error {
	c.check()
	c.checked++
	return c.distWorld.SetOverlay(ctx, b)
}

// countingStore counts the writes of a store.
type countingStore struct {
	Store
	puts int
}

func (c *countingStore) Put(key string, final bool, v any) error {
	c.puts++
	return c.Store.Put(key, final, v)
}

func TestARunningExperimentIsSavedAtMostAboutOnceASecondAndCompletelyAtItsEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		w, _, as := newWorld(analyzerCrash)
		st := &countingStore{Store: openStore(t, dir)}
		m := NewManager(Options{Querier: w, Faults: w, Traffic: trafficWorld{w}, Alerts: as, MaxFaultSeconds: 600, Logger: slog.New(slog.DiscardHandler), Store: st})
		d := crashDefinition()
		d.IntervalSeconds = 0.5
		for range 5 { // 6 during checks, each sampled every 0.5 s for 15 s
			d.Checks = append(d.Checks, d.Checks[1])
		}
		start := time.Now()
		e, err := m.Start(d)
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		samples := 0
		for _, c := range e.Checks {
			samples += len(c.Samples)
		}
		require.Greater(t, samples, 150)
		elapsed := time.Since(start).Seconds()
		require.LessOrEqual(t, float64(st.puts), elapsed+10, "%d saves in %.0f s for %d samples", st.puts, elapsed, samples)

		m2 := restarted(w.clone(), nil, openStore(t, dir))
		m2.Restore()
		got, _ := m2.Get(e.ID)
		require.Equal(t, Markdown(e), Markdown(got), "the last save has everything")
	})
}

// downDist is a distributor that answers only after its first calls fail.
type downDist struct {
	*distWorld
	failures int
}

func (d *downDist) SetOverlay(ctx context.Context, b []byte) error {
	if d.failures > 0 {
		d.failures--
		return errors.New("distributor at http://distributor:8080: connection refused")
	}
	return d.distWorld.SetOverlay(ctx, b)
}

func TestTheOverlayIsPutBackOnceTheDistributorAnswersAfterARestartAndNotWhenItNeverDoes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		const before = `{"routing":{"strategy":"tenant-hash"}}`
		w, _, as := newWorld(analyzerCrash)
		dist := &distWorld{overlay: before}
		m := NewManager(Options{Querier: w, Faults: w, Traffic: trafficWorld{w}, Alerts: as, Distributor: dist, MaxFaultSeconds: 600,
			Logger: slog.New(slog.DiscardHandler), Store: openStore(t, dir)})
		d := crashDefinition()
		d.ConfigChanges = []ConfigChange{{AtSeconds: 1, Overlay: map[string]any{"limits": map[string]any{"global": map[string]any{"rate": 5}}}}}
		e, err := m.Start(d)
		require.NoError(t, err)
		time.Sleep(5 * time.Second)
		killed, w2 := copyDir(t, dir), w.clone()

		for _, c := range []struct {
			failures int
			want     string
		}{
			{3, "the distributor's overlay from before restored"},                                                        // up after 1+2+4 s
			{1000, "the distributor's overlay NOT restored: distributor at http://distributor:8080: connection refused"}, // never
		} {
			dist2 := &downDist{distWorld: &distWorld{overlay: "{}"}, failures: c.failures}
			m2 := restarted(w2.clone(), dist2, openStore(t, copyDir(t, killed)))
			m2.Restore()
			m2.Wait()
			got, _ := m2.Get(e.ID)
			require.Equal(t, Interrupted, got.State)
			require.Contains(t, got.Reason, c.want)
			if c.failures < 10 {
				require.Equal(t, []string{before}, dist2.history)
				require.Empty(t, got.CleanupErrors)
			} else {
				require.Equal(t, []string{c.want}, got.CleanupErrors, "what a restart could not undo is listed")
			}
		}
		m.Stop(e.ID)
		m.Wait()
	})
}
