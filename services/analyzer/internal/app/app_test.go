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

// startAnalyzer runs an analyzer with these environment variables; the
// function returned stops it.
func startAnalyzer(t *testing.T, vars map[string]string) (string, func()) {
	t.Helper()
	cfg, err := ConfigFromEnv(env(vars))
	require.NoError(t, err)
	tel := &telemetry.Providers{TracerProvider: noop.NewTracerProvider(), MeterProvider: sdkmetric.NewMeterProvider(), MetricsHandler: http.NotFoundHandler()}
	a, err := New(cfg, "127.0.0.1:0", tel, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return "http://" + a.Addr(), func() { cancel(); require.NoError(t, <-done) }
}

// call makes one request to the analyzer at url and gives its status and body.
func call(t *testing.T, url, method, path, ct, token, body string) (int, string) {
	t.Helper()
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

func TestConfigFetchAndLedgerBatching(t *testing.T) {
	c, err := ConfigFromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, 1, c.Consumer.FetchMinBytes, "answer a fetch at once")
	require.Equal(t, 250*time.Millisecond, c.Consumer.FetchMaxWait)
	require.Equal(t, 10*time.Millisecond, c.Consumer.LedgerBatchTimeout)

	c, err = ConfigFromEnv(env(map[string]string{"FETCH_MIN_BYTES": "16384", "FETCH_MAX_WAIT_MS": "100", "LEDGER_BATCH_TIMEOUT_MS": "2"}))
	require.NoError(t, err)
	require.Equal(t, 16384, c.Consumer.FetchMinBytes)
	require.Equal(t, 100*time.Millisecond, c.Consumer.FetchMaxWait)
	require.Equal(t, 2*time.Millisecond, c.Consumer.LedgerBatchTimeout)

	// kafka-go's NewReader panics on min_bytes above max_bytes: refused
	// here, with every problem named.
	_, err = ConfigFromEnv(env(map[string]string{"FETCH_MIN_BYTES": "16777217", "FETCH_MAX_WAIT_MS": "0", "LEDGER_BATCH_TIMEOUT_MS": "x"}))
	require.ErrorContains(t, err, `FETCH_MIN_BYTES="16777217": must be from 1 to 16777216`)
	require.ErrorContains(t, err, `FETCH_MAX_WAIT_MS="0": must be from 1 to 10000`)
	require.ErrorContains(t, err, `LEDGER_BATCH_TIMEOUT_MS="x"`)
}

// The analyzer runs against kfake (a Kafka-protocol stand-in in process).
func TestAdminDeliverySwitchesTheModeIsGuardedAndSurvivesARestartThroughTheStateFile(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	defer c.Close()
	state := filepath.Join(t.TempDir(), "delivery-mode")
	run := func() (string, func()) {
		return startAnalyzer(t, map[string]string{"KAFKA_BROKERS": c.ListenAddrs()[0], "DELIVERY_STATE_FILE": state, "ADMIN_TOKEN": "s3cret"})
	}
	url, stop := run()
	do := func(method, path, ct, token, body string) (int, string) {
		return call(t, url, method, path, ct, token, body)
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

	// A switch that could not be kept for a restart is refused, not half
	// made (seen in a container whose /tmp the analyzer could not write).
	// A non-empty directory where the file should be fails the write, even
	// for root.
	require.NoError(t, os.Remove(state))
	require.NoError(t, os.MkdirAll(filepath.Join(state, "x"), 0o700))
	code, body = do("PUT", "/admin/delivery", "application/json", "s3cret", `{"mode":"at-most-once"}`)
	require.Equal(t, http.StatusInternalServerError, code, body)
	require.Contains(t, body, "the mode stays effectively-once")
	require.Contains(t, body, "cannot keep the delivery mode for a restart")
	code, body = do("GET", "/health", "", "", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"delivery":"effectively-once"`)
}

// PUT /admin/processing sets the per-packet processing delay at run time,
// guarded as /admin/delivery is, refuses what is not a delay with a 400
// naming delay_ms, and keeps the delay for a restart of the process.
func TestAdminProcessingSetsTheDelayIsGuardedAndSurvivesARestart(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	defer c.Close()
	state := filepath.Join(t.TempDir(), "processing-delay")
	run := func() (string, func()) {
		return startAnalyzer(t, map[string]string{"KAFKA_BROKERS": c.ListenAddrs()[0], "PROCESSING_STATE_FILE": state,
			"PROCESSING_DELAY_MS": "2", "ADMIN_TOKEN": "s3cret"})
	}
	url, stop := run()
	do := func(method, path, ct, token, body string) (int, string) {
		return call(t, url, method, path, ct, token, body)
	}
	code, body := do("GET", "/admin/processing", "", "s3cret", "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"delay_ms":2}`, body, "PROCESSING_DELAY_MS at start")

	code, _ = do("PUT", "/admin/processing", "application/json", "", `{"delay_ms":10}`)
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = do("PUT", "/admin/processing", "text/plain", "s3cret", `{"delay_ms":10}`)
	require.Equal(t, http.StatusUnsupportedMediaType, code)
	for _, bad := range []string{`{"delay_ms":-1}`, `{"delay_ms":10001}`, `{}`, `{"delay_ms":"10"}`, `{"delay_ms":10,"extra":1}`, `[`, `{"delay_ms":1e999}`} {
		code, body = do("PUT", "/admin/processing", "application/json", "s3cret", bad)
		require.Equal(t, http.StatusBadRequest, code, bad)
		require.Contains(t, body, "delay_ms", bad)
		require.Contains(t, body, `"error"`, bad)
	}
	code, body = do("PUT", "/admin/processing", "application/json", "s3cret", `{"delay_ms":12.5}`)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"delay_ms":12.5}`, body)
	b, err := os.ReadFile(state)
	require.NoError(t, err)
	require.Equal(t, "12.5\n", string(b))
	stop()

	url, stop = run() // the same PROCESSING_DELAY_MS (2), the state file wins
	code, body = do("GET", "/admin/processing", "", "s3cret", "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"delay_ms":12.5}`, body)

	// A delay that could not be kept for a restart is refused, not half set.
	require.NoError(t, os.Remove(state))
	require.NoError(t, os.MkdirAll(filepath.Join(state, "x"), 0o700))
	code, body = do("PUT", "/admin/processing", "application/json", "s3cret", `{"delay_ms":0}`)
	require.Equal(t, http.StatusInternalServerError, code, body)
	require.Contains(t, body, "the delay stays 12.5ms")
	code, body = do("GET", "/admin/processing", "", "s3cret", "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"delay_ms":12.5}`, body)
	stop()

	// A state file that is not a delay stops the start with its name.
	require.NoError(t, os.RemoveAll(state))
	require.NoError(t, os.WriteFile(state, []byte("fast\n"), 0o600))
	cfg, err := ConfigFromEnv(env(map[string]string{"KAFKA_BROKERS": c.ListenAddrs()[0], "PROCESSING_STATE_FILE": state}))
	require.NoError(t, err)
	tel := &telemetry.Providers{TracerProvider: noop.NewTracerProvider(), MeterProvider: sdkmetric.NewMeterProvider(), MetricsHandler: http.NotFoundHandler()}
	_, err = New(cfg, "127.0.0.1:0", tel, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "PROCESSING_STATE_FILE")
}
