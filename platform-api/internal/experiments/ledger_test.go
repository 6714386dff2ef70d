package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/dsplab/dsplab/internal/ledger"
	"github.com/dsplab/dsplab/platform-api/internal/alerts"
	"github.com/dsplab/dsplab/platform-api/internal/apierr"
	"github.com/dsplab/dsplab/platform-api/internal/ledgercheck"
)

// fakeLedger answers a fixed exact ledger and records what was asked.
type fakeLedger struct {
	res    ledgercheck.Result
	jobs   []string
	since  time.Time
	called int
}

func (f *fakeLedger) Check(_ context.Context, jobIDs []string, since time.Time, _ <-chan struct{}) ledgercheck.Result {
	f.called++
	f.jobs, f.since = jobIDs, since
	r := f.res
	r.JobIDs = jobIDs
	return r
}

// fakeAnalyzers are analyzers' delivery modes and processing delays
// behind their admin API.
type fakeAnalyzers struct {
	mu      sync.Mutex
	modes   map[string]string
	delays  map[string]float64
	history []string
	down    map[string]bool
}

func (f *fakeAnalyzers) ProcessingDelay(_ context.Context, id string) (float64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down[id] {
		return 0, errors.New("connection refused")
	}
	return f.delays[id], nil
}

func (f *fakeAnalyzers) SetProcessingDelay(_ context.Context, id string, ms float64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down[id] {
		return errors.New("connection refused")
	}
	if f.delays == nil {
		f.delays = map[string]float64{}
	}
	f.delays[id] = ms
	f.history = append(f.history, fmt.Sprintf("%s=%gms", id, ms))
	return nil
}

func (f *fakeAnalyzers) DeliveryMode(_ context.Context, id string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down[id] {
		return "", errors.New("connection refused")
	}
	return f.modes[id], nil
}

func (f *fakeAnalyzers) SetDeliveryMode(_ context.Context, id, mode string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down[id] {
		return errors.New("connection refused")
	}
	f.modes[id] = mode
	f.history = append(f.history, id+"="+mode)
	return nil
}

// ledgerManager is w's manager with the exact ledger l and the delivery
// switch a (nil for none), and an alert store of its own.
func ledgerManager(w *world, l LedgerChecker, a DeliverySwitch) *Manager {
	return NewManager(Options{Querier: w, Faults: w, Traffic: trafficWorld{w}, Alerts: alerts.New(100), Ledger: l, Delivery: a, MaxFaultSeconds: 600, Logger: slog.New(slog.DiscardHandler)})
}

func summaryOf(written, processed, dups, lost int64) ledgercheck.Result {
	return ledgercheck.Result{Counts: ledgercheck.Counts{Written: written, Processed: processed, Processings: processed + dups, Duplicates: dups, Lost: lost},
		Examples: ledgercheck.Examples{Lost: []ledgercheck.Example{}, Duplicates: []ledgercheck.Example{{PacketID: "t-1-2-7",
			Written:   []ledgercheck.Position{{Topic: "logs.analyzer-2", Offset: 7}},
			Processed: []ledgercheck.Processing{{Analyzer: "analyzer-2", Ledger: ledgercheck.Position{Topic: "ledger.processed", Offset: 70}}, {Analyzer: "analyzer-2", Ledger: ledgercheck.Position{Topic: "ledger.processed", Offset: 95}}}}}}}
}

