//go:build browser

package experiments

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/browsertest"
)

// TestReportAndComparePagesInChromium opens the synthetic report and the
// comparison of two runs in headless Chromium (Prometheus: the stand-in):
// no console error, no exception, no request but the page's own, and a
// full-page screenshot of each in SCREENSHOT_DIR (default: a temporary
// directory, logged):
// go test -tags browser -run Chromium ./platform-api/internal/experiments/
func TestReportAndComparePagesInChromium(t *testing.T) {
	dir := os.Getenv("SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	a, b := twoRuns(t)
	pages := map[string][]byte{"/report.html": HTML(a, ReportLinks{GrafanaURL: "http://localhost:3000"}), "/compare.html": CompareHTML(a, b)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := pages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(p)
	}))
	defer srv.Close()

	ctx, rec := browsertest.Open(t)
	for _, name := range []string{"report", "compare"} {
		rec.ResetRequests()
		tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := chromedp.Do(tctx, chromedp.Navigate(srv.URL+"/"+name+".html"), chromedp.WaitVisible(`svg[data-chart="latency"]`))
		require.NoError(t, err, name)
		png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
		cancel()
		require.NoError(t, err, name)
		path := filepath.Join(dir, name+".png")
		require.NoError(t, os.WriteFile(path, png, 0o644))
		t.Logf("%s: %s (%d bytes)", name, path, len(png))
		require.Equal(t, []string{srv.URL + "/" + name + ".html"}, rec.Requests(), "the page loads nothing else")
	}
	require.Empty(t, rec.Problems(), "console errors or exceptions")
}
