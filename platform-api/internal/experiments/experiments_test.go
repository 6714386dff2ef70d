package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/prom"
	"github.com/dsplab/dsplab/platform-api/internal/alerts"
	"github.com/dsplab/dsplab/platform-api/internal/apierr"
	"github.com/dsplab/dsplab/platform-api/internal/faults"
	"github.com/dsplab/dsplab/platform-api/internal/traffic"
)

// The runner is tested in a synctest bubble against in-memory stand-ins:
// a scripted Prometheus (values as a function of time), and fault and
// traffic managers that keep time. The real fault and traffic managers are
// tested on the Docker engine in their own packages; Prometheus itself is
// not available to these tests.

type world struct {
	start   time.Time
	mu      sync.Mutex
	values  func(q string, t float64) (float64, bool)
	faults  map[string]*faults.Fault
	stopped []string
	jobs    map[string]*traffic.Job
	stopErr error // the engine refuses reverts
	// busyUntil: Start answers a conflict until then (an earlier fault on
	// the target still being reverted).
	busyUntil time.Time
}

func (w *world) since() float64 { return time.Since(w.start).Seconds() }

func (w *world) Query(_ context.Context, q string) (float64, bool, error) {
	v, ok := w.values(q, w.since())
	return v, ok, nil
}

// QueryRange gives the scripted value of q at each step (a series without
// labels), for the report's charts; nothing where the script has none.
func (w *world) QueryRange(_ context.Context, q string, start, end time.Time, step time.Duration) ([]prom.Series, error) {
	var s prom.Series
	for t := start; !t.After(end); t = t.Add(step) {
		if v, ok := w.values(q, t.Sub(w.start).Seconds()); ok {
			s.Samples = append(s.Samples, prom.Sample{T: t, V: v})
		}
	}
	if len(s.Samples) == 0 {
		return nil, nil
	}
	return []prom.Series{s}, nil
}

// Increase of a counter is its scripted sum now minus at the world's start.
func (w *world) Increase(_ context.Context, counter string, _ time.Time) (float64, bool, error) {
	now, ok := w.values("sum("+counter+")", w.since())
	start, ok0 := w.values("sum("+counter+")", 0)
	return now - start, ok && ok0, nil
}

func (w *world) Start(_ context.Context, s faults.Spec) (faults.Fault, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if time.Now().Before(w.busyUntil) {
		return faults.Fault{}, fmt.Errorf("%w: kill fault f-0 on %s is being reverted", faults.ErrConflict, s.Target)
	}
	end := time.Now().Add(s.Duration)
	f := &faults.Fault{ID: "f-" + s.Target, Type: s.Type, Target: s.Target, State: faults.StateActive, StartedAt: time.Now(), EndsAt: &end, Command: "docker " + string(s.Type)}
	w.faults[f.ID] = f
	return *f, nil
}

func (w *world) StopFault(_ context.Context, id string) (faults.Fault, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopErr != nil {
		w.faults[id].State = faults.StateReverting
		return *w.faults[id], w.stopErr
	}
	w.faults[id].State = faults.StateReverted
	w.stopped = append(w.stopped, id)
	return *w.faults[id], nil
}

func (w *world) Get(id string) (faults.Fault, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.faults[id]
	if f.State == faults.StateActive && !time.Now().Before(*f.EndsAt) {
		f.State = faults.StateReverted
	}
	return *f, nil
}

type trafficWorld struct{ *world }

func (t trafficWorld) Start(_ context.Context, s traffic.Spec) (traffic.Job, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	j := &traffic.Job{ID: "t-1", Script: "ingest-packets", Profile: "constant", RPS: s.RPS, Duration: s.Duration, State: traffic.StateRunning, StartedAt: time.Now()}
	t.jobs[j.ID] = j
	return *j, nil
}

func (t trafficWorld) Stop(_ context.Context, id string) (traffic.Job, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.jobs[id].State = traffic.StateStopped
	t.jobs[id].Summary = []byte(`{"overview":{"packets_accepted":1000}}`)
	return *t.jobs[id], nil
}

func (t trafficWorld) Get(id string) (traffic.Job, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	j := t.jobs[id]
	if j.State == traffic.StateRunning && time.Since(j.StartedAt) >= j.Duration {
		j.State = traffic.StateFinished
		j.Summary = []byte(`{"overview":{"packets_accepted":1000}}`)
	}
	return *j, nil
}