func TestTheExactLedgerIsReadForTheExperimentsJobAndItsExpectationsDecide(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, _, _ := newWorld(analyzerCrash)
		l := &fakeLedger{res: summaryOf(1000, 1000, 12, 0)}
		m := ledgerManager(w, l, nil)
		d := crashDefinition()
		d.Ledger = LedgerExpect{"lost": 0, "duplicates": ">0", "accepted": ">=1000"}
		require.NoError(t, d.Validate(600))
		e, err := m.Start(d)
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Passed, e.State, e.Reason)
		require.Equal(t, 1, l.called)
		require.Equal(t, []string{"t-1"}, l.jobs, "only the experiment's own job")
		require.True(t, l.since.Before(e.StartedAt), "from before the start (a margin for clocks)")
		require.NotNil(t, e.ExactLedger)
		require.EqualValues(t, 1000, *e.ExactLedger.Accepted, "k6's count, from the job's summary")
		require.Len(t, e.LedgerChecks, 3)
		for _, c := range e.LedgerChecks {
			require.True(t, c.Passed, "%+v", c)
		}
		md := Markdown(e)
		for _, want := range []string{"## Delivery ledger (exact, from Kafka)", "| — | 1000 | 0 | 1000 | 1000 | 12 | 0 | 0 | 0 |", "`t-1-2-7`: written logs.analyzer-2/0@7",
			"ledger ledger.processed/0@95", "| lost == 0 | 0 | ✅ passed |", "| duplicates > 0 | 12 | ✅ passed |", "### Metric ledger (cross-check)"} {
			require.Contains(t, md, want)
		}
		// The JSON has it under exactLedger, the metric one under ledger.
		b, _ := json.Marshal(e)
		require.Contains(t, string(b), `"exactLedger":{"jobIds":["t-1"]`)
		require.Contains(t, string(b), `"ledger":{"accepted":`)

	})
}

func TestALostPacketFailsAnExperimentThatExpectsNoneAndSaysWhichCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, _, _ := newWorld(analyzerCrash)
		m := ledgerManager(w, &fakeLedger{res: summaryOf(990, 987, 0, 3)}, nil)
		d := crashDefinition()
		d.Ledger = LedgerExpect{"lost": 0, "duplicates": ">0", "acceptedNotWritten": 0}
		e, err := m.Start(d)
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Failed, e.State)
		require.Contains(t, e.Reason, "3 ledger checks failed")
		require.Contains(t, e.Reason, "ledger: acceptedNotWritten == 0 (was 10)", "k6 saw 1000 answered 2xx, logs.* holds 990")
		require.Contains(t, e.Reason, "ledger: lost == 0 (was 3)")
		require.Contains(t, e.Reason, "ledger: duplicates > 0 (was 0)")
		require.Contains(t, Markdown(e), "| lost == 0 | 3 | ❌ failed |")
	})
}

func TestALedgerThatCouldNotBeReadWhollyJudgesNothingAndFails(t *testing.T) {
	for name, res := range map[string]ledgercheck.Result{
		"an error": {Error: "list topics: connection refused"},
		"a cap":    {Truncated: "stopped after 10 records (the cap, LEDGER_MAX_RECORDS)"},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w, _, _ := newWorld(analyzerCrash)
				m := ledgerManager(w, &fakeLedger{res: res}, nil)
				d := crashDefinition()
				d.Ledger = LedgerExpect{"lost": 0}
				e, err := m.Start(d)
				require.NoError(t, err)
				m.Wait()
				e, _ = m.Get(e.ID)
				require.Equal(t, Failed, e.State)
				require.Contains(t, e.LedgerChecks[0].Error, "not judged")
				require.Nil(t, e.LedgerChecks[0].Value)
				md := Markdown(e)
				require.True(t, strings.Contains(md, "Not read to the end") || strings.Contains(md, "Partial:"), md)
			})
		})
	}
}

func TestWithoutKafkaTheReportSaysTheExactLedgerWasNotRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, m, _ := newWorld(analyzerCrash)
		e, err := m.Start(crashDefinition())
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Passed, e.State, "no expectations: nothing to judge")
		require.Nil(t, e.ExactLedger)
		require.Contains(t, Markdown(e), "Not read: the platform reads no Kafka")
	})
}

