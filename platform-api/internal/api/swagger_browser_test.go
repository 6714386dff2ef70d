//go:build browser

package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/browsertest"
)

// TestSwaggerUITryItOutInChromium runs Swagger UI in headless Chromium
// against the real router (fakes behind it) on 127.0.0.1:0 and executes a
// bodiless POST (reset) and a POST with the example body (faults): both
// reach their handlers through the guards, and the headers Chromium sent
// are logged (security_test.go's chromiumSameOrigin copies them). The e2e
// suite's "Try it out" test does the same against the whole stack; this
// one needs only Chromium: go test -tags browser -run Chromium ./platform-api/internal/api/
func TestSwaggerUITryItOutInChromium(t *testing.T) {
	bin := browsertest.Chromium(t)
	f := &countingFaults{}
	h := securedRouter(f, "", "")
	var mu sync.Mutex
	seen := map[string]http.Header{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			mu.Lock()
			seen[r.Method+" "+r.URL.Path] = r.Header.Clone()
			mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Headless, chromedp.WindowSize(1280, 2000))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first call starts the browser: no timeout on its context.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/swagger/index.html")))
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	for _, op := range []string{"#operations-faults-post_api_faults_reset", "#operations-faults-post_api_faults"} {
		err := chromedp.Do(tctx,
			chromedp.WaitVisible(op+` .opblock-summary`), chromedp.Click(op+` .opblock-summary`),
			chromedp.WaitVisible(op+` .try-out__btn`), chromedp.Click(op+` .try-out__btn`),
			chromedp.WaitVisible(op+` button.execute`), chromedp.Click(op+` button.execute`),
			chromedp.WaitVisible(op+` .live-responses-table tr.response .response-col_status`),
		)
		require.NoError(t, err, op)
		status, err := chromedp.Run(tctx, chromedp.Text(op+` .live-responses-table tr.response .response-col_status`))
		require.NoError(t, err, op)
		status = strings.TrimSpace(status)
		t.Logf("%s answered %s", op, status)
		require.NotRegexp(t, `^(401|403|415|421)`, status, "refused by a guard")
	}
	require.Equal(t, 1, f.resets, "the bodiless reset reached the handler")
	require.Len(t, f.got, 1, "the fault with Swagger's example body reached the handler")
	mu.Lock()
	defer mu.Unlock()
	for k, hdr := range seen {
		t.Logf("%s: %v", k, hdr)
	}
}
