package app

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/dsplab/dsplab/internal/ledger"
	"github.com/dsplab/dsplab/internal/telemetry"
)

func env(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
}

func TestConfigRefusesAnUnknownDeliveryModeAndEffectivelyOnceWithoutLedger(t *testing.T) {
	c, err := ConfigFromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, ledger.AtLeastOnce, c.Consumer.Delivery)
	require.Equal(t, "ledger.processed", c.Consumer.LedgerTopic)
	require.Equal(t, 200*time.Millisecond, c.Consumer.CommitInterval)

	c, err = ConfigFromEnv(env(map[string]string{"LEDGER_TOPIC": "", "DELIVERY": "at-most-once"}))
	require.NoError(t, err)
	require.Empty(t, c.Consumer.LedgerTopic, "set and empty: no ledger")

	_, err = ConfigFromEnv(env(map[string]string{"DELIVERY": "exactly-once", "COMMIT_INTERVAL_MS": "1"}))
	require.ErrorContains(t, err, `DELIVERY: delivery mode "exactly-once": must be one of at-most-once, at-least-once, effectively-once`)
	require.ErrorContains(t, err, "COMMIT_INTERVAL_MS", "every problem at once")
	_, err = ConfigFromEnv(env(map[string]string{"DELIVERY": "effectively-once", "LEDGER_TOPIC": ""}))
	require.ErrorContains(t, err, "effectively-once needs the ledger")
}

// The analyzer runs against kfake (a Kafka-protocol stand-in in process).
func TestAdminDeliverySwitchesTheModeIsGuardedAndSurvivesARestartThroughTheStateFile(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	defer c.Close()
	state := filepath.Join(t.TempDir(), "delivery-mode")
	run := func() (string, func()) {
		cfg, err := ConfigFromEnv(env(map[string]string{"KAFKA_BROKERS": c.ListenAddrs()[0], "DELIVERY_STATE_FILE": state, "ADMIN_TOKEN": "s3cret"}))
		require.NoError(t, err)
		tel := &telemetry.Providers{TracerProvider: noop.NewTracerProvider(), MeterProvider: sdkmetric.NewMeterProvider(), MetricsHandler: http.NotFoundHandler()}
		a, err := New(cfg, "127.0.0.1:0", tel, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		return "http://" + a.Addr(), func() { cancel(); require.NoError(t, <-done) }
	}
	url, stop := run()
	do := func(method, path, ct, token, body string) (int, string) {
		req, err := http.NewRequest(method, url+path, strings.NewReader(body))
		require.NoError(t, err)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := do("GET", "/health", "", "", "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"status":"healthy","delivery":"at-least-once"}`, body)

	code, _ = do("PUT", "/admin/delivery", "application/json", "", `{"mode":"at-most-once"}`)
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = do("PUT", "/admin/delivery", "text/plain", "s3cret", `{"mode":"at-most-once"}`)
	require.Equal(t, http.StatusUnsupportedMediaType, code)
	code, body = do("PUT", "/admin/delivery", "application/json", "s3cret", `{"mode":"exactly-once"}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "must be one of")
	code, body = do("PUT", "/admin/delivery", "application/json", "s3cret", `{"mode":"at-most-once","extra":1}`)
	require.Equal(t, http.StatusBadRequest, code, body)

	code, body = do("PUT", "/admin/delivery", "application/json", "s3cret", `{"mode":"effectively-once"}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"previous":"at-least-once"`)
	require.Contains(t, body, `"rebuilt":{`)
	code, body = do("GET", "/admin/delivery", "", "s3cret", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"mode":"effectively-once"`)
	b, err := os.ReadFile(state)
	require.NoError(t, err)
	require.Equal(t, "effectively-once\n", string(b))
	stop()

	url, stop = run() // the same DELIVERY (unset: at-least-once), the state file wins
	defer stop()
	code, body = do("GET", "/health", "", "", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"delivery":"effectively-once"`)
}
