package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/dsplab/dsplab/platform-api/internal/alerts"
	"github.com/dsplab/dsplab/platform-api/internal/faults"
)

// The attacks of issue 14 §1 against the platform's full router: what a
// page in the user's browser could send to 127.0.0.1:5050, and what it
// must not achieve (no fault created, stopped or reset).

// countingFaults records every call that would act on a container.
type countingFaults struct {
	fakeFaults
	resets, stops int
}

func (f *countingFaults) Reset(ctx context.Context) ([]faults.Fault, error) {
	f.resets++
	return f.fakeFaults.Reset(ctx)
}

func (f *countingFaults) StopFault(ctx context.Context, id string) (faults.Fault, error) {
	f.stops++
	return f.fakeFaults.StopFault(ctx, id)
}

// fakeOverlay is the distributor's overlay, in memory.
type fakeOverlay struct{ overlay string }

func (f *fakeOverlay) URL() string                             { return "http://distributor:8080" }
func (f *fakeOverlay) Overlay(context.Context) (string, error) { return f.overlay, nil }
func (f *fakeOverlay) SetOverlay(_ context.Context, b []byte) error {
	f.overlay = string(b)
	return nil
}

func securedRouter(f *countingFaults, token, allowedHosts string) http.Handler {
	return NewRouter(Deps{Targets: fakeTargets{}, Faults: f, Alerts: alerts.New(10), Distributor: &fakeOverlay{}, Token: token, AllowedHosts: allowedHosts,
		MetricsHandler: http.NotFoundHandler(), TracerProvider: noop.NewTracerProvider(), Logger: slog.New(slog.DiscardHandler)})
}

func errorText(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	require.Equal(t, "application/json", w.Header().Get("Content-Type"))
	var e ErrorResponse
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e), w.Body.String())
	require.NotEmpty(t, e.Error)
	return e.Error
}

const killAnalyzer2 = `{"type":"kill","target":"analyzer-2","durationSeconds":60}`

// The first probe: curl -XPOST :5050/api/faults -H 'Content-Type:
// text/plain' -d '{"type":"kill",...}' answered 201. A page may send that
// (and a form) cross-site without a preflight.
func TestAFaultPostedAsTextOrAFormIsRefusedAndNoFaultIsCreated(t *testing.T) {
	f := &countingFaults{}
	h := securedRouter(f, "", "")
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=----x", ""} {
		w := do(h, "POST", "/api/faults", killAnalyzer2, "Content-Type", ct)
		require.Equal(t, http.StatusUnsupportedMediaType, w.Code, ct)
		require.Contains(t, errorText(t, w), "send Content-Type: application/json", ct)
	}
	for _, path := range []string{"/api/faults/reset", "/api/faults/f-1/stop", "/api/traffic/start", "/api/experiments", "/api/alerts/webhook"} {
		require.Equal(t, http.StatusUnsupportedMediaType, do(h, "POST", path, "", "Content-Type", "text/plain").Code, path)
	}
	require.Equal(t, http.StatusUnsupportedMediaType, do(h, "DELETE", "/api/faults/f-1", "", "Content-Type", "").Code)
	require.Equal(t, http.StatusUnsupportedMediaType, do(h, "PUT", "/api/distributor/config", `{"limits":{}}`, "Content-Type", "text/plain").Code)
	require.Empty(t, f.got, "no fault was started")
	require.Zero(t, f.resets+f.stops)

	require.Equal(t, http.StatusCreated, do(h, "POST", "/api/faults", killAnalyzer2).Code, "the same body as JSON")
	require.Equal(t, http.StatusOK, do(h, "POST", "/api/faults/reset", "").Code, "a bodiless POST that says JSON")
}

// A DNS-rebinding page (evil.example resolving to 127.0.0.1) is same-origin
// with the platform: its requests carry every header a good client sends,
// except the Host.
func TestADNSRebindingPageGets421AndChangesNothing(t *testing.T) {
	f := &countingFaults{}
	h := securedRouter(f, "", "")
	rebound := []string{"Host", "evil.example:5050", "Origin", "http://evil.example:5050", "Sec-Fetch-Site", "same-origin"}
	w := do(h, "POST", "/api/faults", killAnalyzer2, rebound...)
	require.Equal(t, http.StatusMisdirectedRequest, w.Code)
	msg := errorText(t, w)
	require.Contains(t, msg, `"evil.example:5050"`)
	require.Contains(t, msg, "ALLOWED_HOSTS")
	for _, path := range []string{"/api/targets", "/api/faults", "/api/distributor/config", "/swagger/doc.json", "/metrics"} {
		require.Equal(t, http.StatusMisdirectedRequest, do(h, "GET", path, "", rebound...).Code, "%s cannot be read by the page either", path)
	}
	require.Empty(t, f.got)
	require.Equal(t, http.StatusOK, do(h, "GET", "/health", "", rebound...).Code, "probes may use any name")

	for _, host := range []string{"localhost:5050", "127.0.0.1:5050", "[::1]:5050", "platform-api:5050"} {
		require.Equal(t, http.StatusOK, do(h, "GET", "/api/targets", "", "Host", host).Code, host)
	}
	require.Equal(t, http.StatusOK, do(securedRouter(f, "", "lab.example, other.example"), "GET", "/api/targets", "", "Host", "lab.example:5050").Code)
}