// analyzerCrash: analyzer-2 is killed at 10 s for 15 s; the healthy count
// drops from 12 s to 27 s; an alert arrives at 14 s.
func analyzerCrash(q string, t float64) (float64, bool) {
	healthy := 3.0
	if t >= 12 && t < 27 {
		healthy = 2
	}
	switch q {
	case "distributor_healthy_analyzers", "max(distributor_healthy_analyzers)":
		return healthy, true
	case "sum(distributor_packets_total)", "sum(analyzer_packets_processed_total)":
		return 1000 * min(t, 60) / 60, true
	case "sum(analyzer_duplicate_packets_total)":
		return 3 * min(t, 60) / 60, true
	case defaultDetect:
		return 1, healthy < 3
	}
	return 0, false
}

const defaultDetect = "(min(distributor_analyzer_up) < 1) or (distributor_health_up < 1)"

func crashDefinition() Definition {
	return Definition{
		Name:    "analyzer-crash",
		Traffic: &Traffic{TargetURL: "http://distributor:8080", RPS: 300, DurationSeconds: 60},
		Faults:  []ScheduledFault{{AtSeconds: 10, Type: "kill", Target: "analyzer-2", DurationSeconds: 15}},
		Checks: []Check{
			{Name: "all healthy before", Query: "distributor_healthy_analyzers", Comparator: ">=", Threshold: 3, Phase: "before", Abort: true},
			{Name: "the crash is noticed", Query: "distributor_healthy_analyzers", Comparator: "<=", Threshold: 2, Phase: "during", Mode: "eventually"},
			{Name: "all healthy after", Query: "distributor_healthy_analyzers", Comparator: ">=", Threshold: 3, Phase: "after"},
		},
		RecoverySeconds: 30,
	}
}

func newWorld(values func(string, float64) (float64, bool)) (*world, *Manager, *alerts.Store) {
	w := &world{start: time.Now(), values: values, faults: map[string]*faults.Fault{}, jobs: map[string]*traffic.Job{}}
	store := alerts.New(100)
	m := NewManager(Options{Querier: w, Faults: w, Traffic: trafficWorld{w}, Alerts: store, MaxFaultSeconds: 600, Logger: slog.New(slog.DiscardHandler)})
	return w, m, store
}

func TestACrashExperimentPassesWithTimeToDetectRecoverAndTheLedger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, m, store := newWorld(analyzerCrash)
		go func() {
			time.Sleep(14 * time.Second)
			store.Add(alerts.Notification{Receiver: "platform", Alerts: []alerts.Alert{{Status: "firing", Labels: map[string]string{"alertname": "AnalyzerDown"}}}}, time.Now())
		}()
		e, err := m.Start(crashDefinition())
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Passed, e.State, e.Reason)
		require.NotNil(t, e.TimeToDetectSeconds, "%+v", e.Timeline)
		require.InDelta(t, 2, *e.TimeToDetectSeconds, 1, "the detect query saw it at 12 s, before the alert at 14 s")
		require.Contains(t, e.DetectedBy, "query")
		require.InDelta(t, 5, *e.TimeToRecoverSeconds, 1, "faults ended at 25 s, healthy again at 27 s, seen at the next evaluation")
		require.Len(t, e.Alerts, 1)
		require.InDelta(t, *e.Ledger.Accepted, *e.Ledger.Processed, 0.001)
		require.Zero(t, *e.Ledger.Lost)
		require.EqualValues(t, 1000, *e.Ledger.K6Accepted)
		kinds := []string{}
		for _, ev := range e.Timeline {
			kinds = append(kinds, ev.Kind)
		}
		// The traffic job (60 s) ends by itself after the recovery (27 s): it
		// is not stopped early, so k6's summary is there for the ledger.
		require.Equal(t, []string{"started", "traffic-started", "fault-started", "detected", "faults-ended", "recovered", "traffic-ended", "verdict"}, kinds)
		require.Equal(t, []string{"t-1"}, []string{e.TrafficJobID})
		md := Markdown(e)
		for _, want := range []string{"# Experiment analyzer-crash — PASSED", "time to detect | 2.0s", "## Delivery ledger", "AnalyzerDown", "fault-started"} {
			require.Contains(t, md, want)
		}
	})
}

func TestAFailingBeforeCheckWithAbortStartsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, m, _ := newWorld(func(q string, t float64) (float64, bool) {
			if q == "distributor_healthy_analyzers" {
				return 1, true
			}
			return analyzerCrash(q, t)
		})
		e, err := m.Start(crashDefinition())
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Aborted, e.State)
		require.Contains(t, e.Reason, "before check failed")
		require.Empty(t, w.faults)
		require.Empty(t, w.jobs)
	})
}

func TestADuringCheckWithAbortRevertsTheFaultsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, m, _ := newWorld(analyzerCrash)
		d := crashDefinition()
		d.Checks = append(d.Checks, Check{Name: "never below 3", Query: "distributor_healthy_analyzers", Comparator: ">=", Threshold: 3, Phase: "during", Abort: true})
		e, err := m.Start(d)
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Aborted, e.State)
		require.Equal(t, []string{"f-analyzer-2"}, w.stopped, "the experiment reverts its active fault")
		stoppedAt := -1.0
		for _, ev := range e.Timeline {
			if ev.Kind == "fault-stopped" {
				stoppedAt = ev.Seconds
			}
		}
		require.GreaterOrEqual(t, stoppedAt, 0.0, "the fault was stopped")
		require.Less(t, stoppedAt, 25.0, "aborted and reverted before the fault's end")
	})
}

