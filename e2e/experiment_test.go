//go:build e2e

package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type experiment struct {
	ID                   string   `json:"id"`
	State                string   `json:"state"`
	Reason               string   `json:"reason"`
	TimeToDetectSeconds  *float64 `json:"timeToDetectSeconds"`
	DetectedBy           string   `json:"detectedBy"`
	TimeToRecoverSeconds *float64 `json:"timeToRecoverSeconds"`
	Ledger               struct {
		Accepted, Processed, Duplicates, Lost, K6Accepted *float64
	} `json:"ledger"`
}

// TestAnalyzerCrashPresetPassesWithTimeToDetectAndRecover runs the
// analyzer-crash preset (SIGKILL of analyzer-2 under traffic) through the
// API against the real Prometheus, to its verdict and report.
func TestAnalyzerCrashPresetPassesWithTimeToDetectAndRecover(t *testing.T) {
	// Its before-check reads Prometheus: on a stack just started, wait for
	// the first samples as a user would (the preset aborts on "no data").
	waitFor(t, time.Minute, func() bool { return promHas(t, "distributor_healthy_analyzers >= 3") }, "three healthy analyzers in Prometheus")
	var e experiment
	require.Equal(t, http.StatusAccepted, call(t, http.MethodPost, "/api/experiments/presets/analyzer-crash/run", nil, &e))
	waitFor(t, 6*time.Minute, func() bool {
		call(t, http.MethodGet, "/api/experiments/"+e.ID, nil, &e)
		return e.State != "running"
	}, "the experiment ends")
	resp, err := http.Get(platformURL + "/api/experiments/" + e.ID + "/report.md")
	require.NoError(t, err)
	md, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	os.WriteFile(filepath.Join(artifacts, "analyzer-crash-report.md"), md, 0o644)
	require.Equal(t, "passed", e.State, "reason: %s\n%s", e.Reason, md)
	require.NotNil(t, e.TimeToDetectSeconds, "time to detect")
	require.NotNil(t, e.TimeToRecoverSeconds, "time to recover")
	t.Logf("analyzer-crash: passed; time to detect %.1fs (%s), time to recover %.1fs", *e.TimeToDetectSeconds, e.DetectedBy, *e.TimeToRecoverSeconds)
	require.Contains(t, string(md), "PASSED")
	require.Contains(t, string(md), "time to detect")
	require.Contains(t, string(md), "time to recover")
	if l := e.Ledger; l.Accepted != nil && l.Processed != nil {
		// A SIGKILLed analyzer never exports the counts it made after its
		// last export (up to 2 s of its share): lost may show those.
		t.Logf("ledger: accepted %.0f, processed %.0f, duplicates %v, lost %v", *l.Accepted, *l.Processed, deref(l.Duplicates), deref(l.Lost))
	}
}

func deref(p *float64) any {
	if p == nil {
		return "n/a"
	}
	return *p
}