func TestPagesOfOtherOriginsAreRefused403(t *testing.T) {
	f := &countingFaults{}
	h := securedRouter(f, "", "")
	for _, hdr := range [][]string{
		{"Origin", "http://evil.example"},
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"},
		{"Sec-Fetch-Site", "same-site", "Origin", "http://localhost:3000"}, // a Grafana panel's link or script
		{"Origin", "null"},
	} {
		w := do(h, "POST", "/api/faults", killAnalyzer2, hdr...)
		require.Equal(t, http.StatusForbidden, w.Code, hdr)
		require.Contains(t, errorText(t, w), "refused", hdr)
		require.Equal(t, http.StatusForbidden, do(h, "POST", "/api/faults/reset", "", hdr...).Code, hdr)
	}
	require.Empty(t, f.got)
	require.Zero(t, f.resets)
}

// chromiumSameOrigin are the headers headless Chromium 156 sent with
// Swagger UI's "Try it out" of POST /api/faults/reset on
// http://127.0.0.1:<port>/swagger/index.html, as TestSwaggerUITryItOutInChromium
// (swagger_browser_test.go, make test-browser) logged them; the
// Content-Type is the one the page's request interceptor adds.
var chromiumSameOrigin = []string{
	"Host", "127.0.0.1:5050",
	"Origin", "http://127.0.0.1:5050",
	"Referer", "http://127.0.0.1:5050/swagger/index.html",
	"Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "cors", "Sec-Fetch-Dest", "empty",
	"Sec-Ch-Ua", `"Not:A-Brand";v="8", "Chromium";v="156"`, "Sec-Ch-Ua-Mobile", "?0", "Sec-Ch-Ua-Platform", `"Linux"`,
	"Accept", "application/json", "Accept-Language", "en-US,en;q=0.9", "Accept-Encoding", "gzip, deflate, br, zstd",
	"Content-Type", "application/json",
	"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36",
}

func TestSwaggerUIsSameOriginTryItOutPasses(t *testing.T) {
	f := &countingFaults{}
	h := securedRouter(f, "", "")
	w := do(h, "POST", "/api/faults", killAnalyzer2, chromiumSameOrigin...)
	require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
	require.Len(t, f.got, 1)
	require.Equal(t, http.StatusOK, do(h, "POST", "/api/faults/reset", "", chromiumSameOrigin...).Code, "with the Content-Type the page's interceptor adds")
	require.Equal(t, 1, f.resets)
	localhost := append(append([]string{}, chromiumSameOrigin...), "Host", "localhost:5050", "Origin", "http://localhost:5050")
	require.Equal(t, http.StatusCreated, do(h, "POST", "/api/faults", killAnalyzer2, localhost...).Code, "opened as localhost")

	page := do(h, "GET", "/swagger/index.html", "")
	require.Equal(t, http.StatusOK, page.Code)
	require.Contains(t, page.Body.String(), "requestInterceptor: (req) =>", "Swagger UI adds Content-Type to bodiless writes")
}

func TestWithATokenWritesAndReadsThatDiscloseConfigurationNeedIt(t *testing.T) {
	f := &countingFaults{}
	h := securedRouter(f, "s3cret", "")
	for _, r := range [][2]string{{"POST", "/api/faults"}, {"POST", "/api/faults/reset"}, {"DELETE", "/api/faults/f-1"}, {"POST", "/api/alerts/webhook"},
		{"GET", "/api/targets"}, {"GET", "/api/alerts"}, {"GET", "/api/distributor/config"}, {"PUT", "/api/distributor/config"}} {
		for _, auth := range []string{"", "Bearer wrong"} {
			w := do(h, r[0], r[1], killAnalyzer2, "Authorization", auth)
			require.Equal(t, http.StatusUnauthorized, w.Code, "%v %q", r, auth)
			require.Equal(t, `Bearer realm="dsplab"`, w.Header().Get("WWW-Authenticate"))
			require.Contains(t, errorText(t, w), "Authorization: Bearer <PLATFORM_API_TOKEN>")
		}
		require.NotEqual(t, http.StatusUnauthorized, do(h, r[0], r[1], killAnalyzer2, "Authorization", "Bearer s3cret").Code, r)
	}
	for _, path := range []string{"/api/faults", "/api/faults/f-1", "/api/status", "/health", "/swagger/index.html"} {
		require.NotEqual(t, http.StatusUnauthorized, do(h, "GET", path, "").Code, "%s stays open: anyone at the machine can watch", path)
	}
}

// Alertmanager's webhook as it arrives from the compose network: Host
// platform-api:5050, JSON, and the Authorization its credentials_file
// gives — "Bearer " and nothing when the stack's file is empty.
func TestAlertmanagersWebhookArrivesWithAndWithoutAToken(t *testing.T) {
	am := []string{"Host", "platform-api:5050", "User-Agent", "Alertmanager/0.28.1", "Content-Type", "application/json"}
	require.Equal(t, http.StatusOK, do(securedRouter(&countingFaults{}, "", ""), "POST", "/api/alerts/webhook", notification, append(am, "Authorization", "Bearer ")...).Code)
	h := securedRouter(&countingFaults{}, "s3cret", "")
	require.Equal(t, http.StatusUnauthorized, do(h, "POST", "/api/alerts/webhook", notification, append(am, "Authorization", "Bearer ")...).Code)
	require.Equal(t, http.StatusOK, do(h, "POST", "/api/alerts/webhook", notification, append(am, "Authorization", "Bearer s3cret")...).Code)
}