func TestAnAfterCheckThatNeverHoldsFailsTheExperiment(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, m, _ := newWorld(func(q string, t float64) (float64, bool) {
			if q == "distributor_healthy_analyzers" && t >= 12 {
				return 2, true // analyzer-2 never comes back
			}
			return analyzerCrash(q, t)
		})
		e, err := m.Start(crashDefinition())
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Failed, e.State)
		require.Contains(t, e.Reason, "after: all healthy after")
		require.Nil(t, e.TimeToRecoverSeconds)
	})
}

func TestStoppingAnExperimentAbortsItAndCleansUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, m, _ := newWorld(analyzerCrash)
		e, err := m.Start(crashDefinition())
		require.NoError(t, err)
		time.Sleep(15 * time.Second)
		_, err = m.Stop(e.ID)
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Aborted, e.State)
		require.Equal(t, "stopped by request", e.Reason)
		require.Equal(t, []string{"f-analyzer-2"}, w.stopped)
		require.Equal(t, traffic.StateStopped, w.jobs["t-1"].State)
	})
}

// A stopped experiment still waits, up to settle, for the analyzers to
// catch up before it reads its ledger; a second Stop ends that wait.
func TestASecondStopEndsTheWaitForTheLastCounts(t *testing.T) {
	behind := func(q string, t float64) (float64, bool) {
		if q == "sum(analyzer_packets_processed_total)" {
			return 500, true // never catches up with the distributor
		}
		return analyzerCrash(q, t)
	}
	for _, stops := range []int{1, 2} {
		synctest.Test(t, func(t *testing.T) {
			_, m, _ := newWorld(behind)
			e, err := m.Start(crashDefinition())
			require.NoError(t, err)
			time.Sleep(15 * time.Second)
			at := time.Now()
			for range stops {
				_, err = m.Stop(e.ID)
				require.NoError(t, err)
				synctest.Wait() // the first stop's cleanup is under way
			}
			m.Wait()
			e, _ = m.Get(e.ID)
			require.Equal(t, Aborted, e.State)
			took := time.Since(at)
			if stops == 1 {
				require.GreaterOrEqual(t, took, settle, "one stop: the end waits for the counts to settle")
			} else {
				require.Less(t, took, 5*time.Second, "two stops: the end reads what it has")
				require.Contains(t, fmt.Sprint(e.Timeline), "stopped-again a second stop")
			}
			_, err = m.Stop(e.ID) // a third, after the end: nothing to do
			require.NoError(t, err)
		})
	}
}

func TestDefinitionsListEveryProblem(t *testing.T) {
	d := Definition{Faults: []ScheduledFault{{AtSeconds: -1, Type: "explode"}}, Checks: []Check{{Comparator: "~", Phase: "later"}},
		Traffic: &Traffic{}, IntervalSeconds: 0.1}
	err := d.Validate(600)
	var ve *apierr.ValidationError
	require.ErrorAs(t, err, &ve)
	fields := map[string]bool{}
	for _, p := range ve.Problems {
		fields[p.Field] = true
	}
	for _, f := range []string{"name", "intervalSeconds", "traffic", "faults[0].atSeconds", "faults[0].type", "faults[0].target", "faults[0].durationSeconds", "checks[0].query", "checks[0].comparator", "checks[0].phase"} {
		require.True(t, fields[f], "%s not reported: %v", f, ve.Problems)
	}
}

func TestShippedPresetsAreValid(t *testing.T) {
	presets, err := LoadPresets("../../../experiments", 600)
	require.NoError(t, err)
	require.Contains(t, presets, "analyzer-crash")
	require.Contains(t, presets, "baseline")
	for _, name := range []string{"burst", "slow-analyzer", "flapping-analyzer", "all-analyzers-down"} {
		require.Contains(t, presets, name)
	}
}