// service-chain's requests go to service-a, not to the distributor: there
// is no packet to follow, so the exact ledger is not read (in the VM of
// make e2e-netem, service-delay's stack has no Kafka, and the read failed
// on "lookup kafka"), the report says why, and expectations on it are
// refused when the experiment is defined.
func TestTrafficThatDoesNotGoToTheDistributorHasNoExactLedger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, _, _ := newWorld(analyzerCrash)
		l := &fakeLedger{res: summaryOf(0, 0, 0, 0)}
		m := ledgerManager(w, l, nil)
		d := crashDefinition()
		d.Traffic.Script, d.Traffic.TargetURL = "service-chain", "http://service-a:10001"
		e, err := m.Start(d)
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Zero(t, l.called, "not read")
		require.Nil(t, e.ExactLedger)
		require.Contains(t, e.LedgerNote, "goes to service-a")
		require.Contains(t, Markdown(e), "Not read: the experiment's traffic (service-chain) goes to service-a")

		d.Ledger = LedgerExpect{"lost": 0}
		var ve *apierr.ValidationError
		require.ErrorAs(t, d.Validate(600), &ve)
		require.Equal(t, "ledger", ve.Problems[0].Field)
		require.Contains(t, ve.Problems[0].Problem, "needs traffic to the distributor")
	})
}

func TestLedgerExpectationsAreValidatedNamingTheField(t *testing.T) {
	var d Definition
	require.NoError(t, yaml.Unmarshal([]byte(`
name: x
traffic: {targetUrl: "http://distributor:8080", rps: 10, durationSeconds: 10}
ledger: {lost: 0, duplicates: ">0", unexpected: "== 0", processed: ">= 5"}
delivery: {analyzer-2: effectively-once}
`), &d))
	require.NoError(t, d.Validate(600))
	checks := d.Ledger.parse(&apierr.Problems{})
	require.Equal(t, []LedgerCheck{{Count: "duplicates", Comparator: ">"}, {Count: "lost", Comparator: "=="},
		{Count: "processed", Comparator: ">=", Threshold: 5}, {Count: "unexpected", Comparator: "=="}}, checks)

	// JSON numbers are float64: the same rules.
	require.NoError(t, json.Unmarshal([]byte(`{"name":"x","traffic":{"targetUrl":"http://d","rps":1,"durationSeconds":1},"ledger":{"lost":0}}`), &d))
	require.NoError(t, d.Validate(600))

	bad := Definition{Name: "x", Ledger: LedgerExpect{"lsot": 0, "lost": "some", "duplicates": -1, "written": 1.5, "processed": []any{1}},
		Delivery: map[string]string{"analyzer-2": "exactly-once"}}
	err := bad.Validate(600)
	var ve *apierr.ValidationError
	require.ErrorAs(t, err, &ve)
	problems := map[string]string{}
	for _, p := range ve.Problems {
		problems[p.Field] = p.Problem
	}
	for _, f := range []string{"ledger.lsot", "ledger.lost", "ledger.duplicates", "ledger.written", "ledger.processed", "ledger", "delivery.analyzer-2"} {
		require.Contains(t, problems, f, "%v", ve.Problems)
	}
	require.Contains(t, problems["ledger.lsot"], "one of attempted, accepted, acceptedNotWritten, written")
	require.Contains(t, problems["ledger"], "needs traffic")
	require.Contains(t, problems["delivery.analyzer-2"], "at-most-once, at-least-once, effectively-once")
}

func TestDeliveryModesAreSetBeforeTheTrafficAndPutBackAtTheEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, _, _ := newWorld(analyzerCrash)
		a := &fakeAnalyzers{modes: map[string]string{"analyzer-1": "at-least-once", "analyzer-2": "at-least-once"}}
		m := ledgerManager(w, nil, a)
		d := crashDefinition()
		d.Delivery = map[string]string{"analyzer-2": "at-most-once", "analyzer-1": "effectively-once"}
		e, err := m.Start(d)
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Passed, e.State, e.Reason)
		require.Equal(t, []string{"analyzer-1=effectively-once", "analyzer-2=at-most-once", "analyzer-1=at-least-once", "analyzer-2=at-least-once"}, a.history)
		var kinds []string
		for _, ev := range e.Timeline {
			kinds = append(kinds, ev.Kind)
		}
		require.Equal(t, []string{"started", "delivery-changed", "delivery-changed", "traffic-started"}, kinds[:4], "before the traffic")
		require.Contains(t, kinds, "delivery-restored")
		require.True(t, e.undo.DeliveryRestored)

	})
}

