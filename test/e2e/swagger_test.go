//go:build e2e

package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/browsertest"
)

// chromium finds Debian's Chromium (CHROMIUM_BIN overrides).
func chromium(t *testing.T) string { return browsertest.Chromium(t) }

// TestSwaggerUIStartsTrafficWithTryItOut is a user's first click: Swagger
// UI in headless Chromium, POST /api/traffic/start expanded, "Try it out",
// "Execute" with the example body, a 2xx in the live response. The
// screenshot is saved in test/e2e/artifacts/.
func TestSwaggerUIStartsTrafficWithTryItOut(t *testing.T) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)), chromedp.NoSandbox, chromedp.Headless, chromedp.WindowSize(1280, 2000))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first call starts the browser: no timeout on its context.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(platformURL+"/swagger/index.html")))
	tctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	const op = `#operations-traffic-post_api_traffic_start`
	err := chromedp.Do(tctx,
		chromedp.WaitVisible(op+` .opblock-summary`),
		chromedp.Click(op+` .opblock-summary`),
		chromedp.WaitVisible(op+` .try-out__btn`),
		chromedp.Click(op+` .try-out__btn`),
		chromedp.WaitVisible(op+` button.execute`),
		chromedp.Click(op+` button.execute`),
		chromedp.WaitVisible(op+` .live-responses-table tr.response .response-col_status`),
	)
	var status string
	if err == nil {
		status, err = chromedp.Run(tctx, chromedp.Text(op+` .live-responses-table tr.response .response-col_status`))
	}
	if shot, serr := chromedp.Run(tctx, chromedp.FullScreenshot(100)); serr == nil {
		os.WriteFile(filepath.Join(artifacts, "swagger-traffic-start.png"), shot, 0o644)
	}
	require.NoError(t, err)
	status = strings.TrimSpace(status)
	t.Logf("Swagger UI: POST /api/traffic/start answered %s", status)
	require.Regexp(t, `^2\d\d`, status)

	// The job it started is real; stop it so teardown has less to do.
	var jobs struct{ Jobs []job }
	call(t, http.MethodGet, "/api/traffic", nil, &jobs)
	for _, j := range jobs.Jobs {
		if j.State == "running" {
			call(t, http.MethodPost, "/api/traffic/"+j.ID+"/stop", nil, nil)
		}
	}
}