// A fault-free experiment (baseline, burst) is judged during its traffic:
// the during checks are sampled until the job ends, and a violation fails it.
func TestAnExperimentWithoutFaultsIsJudgedDuringItsTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Accepting stops at 40 s of a 60 s job.
		_, m, _ := newWorld(func(q string, at float64) (float64, bool) {
			if q == "accepting" {
				return map[bool]float64{true: 1, false: 0}[at < 40], true
			}
			return analyzerCrash(q, 0)
		})
		d := Definition{
			Name:    "baseline",
			Traffic: &Traffic{TargetURL: "http://distributor:8080", RPS: 300, DurationSeconds: 60},
			Checks: []Check{
				{Name: "keeps accepting", Query: "accepting", Comparator: ">", Threshold: 0, Phase: "during"},
				{Name: "all healthy after", Query: "distributor_healthy_analyzers", Comparator: ">=", Threshold: 3, Phase: "after"},
			},
			RecoverySeconds: 30, IntervalSeconds: 5,
		}
		start := time.Now()
		e, err := m.Start(d)
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.GreaterOrEqual(t, time.Since(start), 60*time.Second, "it waited for the traffic")
		require.Equal(t, Failed, e.State, e.Reason)
		require.GreaterOrEqual(t, len(e.Checks[0].Samples), 10)
		require.False(t, e.Checks[0].Passed)
		require.True(t, e.Checks[1].Passed)
	})
}

// distWorld is a distributor's overlay API in memory; an overlay with
// "bad" in it is refused, as the distributor refuses an invalid one.
type distWorld struct {
	mu      sync.Mutex
	overlay string
	history []string
	at      []float64
	start   time.Time
}

func (d *distWorld) Overlay(context.Context) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.overlay, nil
}

func (d *distWorld) SetOverlay(_ context.Context, b []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if strings.Contains(string(b), "bad") {
		return errors.New("distributor answered 400: limits.global.rate: must not be negative")
	}
	d.overlay = string(b)
	d.history = append(d.history, d.overlay)
	d.at = append(d.at, time.Since(d.start).Seconds())
	return nil
}

func TestConfigChangesAreAppliedOnScheduleAndTheOverlayIsPutBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, _, store := newWorld(func(q string, at float64) (float64, bool) { return analyzerCrash(q, 0) })
		dist := &distWorld{overlay: `{"routing":{"strategy":"tenant-hash"}}`, start: time.Now()}
		m := NewManager(Options{Querier: w, Faults: w, Traffic: trafficWorld{w}, Alerts: store, Distributor: dist, MaxFaultSeconds: 600, Logger: slog.New(slog.DiscardHandler)})
		d := Definition{
			Name:    "rate-limit",
			Traffic: &Traffic{TargetURL: "http://distributor:8080", RPS: 300, DurationSeconds: 60},
			ConfigChanges: []ConfigChange{
				{AtSeconds: 40, Clear: true},
				{AtSeconds: 15, Overlay: map[string]any{"limits": map[string]any{"global": map[string]any{"rate": 100, "burst": 100}}}},
			},
			Checks:          []Check{{Name: "all healthy after", Query: "distributor_healthy_analyzers", Comparator: ">=", Threshold: 3, Phase: "after"}},
			RecoverySeconds: 30, IntervalSeconds: 5,
		}
		require.NoError(t, d.Validate(600))
		e, err := m.Start(d)
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Passed, e.State, e.Reason)
		require.Equal(t, []string{`{"limits":{"global":{"burst":100,"rate":100}}}`, "", `{"routing":{"strategy":"tenant-hash"}}`}, dist.history,
			"in time order, then the overlay from before is put back")
		require.InDelta(t, 15, dist.at[0], 1)
		require.InDelta(t, 40, dist.at[1], 1)
		var kinds []string
		for _, ev := range e.Timeline {
			kinds = append(kinds, ev.Kind)
		}
		require.Contains(t, kinds, "config-changed")
		require.Contains(t, kinds, "config-restored")

		// A refused overlay fails the experiment, which still cleans up.
		dist.history = nil
		d.ConfigChanges = []ConfigChange{{AtSeconds: 5, Overlay: map[string]any{"limits": "bad"}}}
		e, err = m.Start(d)
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Failed, e.State)
		require.Contains(t, e.Reason, "limits.global.rate")
		require.Equal(t, []string{`{"routing":{"strategy":"tenant-hash"}}`}, dist.history, "the overlay from before is in force at the end")
	})
}

func TestAConfigChangeNeedsAnOverlayOrClear(t *testing.T) {
	d := Definition{Name: "x", ConfigChanges: []ConfigChange{{AtSeconds: -1}, {AtSeconds: 1, Clear: true, Overlay: map[string]any{"a": 1}}}}
	err := d.Validate(600)
	require.Error(t, err)
	for _, f := range []string{"configChanges[0].atSeconds", "configChanges[0]", "configChanges[1]"} {
		require.Contains(t, err.Error(), f)
	}
}