// resetting is an analyzer that comes back from the kill in its
// environment's mode.
type resetting struct{ *fakeAnalyzers }

func (r resetting) DeliveryMode(ctx context.Context, id string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.history) == 1 { // after the change, before the restore
		return "at-least-once", nil
	}
	return r.modes[id], nil
}

func TestAnAnalyzerThatLostItsModeInTheExperimentFailsIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, _, _ := newWorld(analyzerCrash)
		a := &fakeAnalyzers{modes: map[string]string{"analyzer-2": "at-least-once"}}
		m := ledgerManager(w, nil, resetting{a})
		d := crashDefinition()
		d.Delivery = map[string]string{"analyzer-2": "effectively-once"}
		e, _ := m.Start(d)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Failed, e.State)
		require.Equal(t, "delivery settings did not hold: analyzer-2 ended in at-least-once, not effectively-once", e.Reason)
		require.Equal(t, []string{"analyzer-2=effectively-once", "analyzer-2=at-least-once"}, a.history, "put back all the same")
	})
}

func TestAnAnalyzerWhoseModeCannotBeSetFailsTheExperimentBeforeItsTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, _, _ := newWorld(analyzerCrash)
		a := &fakeAnalyzers{modes: map[string]string{"analyzer-1": "at-least-once"}, down: map[string]bool{"analyzer-2": true}}
		m := ledgerManager(w, nil, a)
		d := crashDefinition()
		d.Delivery = map[string]string{"analyzer-2": "at-most-once", "analyzer-1": "effectively-once"}
		e, _ := m.Start(d)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Failed, e.State)
		require.Contains(t, e.Reason, "delivery mode of analyzer-2 not read")
		require.Empty(t, e.TrafficJobID)
		require.Equal(t, []string{"analyzer-1=effectively-once", "analyzer-1=at-least-once"}, a.history, "what was changed is put back")
	})
}

func TestTheSIGKILLPresetsExpectTheExactLedgerToLoseNothingAndEachDeliveryModeItsOwnOutcome(t *testing.T) {
	presets, err := LoadPresets("../../../experiments", 600)
	require.NoError(t, err)
	expects := func(name string) map[string]string {
		out := map[string]string{}
		for _, c := range presets[name].Ledger.parse(&apierr.Problems{}) {
			out[c.Count] = fmt.Sprintf("%s %g", c.Comparator, c.Threshold)
		}
		return out
	}
	for _, name := range []string{"analyzer-crash", "flapping-analyzer", "delivery-semantics-at-least-once", "delivery-semantics-effectively-once"} {
		require.Equal(t, "== 0", expects(name)["lost"], name)
	}
	require.Equal(t, "> 0", expects("delivery-semantics-at-most-once")["lost"])
	require.Equal(t, "> 0", expects("delivery-semantics-at-least-once")["duplicates"])
	require.Equal(t, "== 0", expects("delivery-semantics-effectively-once")["duplicates"])
	for _, m := range ledger.Modes {
		mode := string(m)
		d := presets["delivery-semantics-"+mode]
		require.Equal(t, map[string]string{"analyzer-1": mode}, d.Delivery)
		// The same kills and the same slowed analyzer-1 in every mode: the
		// delay gives it a backlog, so each kill finds a batch in hand, on
		// any machine (the presets say why this replaced a CPU limit).
		require.Equal(t, presets["delivery-semantics-at-least-once"].Faults, d.Faults, "the same faults in every mode")
		require.Len(t, d.Faults, 3, d.Name)
		for _, f := range d.Faults {
			require.Equal(t, ScheduledFault{AtSeconds: f.AtSeconds, Type: "kill", Target: "analyzer-1", DurationSeconds: 5}, f, d.Name)
		}
		require.Equal(t, map[string]float64{"analyzer-1": 8}, d.ProcessingDelayMs, d.Name)
		require.Empty(t, d.ConfigChanges, "nothing else changes: %s", d.Name)
		require.Equal(t, "0", fmt.Sprint(expects(d.Name)["acceptedNotWritten"][3:]))
	}
}

