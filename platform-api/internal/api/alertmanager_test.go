package api

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace/noop"
	"go.yaml.in/yaml/v3"

	"github.com/dsplab/dsplab/platform-api/internal/alerts"
)

// alertmanagerBin is the real Alertmanager (ALERTMANAGER_BIN, or Debian's
// prometheus-alertmanager). Missing, the test fails in CI and is skipped
// elsewhere, saying so.
func alertmanagerBin(t *testing.T) string {
	if p := os.Getenv("ALERTMANAGER_BIN"); p != "" {
		return p
	}
	for _, name := range []string{"prometheus-alertmanager", "alertmanager"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no Alertmanager: apt-get install prometheus-alertmanager (or set ALERTMANAGER_BIN)")
	}
	t.Skip("no Alertmanager (apt-get install prometheus-alertmanager); CI runs this test")
	return ""
}

// TestAlertmanagerDeliversAlertsToAPlatformWithAToken runs the real
// Alertmanager with the stack's own prometheus/alertmanager/alertmanager.yml and a
// token in its credentials file, against the platform's router with
// PLATFORM_API_TOKEN set. Only one thing of the file is changed: a
// proxy_url, so the request for http://platform-api:5050 reaches the test
// server with the Host of the compose network. The alert arrives, with the
// token and that Host.
func TestAlertmanagerDeliversAlertsToAPlatformWithAToken(t *testing.T) {
	bin := alertmanagerBin(t)
	store := alerts.New(10)
	h := NewRouter(Deps{Targets: fakeTargets{}, Faults: &fakeFaults{}, Alerts: store, Token: "s3cret",
		MetricsHandler: http.NotFoundHandler(), TracerProvider: noop.NewTracerProvider(), Logger: slog.New(slog.DiscardHandler)})
	var mu sync.Mutex
	var got []string // host, authorization and status of each webhook call
	platform := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		mu.Lock()
		got = append(got, r.Host+" "+r.Header.Get("Authorization")+" "+strconv.Itoa(rec.Code))
		mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	defer platform.Close()

	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "prometheus", "alertmanager", "alertmanager.yml"))
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, yaml.Unmarshal(b, &cfg))
	hook := cfg["receivers"].([]any)[0].(map[string]any)["webhook_configs"].([]any)[0].(map[string]any)
	require.Equal(t, "http://platform-api:5050/api/alerts/webhook", hook["url"])
	hook["http_config"].(map[string]any)["proxy_url"] = platform.URL
	b, err = yaml.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "alertmanager.yml"), b, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "platform-api-token"), []byte("s3cret\n"), 0o644))

	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "--config.file="+filepath.Join(dir, "alertmanager.yml"), "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	defer func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("alertmanager:\n%s", logs.String())
		}
	}()
	am := "http://" + addr
	eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get(am + "/-/ready")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}, "Alertmanager never became ready")
	resp, err := http.Post(am+"/api/v2/alerts", "application/json",
		bytes.NewReader([]byte(`[{"labels":{"alertname":"AnalyzerDown","analyzer":"analyzer-2","severity":"critical"},"annotations":{"summary":"probe"}}]`)))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// group_wait is 5 s in the stack's file.
	eventually(t, 60*time.Second, func() bool { return store.Total() > 0 }, "no alert arrived at the platform")
	require.Equal(t, "analyzer-2", store.Since(time.Time{})[0].Labels["analyzer"])
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, "platform-api:5050 Bearer s3cret 200", got[0])
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// eventually polls cond every 100 ms until it holds or within passes.
func eventually(t *testing.T, within time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