// The last counts reach Prometheus seconds after the traffic ends: the
// ledger is read once the distributor's count has stopped moving and the
// analyzers have caught up, not at the first read where processed >=
// accepted.
func TestTheLedgerWaitsForTheLastCountsToArrive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 100 packets/s for 60 s; the distributor's counts are seen in
		// Prometheus 8 s late, the analyzers' 6 s late (their exports fall
		// differently), so processed >= accepted holds before the end.
		seen := func(at, lag float64) float64 { return 100 * min(max(at-lag, 0), 60) }
		_, m, _ := newWorld(func(q string, at float64) (float64, bool) {
			switch q {
			case "sum(distributor_packets_total)":
				return seen(at, 8), true
			case "sum(analyzer_packets_processed_total)":
				return seen(at, 6), true
			case "sum(analyzer_duplicate_packets_total)":
				return 0, true
			}
			return analyzerCrash(q, 0)
		})
		d := Definition{Name: "baseline", Traffic: &Traffic{TargetURL: "http://distributor:8080", RPS: 100, DurationSeconds: 60},
			Checks:          []Check{{Name: "all healthy after", Query: "distributor_healthy_analyzers", Comparator: ">=", Threshold: 3, Phase: "after"}},
			RecoverySeconds: 30, IntervalSeconds: 5}
		e, err := m.Start(d)
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Passed, e.State, e.Reason)
		require.Equal(t, 6000.0, *e.Ledger.Accepted)
		require.Equal(t, 6000.0, *e.Ledger.Processed)
		require.Equal(t, 0.0, *e.Ledger.Lost)
	})
}

// A ratio of two zero rates is NaN: no number to judge, and none JSON can
// carry (an experiment holding one could not be answered). It counts as
// no data; the check still passes once a real value holds.
func TestANaNSampleIsNoDataAndTheExperimentStaysEncodable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, m, _ := newWorld(func(q string, at float64) (float64, bool) {
			if q == "share" {
				if at < 10 {
					return math.NaN(), true
				}
				return 0.5, true
			}
			return analyzerCrash(q, 0)
		})
		d := Definition{Name: "shares", Traffic: &Traffic{TargetURL: "http://distributor:8080", RPS: 300, DurationSeconds: 30},
			Checks:          []Check{{Name: "half", Query: "share", Comparator: ">=", Threshold: 0.4, Phase: "during", Mode: "eventually"}},
			RecoverySeconds: 10, IntervalSeconds: 5}
		e, err := m.Start(d)
		require.NoError(t, err)
		time.Sleep(6 * time.Second)
		e, _ = m.Get(e.ID)
		_, err = json.Marshal(e)
		require.NoError(t, err, "a NaN sample must not make the experiment unencodable")
		require.Contains(t, e.Checks[0].Error, "NaN")
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Passed, e.State, e.Reason)
		require.Nil(t, e.Checks[0].Samples[0].Value)
	})
}

// Time to detect counts only an alert that fires because of this run: a
// resolve notification, or an alert that began before the first fault
// (left over from an earlier run), is not a detection.
func TestOnlyAnAlertThatBeganAfterTheFaultIsADetection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The detect query never fires: only alerts can detect here.
		_, m, store := newWorld(func(q string, at float64) (float64, bool) {
			if strings.Contains(q, "distributor_analyzer_up") {
				return 0, false
			}
			return analyzerCrash(q, at)
		})
		begun := time.Now()
		go func() {
			time.Sleep(11 * time.Second) // the fault starts at 10 s
			store.Add(alerts.Notification{Receiver: "platform", Alerts: []alerts.Alert{
				{Status: "firing", StartsAt: begun.Add(-time.Minute), Labels: map[string]string{"alertname": "RateLimitingHigh"}},
				{Status: "resolved", StartsAt: begun.Add(-time.Minute), Labels: map[string]string{"alertname": "AnalyzerDown"}},
			}}, time.Now())
			time.Sleep(5 * time.Second)
			store.Add(alerts.Notification{Receiver: "platform", Alerts: []alerts.Alert{
				{Status: "firing", StartsAt: begun.Add(12 * time.Second), Labels: map[string]string{"alertname": "AnalyzerDown"}},
			}}, time.Now())
		}()
		d := crashDefinition()
		d.DetectQuery = "distributor_analyzer_up == 0"
		e, err := m.Start(d)
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.NotNil(t, e.TimeToDetectSeconds, "%+v", e.Timeline)
		require.Equal(t, "alert AnalyzerDown", e.DetectedBy)
		require.InDelta(t, 6, *e.TimeToDetectSeconds, 1)
	})
}