// A kill -9 of the platform while analyzer-2 is in another mode: the mode
// from before was on disk before the change, and the restarted platform
// puts it back.
func TestAnInterruptedExperimentPutsTheDeliveryModesBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		w, _, as := newWorld(analyzerCrash)
		a := &fakeAnalyzers{modes: map[string]string{"analyzer-2": "at-least-once"}}
		var killed string
		checking := &checkingAnalyzers{fakeAnalyzers: a, onSet: func() {
			if killed == "" {
				killed = copyDir(t, dir) // what a kill -9 right after the change leaves
			}
		}}
		m := NewManager(Options{Querier: w, Faults: w, Traffic: trafficWorld{w}, Alerts: as, Delivery: checking, MaxFaultSeconds: 600,
			Logger: slog.New(slog.DiscardHandler), Store: openStore(t, dir)})
		d := crashDefinition()
		d.Delivery = map[string]string{"analyzer-2": "at-most-once"}
		_, err := m.Start(d)
		require.NoError(t, err)
		m.Wait()
		require.NotEmpty(t, killed)

		a.modes["analyzer-2"], a.history = "at-most-once", nil // as the killed platform left it
		m2 := NewManager(Options{Querier: w.clone(), Faults: w, Traffic: trafficWorld{w}, Alerts: alerts.New(10), Delivery: a, MaxFaultSeconds: 600,
			Logger: slog.New(slog.DiscardHandler), Store: openStore(t, killed)})
		m2.Restore()
		m2.Wait()
		list := m2.List()
		require.Len(t, list, 1)
		require.Equal(t, Interrupted, list[0].State)
		require.Contains(t, list[0].Reason, "the analyzers' delivery modes from before restored")
		require.Equal(t, []string{"analyzer-2=at-least-once"}, a.history)
	})
}

type checkingAnalyzers struct {
	*fakeAnalyzers
	onSet func()
}

func (c *checkingAnalyzers) SetDeliveryMode(ctx context.Context, id, mode string) error {
	err := c.fakeAnalyzers.SetDeliveryMode(ctx, id, mode)
	c.onSet()
	return err
}

func (c *checkingAnalyzers) SetProcessingDelay(ctx context.Context, id string, ms float64) error {
	err := c.fakeAnalyzers.SetProcessingDelay(ctx, id, ms)
	c.onSet()
	return err
}

func TestProcessingDelaysAreSetBeforeTheTrafficAndPutBackAtTheEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, _, _ := newWorld(analyzerCrash)
		a := &fakeAnalyzers{modes: map[string]string{"analyzer-1": "at-least-once"}, delays: map[string]float64{"analyzer-1": 0, "analyzer-2": 2}}
		m := ledgerManager(w, nil, a)
		d := crashDefinition()
		d.Delivery = map[string]string{"analyzer-1": "at-most-once"}
		d.ProcessingDelayMs = map[string]float64{"analyzer-2": 10, "analyzer-1": 7.5}
		e, err := m.Start(d)
		require.NoError(t, err)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Passed, e.State, e.Reason)
		require.Equal(t, []string{"analyzer-1=at-most-once", "analyzer-1=7.5ms", "analyzer-2=10ms",
			"analyzer-1=at-least-once", "analyzer-1=0ms", "analyzer-2=2ms"}, a.history)
		var kinds []string
		for _, ev := range e.Timeline {
			kinds = append(kinds, ev.Kind)
		}
		require.Equal(t, []string{"started", "delivery-changed", "processing-changed", "processing-changed", "traffic-started"}, kinds[:5], "before the traffic")
		require.Contains(t, kinds, "processing-restored")
		require.True(t, e.undo.DelayRestored)
		require.Equal(t, map[string]float64{"analyzer-1": 0, "analyzer-2": 2}, e.undo.DelayBefore)
	})
}

