//go:build e2e

package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/browsertest"
)

// dsplabBin is the CLI of `make build` (make e2e-images builds it), or
// one built here.
func dsplabBin(t *testing.T) string {
	bin := filepath.Join(root, "bin", "dsplab")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	bin = filepath.Join(t.TempDir(), "dsplab")
	cmd := exec.Command("go", "build", "-o", bin, "./platform-api/cmd/dsplab")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// TestTheCLIRunsBaselineToItsVerdict: `dsplab run baseline --watch`
// against the stack exits 0 with a passed verdict; against a platform
// that is not there it exits 2 naming the URL it tried.
func TestTheCLIRunsBaselineToItsVerdict(t *testing.T) {
	bin := dsplabBin(t)
	waitFor(t, 3*time.Minute, func() bool {
		return promHas(t, "distributor_healthy_analyzers >= 3") && promHas(t, "distributor_health_up == 1")
	}, "three healthy analyzers and a healthy distributor in Prometheus")
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "baseline", "--watch")
	cmd.Env = append(os.Environ(), "DSPLAB_URL="+platformURL)
	out, err := cmd.CombinedOutput()
	os.WriteFile(filepath.Join(artifacts, "dsplab-run-baseline.txt"), out, 0o644)
	require.NoError(t, err, "dsplab run baseline --watch: %s", out)
	require.Contains(t, string(out), "baseline: PASSED")
	require.Contains(t, string(out), "/report.html")

	cmd = exec.Command(bin, "targets")
	cmd.Env = append(os.Environ(), "DSPLAB_URL=http://127.0.0.1:1")
	out, err = cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 2, ee.ExitCode())
	require.Contains(t, string(out), "the platform API at http://127.0.0.1:1 is not answering")
}

// newestRun is the id of the newest passed run of a preset (after
// TestAnalyzerCrashPreset... and TestTheCLI...), or a run made now.
func newestRun(t *testing.T, preset string) string {
	var page struct {
		Experiments []experiment `json:"experiments"`
	}
	call(t, http.MethodGet, "/api/experiments?state=passed&limit=1&preset="+preset, nil, &page)
	if len(page.Experiments) == 1 {
		return page.Experiments[0].ID
	}
	return runPreset(t, preset).ID
}

// TestReportPagesInChromium opens the analyzer-crash run's report.html and
// the comparison of it with the baseline run in headless Chromium: the
// charts were read from the real Prometheus at the end of each run; the
// pages load nothing but themselves and log no error; the screenshots are
// saved in test/e2e/artifacts/ (analyzer-crash-report.png, compare.png).
func TestReportPagesInChromium(t *testing.T) {
	crash, base := newestRun(t, "analyzer-crash"), newestRun(t, "baseline")
	var report struct {
		Charts struct {
			Charts []struct {
				ID     string
				Series []struct {
					Name   string
					Points [][2]float64
				}
			}
		}
	}
	require.Equal(t, http.StatusOK, call(t, http.MethodGet, "/api/experiments/"+crash+"/report", nil, &report))
	series := map[string]int{}
	for _, c := range report.Charts.Charts {
		series[c.ID] = len(c.Series)
	}
	require.GreaterOrEqual(t, series["shares"], 3, "the shares of every analyzer, from the real Prometheus: %v", series)
	require.Positive(t, series["healthy"])
	require.Positive(t, series["latency"])

	ctx, rec := browsertest.Open(t)
	for _, p := range []struct{ path, shot string }{
		{"/api/experiments/" + crash + "/report.html", "analyzer-crash-report.png"},
		{"/api/experiments/compare.html?a=" + crash + "&b=" + base, "compare.png"},
	} {
		rec.ResetRequests()
		tctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		err := chromedp.Do(tctx, chromedp.Navigate(platformURL+p.path), chromedp.WaitVisible(`svg[data-chart="shares"] path.series`))
		require.NoError(t, err, p.path)
		shot, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
		cancel()
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(artifacts, p.shot), shot, 0o644))
		require.Equal(t, []string{platformURL + p.path}, rec.Requests(), "the page loads nothing else")
	}
	require.Empty(t, rec.Problems(), "console errors")
}