// After checks are judged on the evaluation that ends recovery, not on
// every one: their mode says so (recovers), in the definition, the JSON
// report and the Markdown; another mode on an after check is refused.
func TestAfterChecksAreNamedRecoversInTheReport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, m, _ := newWorld(analyzerCrash)
		e, err := m.Start(crashDefinition())
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Passed, e.State, e.Reason)
		modes := map[Phase]Mode{}
		for _, c := range e.Checks {
			modes[c.Phase] = c.Mode
		}
		require.Equal(t, map[Phase]Mode{"before": "always", "during": "eventually", "after": "recovers"}, modes)
		b, err := json.Marshal(e)
		require.NoError(t, err)
		require.Contains(t, string(b), `"phase":"after","mode":"recovers"`)
		md := Markdown(e)
		require.Contains(t, md, "| after | all healthy after | `distributor_healthy_analyzers` | >= 3 (recovers) | ✅ passed |")
		require.NotContains(t, md, "| after | all healthy after | `distributor_healthy_analyzers` | >= 3 (always)")
		require.Contains(t, md, "*recovers* evaluated until every after check held at one evaluation")
	})
}

func TestAnAfterCheckWithAnotherModeIsRefusedAndRecoversOnlyFitsAfter(t *testing.T) {
	for _, tc := range []struct {
		phase   Phase
		mode    Mode
		problem string
	}{
		{"after", "always", "mode must be recovers or left out"},
		{"after", "eventually", "mode must be recovers or left out"},
		{"during", "recovers", "recovers is for after checks"},
	} {
		d := Definition{Name: "x", Checks: []Check{{Query: "up", Comparator: ">", Phase: tc.phase, Mode: tc.mode}}}
		err := d.Validate(600)
		var ve *apierr.ValidationError
		require.ErrorAs(t, err, &ve, "%s/%s", tc.phase, tc.mode)
		require.Equal(t, "checks[0].mode", ve.Problems[0].Field)
		require.Contains(t, ve.Problems[0].Problem, tc.problem)
	}
	d := Definition{Name: "x", Checks: []Check{{Query: "up", Comparator: ">", Phase: "after", Mode: "recovers"}}}
	require.NoError(t, d.Validate(600))
}

// $__range is the experiment so far plus a margin: a counter's increase
// over it counts an event of any length since the start, whenever the
// check is evaluated. Here a breaker opens for one second at 12 s, between
// two evaluations: its gauge is never seen open, its count is.
func TestRangeIsTheExperimentSoFarSoShortEventsAreCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var windows []string
		opens := func(at float64) float64 { // the counter, as Prometheus has it
			if at >= 12 {
				return 1
			}
			return 0
		}
		_, m, _ := newWorld(func(q string, at float64) (float64, bool) {
			switch {
			case strings.HasPrefix(q, "breaker_state"):
				if at >= 12 && at < 13 {
					return 2, true
				}
				return 0, true
			case strings.HasPrefix(q, "increase(opens_total["):
				w := strings.TrimSuffix(strings.TrimPrefix(q, "increase(opens_total["), "s])")
				mu.Lock()
				windows = append(windows, w)
				mu.Unlock()
				var secs float64
				_, err := fmt.Sscanf(w, "%g", &secs)
				require.NoError(t, err)
				return opens(at) - opens(max(at-secs, 0)), true
			}
			return analyzerCrash(q, at)
		})
		d := crashDefinition()
		d.Checks = append(d.Checks,
			Check{Name: "gauge sees it open", Query: "breaker_state", Comparator: ">=", Threshold: 2, Phase: "during", Mode: "eventually"},
			Check{Name: "the count sees it open", Query: "increase(opens_total[$__range])", Comparator: ">=", Threshold: 1, Phase: "during", Mode: "eventually"})
		e, err := m.Start(d)
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		byName := map[string]CheckResult{}
		for _, c := range e.Checks {
			byName[c.Name] = c
		}
		require.False(t, byName["gauge sees it open"].Passed, "evaluated at 10, 15, 20 s: the 1 s open state falls between")
		require.True(t, byName["the count sees it open"].Passed)
		require.Equal(t, "increase(opens_total[$__range])", byName["the count sees it open"].Query, "the report keeps the query as written")
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, []string{"20", "25", "30"}, windows[:3], "10 s, 15 s and 20 s into the run, plus 10 s")
	})
}

