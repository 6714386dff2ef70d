package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace/noop"

	"github.com/dsplab/dsplab/platform-api/internal/alerts"
	"github.com/dsplab/dsplab/platform-api/internal/traffic"
)

type fakeTraffic struct{}

func (fakeTraffic) Start(_ context.Context, s traffic.Spec) (traffic.Job, error) {
	return traffic.Job{ID: "t-1", TargetURL: s.TargetURL, RPS: s.RPS, Duration: s.Duration, Params: s.Params, State: traffic.StateRunning}, nil
}
func (fakeTraffic) Stop(context.Context, string) (traffic.Job, error) { return traffic.Job{}, nil }
func (fakeTraffic) Get(string) (traffic.Job, error)                   { return traffic.Job{}, nil }
func (fakeTraffic) List() []traffic.Job                               { return nil }

// decoderRoutes are the routes whose handlers decode a JSON body from the
// network: decodeStrict (faults, traffic, experiments), the Alertmanager
// webhook and the distributor overlay's object check.
var decoderRoutes = [][2]string{
	{"POST", "/api/faults"}, {"POST", "/api/traffic/start"}, {"POST", "/api/experiments"},
	{"POST", "/api/alerts/webhook"}, {"PUT", "/api/distributor/config"},
}

// FuzzJSONDecoders sends every input to every decoding route through the
// full router: whatever the body, nothing panics, nothing answers 5xx, and
// every refusal is a JSON {"error": ...}.
func FuzzJSONDecoders(f *testing.F) {
	for _, s := range []string{
		killAnalyzer2, `{"type":"cpu","target":"a","durationSeconds":5,"cpus":1e308}`, `{"type":"pause","durationSeconds":-1e999}`,
		`{"targetUrl":"http://distributor:8080","rps":300,"durationSeconds":60,"params":{"A":"1"}}`, `{"rps":"x"}`,
		`{"preset":"baseline"}`, `{"definition":{"name":"x","faults":[{"atSeconds":1,"fault":{"type":"kill"}}],"checks":[{"query":"up"}]}}`,
		notification, `{"alerts":[{"labels":{"a":"b"},"startsAt":"not a time"}]}`, `{"alerts":null}`,
		`{"limits":{"global":{"rate":100,"burst":100}}}`, `[]`, `null`, `{"a":1}{"b":2}`, "\xff\xfe", `{"type":"pause","type":"kill"}`,
		strings.Repeat(`{"a":`, 10000), `{"durationSeconds":1e400}`, "",
	} {
		f.Add([]byte(s))
	}
	h := NewRouter(Deps{Targets: fakeTargets{}, Faults: &fakeFaults{}, Traffic: fakeTraffic{}, Experiments: &fakeExperiments{}, Alerts: alerts.New(10),
		Distributor: &fakeOverlay{}, MetricsHandler: http.NotFoundHandler(), TracerProvider: noop.NewTracerProvider(), Logger: slog.New(slog.DiscardHandler)})
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, rt := range decoderRoutes {
			w := do(h, rt[0], rt[1], string(body))
			if w.Code >= 500 {
				t.Fatalf("%s %s answered %d: %s", rt[0], rt[1], w.Code, w.Body.String())
			}
			if w.Code >= 400 {
				var e ErrorResponse
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
					t.Fatalf("%s %s answered %d without a JSON error: %q", rt[0], rt[1], w.Code, w.Body.String())
				}
			}
		}
	})
}
