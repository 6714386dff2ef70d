//go:build browser

package experiments

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
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
	bin := browsertest.Chromium(t)
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

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Headless, chromedp.WindowSize(1100, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first call starts the browser: no timeout on its context.
	require.NoError(t, chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{})
		return err
	})))
	var mu sync.Mutex
	var problems, requests []string
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
				problems = append(problems, string(e.Type))
			}
		case *runtime.EventExceptionThrown:
			problems = append(problems, e.ExceptionDetails.Text)
		case *log.EventEntryAdded:
			if e.Entry.Level == log.EntryLevelError {
				problems = append(problems, e.Entry.Text)
			}
		case *network.EventRequestWillBeSent:
			requests = append(requests, e.Request.URL)
		}
	}))
	for _, name := range []string{"report", "compare"} {
		mu.Lock()
		requests = nil
		mu.Unlock()
		tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := chromedp.Do(tctx, chromedp.Navigate(srv.URL+"/"+name+".html"), chromedp.WaitVisible(`svg[data-chart="latency"]`))
		require.NoError(t, err, name)
		png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
		cancel()
		require.NoError(t, err, name)
		path := filepath.Join(dir, name+".png")
		require.NoError(t, os.WriteFile(path, png, 0o644))
		t.Logf("%s: %s (%d bytes)", name, path, len(png))
		mu.Lock()
		require.Equal(t, []string{srv.URL + "/" + name + ".html"}, requests, "the page loads nothing else")
		mu.Unlock()
	}
	require.Empty(t, problems, "console errors or exceptions")
}