// $__recovery is the recovery so far plus the margin: "accepted again" is
// counted since the faults ended. Requests accepted before the fault do
// not make it hold, as a fixed look-back of 90 s does. The fault here
// ends at 25 s; acceptance resumes at resumeAt (never, or at 32 s).
func TestRecoveryVarCountsOnlySinceTheFaultsEnded(t *testing.T) {
	for _, tc := range []struct {
		name     string
		resumeAt float64
		passes   bool
	}{
		{"never accepted again", 1e9, false},
		{"accepted again at 32 s", 32, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				var windows []string
				accepted := func(at float64) float64 { // 100/s until the fault at 10 s, then from resumeAt
					return 100*min(at, 10) + 100*max(at-tc.resumeAt, 0)
				}
				increase := func(q, prefix string, at float64) float64 {
					w := strings.TrimSuffix(strings.TrimPrefix(q, prefix), "s])")
					var secs float64
					_, err := fmt.Sscanf(w, "%g", &secs)
					require.NoError(t, err)
					return accepted(at) - accepted(max(at-secs, 0))
				}
				_, m, _ := newWorld(func(q string, at float64) (float64, bool) {
					switch {
					case strings.HasPrefix(q, "increase(accepted_total[90s"):
						return increase(q, "increase(accepted_total[", at), true
					case strings.HasPrefix(q, "increase(accepted_total["):
						mu.Lock()
						windows = append(windows, q)
						mu.Unlock()
						return increase(q, "increase(accepted_total[", at), true
					}
					return analyzerCrash(q, at)
				})
				d := crashDefinition()
				d.RecoverySeconds = 20
				d.Checks = append(d.Checks,
					Check{Name: "fixed look-back", Query: "increase(accepted_total[90s])", Comparator: ">", Threshold: 0, Phase: "after"},
					Check{Name: "accepted again", Query: "increase(accepted_total[$__recovery])", Comparator: ">", Threshold: 0, Phase: "after"})
				require.NoError(t, d.Validate(600))
				e, err := m.Start(d)
				require.NoError(t, err)
				m.Wait()
				e, _ = m.Get(e.ID)
				byName := map[string]CheckResult{}
				for _, c := range e.Checks {
					byName[c.Name] = c
				}
				require.True(t, byName["fixed look-back"].Passed, "90 s back reaches the requests accepted before the fault: it holds either way")
				require.Equal(t, tc.passes, byName["accepted again"].Passed, "%+v", byName["accepted again"].Samples)
				require.Equal(t, tc.passes, e.State == Passed, e.Reason)
				mu.Lock()
				defer mu.Unlock()
				require.Equal(t, "increase(accepted_total[10s])", windows[0], "at the start of recovery: the margin only")
			})
		})
	}
}

func TestRecoveryVarIsForAfterChecksOnly(t *testing.T) {
	d := Definition{Name: "x", Checks: []Check{{Query: "increase(x_total[$__recovery])", Comparator: ">", Phase: "during"}}}
	var ve *apierr.ValidationError
	require.ErrorAs(t, d.Validate(600), &ve)
	require.Equal(t, "checks[0].query", ve.Problems[0].Field)
	require.Contains(t, ve.Problems[0].Problem, "after checks only")
}

// An alert left pending by an earlier run (RateLimitingHigh after the
// rate-limit preset) can start firing just after this run's first fault;
// with DetectAlerts only the named alert is credited with detection.
func TestDetectAlertsCreditOnlyTheNamedAlerts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		named  []string
		by     string
		detect float64
	}{
		{"any alert", nil, "alert RateLimitingHigh", 1},
		{"named alerts only", []string{"AnalyzerDown"}, "alert AnalyzerDown", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				_, m, store := newWorld(analyzerCrash)
				go func() {
					time.Sleep(11 * time.Second)
					store.Add(alerts.Notification{Receiver: "platform", Alerts: []alerts.Alert{{Status: "firing", StartsAt: time.Now(), Labels: map[string]string{"alertname": "RateLimitingHigh"}}}}, time.Now())
					time.Sleep(3 * time.Second)
					store.Add(alerts.Notification{Receiver: "platform", Alerts: []alerts.Alert{{Status: "firing", StartsAt: time.Now(), Labels: map[string]string{"alertname": "AnalyzerDown"}}}}, time.Now())
				}()
				d := crashDefinition()
				d.DetectQuery = "never_present"
				d.DetectAlerts = tc.named
				e, err := m.Start(d)
				require.NoError(t, err)
				m.Wait()
				e, _ = m.Get(e.ID)
				require.NotNil(t, e.TimeToDetectSeconds, "%+v", e.Timeline)
				require.Equal(t, tc.by, e.DetectedBy)
				require.InDelta(t, tc.detect, *e.TimeToDetectSeconds, 1)
			})
		})
	}
}

func TestAScheduledFaultWaitsForTheRevertOfAnEarlierOneOnItsTarget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, m, _ := newWorld(analyzerCrash)
		// The fault is due at 10 s; an earlier fault's revert holds the
		// container until 13 s (a slow docker start on a busy engine).
		w.busyUntil = w.start.Add(13 * time.Second)
		e, err := m.Start(crashDefinition())
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Passed, e.State, e.Reason)
		for _, ev := range e.Timeline {
			if ev.Kind == "fault-started" {
				require.InDelta(t, 13, ev.At.Sub(e.StartedAt).Seconds(), 0.5, "started once the revert was over")
			}
		}

		// A target held for longer than the wait: the fault fails, naming the conflict.
		w.busyUntil = time.Now().Add(time.Hour)
		e, err = m.Start(crashDefinition())
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Failed, e.State)
		require.Contains(t, e.Reason, "is being reverted")
	})
}