// forgetful is an analyzer that comes back from the kill at its
// environment's processing delay (no PROCESSING_STATE_FILE).
type forgetful struct{ *fakeAnalyzers }

func (f forgetful) ProcessingDelay(ctx context.Context, id string) (float64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.history) == 1 { // after the change, before the restore
		return 0, nil
	}
	return f.delays[id], nil
}

func TestAnAnalyzerThatLostItsProcessingDelayFailsTheExperiment(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, _, _ := newWorld(analyzerCrash)
		a := &fakeAnalyzers{delays: map[string]float64{"analyzer-2": 0}}
		m := ledgerManager(w, nil, forgetful{a})
		d := crashDefinition()
		d.ProcessingDelayMs = map[string]float64{"analyzer-2": 10}
		e, _ := m.Start(d)
		m.Wait()
		e, _ = m.Get(e.ID)
		require.Equal(t, Failed, e.State)
		require.Equal(t, "delivery settings did not hold: analyzer-2 ended at 0 ms per packet, not 10 ms per packet", e.Reason)
		require.Equal(t, []string{"analyzer-2=10ms", "analyzer-2=0ms"}, a.history, "put back all the same")
	})
}

func TestProcessingDelaysAreValidatedNamingTheAnalyzer(t *testing.T) {
	d := Definition{Name: "x", ProcessingDelayMs: map[string]float64{"analyzer-1": -1, "analyzer-2": 10001, " ": 5, "analyzer-3": 10000}}
	var ve *apierr.ValidationError
	require.ErrorAs(t, d.Validate(600), &ve)
	problems := map[string]string{}
	for _, p := range ve.Problems {
		problems[p.Field] = p.Problem
	}
	require.Contains(t, problems["processingDelayMs.analyzer-1"], "from 0 to 10000 milliseconds (got -1)")
	require.Contains(t, problems["processingDelayMs.analyzer-2"], "(got 10001)")
	require.Contains(t, problems["processingDelayMs"], "an analyzer id is empty")
	require.NotContains(t, problems, "processingDelayMs.analyzer-3")
}

// A kill -9 of the platform right after it slowed analyzer-2 down: the
// restarted platform puts the delay from before back.
func TestAnInterruptedExperimentPutsTheProcessingDelaysBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		w, _, as := newWorld(analyzerCrash)
		a := &fakeAnalyzers{delays: map[string]float64{"analyzer-2": 1}}
		var killed string
		checking := &checkingAnalyzers{fakeAnalyzers: a, onSet: func() {
			if killed == "" {
				killed = copyDir(t, dir)
			}
		}}
		m := NewManager(Options{Querier: w, Faults: w, Traffic: trafficWorld{w}, Alerts: as, Delivery: checking, MaxFaultSeconds: 600,
			Logger: slog.New(slog.DiscardHandler), Store: openStore(t, dir)})
		d := crashDefinition()
		d.ProcessingDelayMs = map[string]float64{"analyzer-2": 10}
		_, err := m.Start(d)
		require.NoError(t, err)
		m.Wait()
		require.NotEmpty(t, killed)

		a.delays["analyzer-2"], a.history = 10, nil // as the killed platform left it
		m2 := NewManager(Options{Querier: w.clone(), Faults: w, Traffic: trafficWorld{w}, Alerts: alerts.New(10), Delivery: a, MaxFaultSeconds: 600,
			Logger: slog.New(slog.DiscardHandler), Store: openStore(t, killed)})
		m2.Restore()
		m2.Wait()
		list := m2.List()
		require.Len(t, list, 1)
		require.Equal(t, Interrupted, list[0].State)
		require.Contains(t, list[0].Reason, "the analyzers' processing delays from before restored")
		require.Equal(t, []string{"analyzer-2=1ms"}, a.history)
	})
}