// The waits at the end of a run (for the traffic job's summary, for the
// ledger counts to settle) end with their context, not only at their
// deadline: in the bubble's fake clock, no time passes once it is done.
func TestTheWaitsAtTheEndStopWithTheirContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, _, _ := newWorld(analyzerCrash)
		tw := trafficWorld{w}
		job, err := tw.Start(t.Context(), traffic.Spec{RPS: 1, Duration: time.Hour})
		require.NoError(t, err)
		r := newRunner(deps{q: w, traffic: tw}, nil, Experiment{StartedAt: time.Now()})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		before := time.Now()
		got := r.awaitJobEnd(ctx, job.ID, before.Add(settle))
		require.NotNil(t, got)
		require.Equal(t, traffic.StateRunning, got.State, "the job's last record, still running")
		r.settledLedger(ctx, before.Add(settle))
		require.Zero(t, time.Since(before), "neither waited")

		// Without an end to its context, the job is awaited until it ends
		// by itself or the deadline.
		got = r.awaitJobEnd(t.Context(), job.ID, time.Now().Add(settle))
		require.Equal(t, traffic.StateRunning, got.State)
		require.Equal(t, settle, time.Since(before), "waited until the deadline")
	})
}

// preparingWorld readies the faults in prepare (an image pull, the netem
// check's sidecar on a slow engine), or fails with err.
type preparingWorld struct {
	*world
	prepare time.Duration
	err     error
	asked   *[]faults.Type
}

func (p preparingWorld) Prepare(ctx context.Context, types []faults.Type) (string, error) {
	*p.asked = append(*p.asked, types...)
	select {
	case <-time.After(p.prepare):
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return "Pumba's images; the kernel's netem (checked)", p.err
}

// slowTraffic is a k6 job whose start (docker create, the scripts copied
// in, docker start) takes delay, as on a busy or emulated engine.
type slowTraffic struct {
	trafficWorld
	delay time.Duration
}

func (t slowTraffic) Start(ctx context.Context, s traffic.Spec) (traffic.Job, error) {
	time.Sleep(t.delay)
	return t.trafficWorld.Start(ctx, s)
}

// The faults' offsets count from the traffic's start, as its duration
// does: a k6 job that took 25 s to start still gets its fault 10 s into
// its traffic, not 10 s into the experiment (before any traffic). And
// what the faults need is readied from the experiment's start, beside
// the before checks and the traffic's start, so the fault is not held up
// at its offset: the timeline says when it was ready, or what was not.
func TestFaultsCountFromTheTrafficsStartAndArePreparedFromTheExperiments(t *testing.T) {
	for _, c := range []struct {
		name    string
		prepare time.Duration
		err     error
		event   string
	}{
		{"ready", 20 * time.Second, nil, "faults-ready"},
		{"not ready", 5 * time.Second, errors.New("netem check got no answer"), "faults-not-ready"},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := &world{start: time.Now(), values: func(string, float64) (float64, bool) { return 3, true }, faults: map[string]*faults.Fault{}, jobs: map[string]*traffic.Job{}}
				var asked []faults.Type
				m := NewManager(Options{Querier: w, Faults: preparingWorld{world: w, prepare: c.prepare, err: c.err, asked: &asked},
					Traffic: slowTraffic{trafficWorld{w}, 25 * time.Second}, Alerts: alerts.New(10), MaxFaultSeconds: 600, Logger: slog.New(slog.DiscardHandler)})
				d := crashDefinition()
				d.Faults = append(d.Faults, ScheduledFault{AtSeconds: 12, Type: "delay", Target: "analyzer-1", DurationSeconds: 5, DelayMs: 100})
				d.Checks = d.Checks[:1]
				e, err := m.Start(d)
				require.NoError(t, err)
				m.Wait()
				e, _ = m.Get(e.ID)
				require.Equal(t, Passed, e.State, e.Reason)
				require.Equal(t, []faults.Type{"kill", "delay"}, asked, "every planned fault's type, once")
				at := map[string][]float64{}
				for _, ev := range e.Timeline {
					at[ev.Kind] = append(at[ev.Kind], ev.At.Sub(e.StartedAt).Seconds())
				}
				require.Len(t, at[c.event], 1, "%+v", e.Timeline)
				require.InDelta(t, c.prepare.Seconds(), at[c.event][0], 0.5, "readied from the experiment's start")
				require.InDelta(t, 25, at["traffic-started"][0], 0.5)
				require.Len(t, at["fault-started"], 2)
				require.InDelta(t, 25+10, at["fault-started"][0], 0.5, "10 s into the traffic")
				require.InDelta(t, 25+12, at["fault-started"][1], 0.5, "12 s into the traffic")
			})
		})
	}
}
