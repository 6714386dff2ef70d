package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/platform-api/internal/distributor"
)

// The routes are tested against a stand-in of the distributor's admin API
// (httptest); the real distributor's overlay is tested in test/integration/
// (TestConfigOverlay...) and through these routes by the e2e presets.
func TestDistributorConfigRoutesProxyTheOverlay(t *testing.T) {
	overlay := ""
	dist := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/admin/config", r.URL.Path)
		b, _ := io.ReadAll(r.Body)
		switch r.Method {
		case http.MethodPut:
			if string(b) == `{"limits":{"global":{"rate":-1}}}` {
				w.WriteHeader(http.StatusBadRequest)
				w.Write([]byte(`{"error":"overlay rejected, previous configuration kept: limits.global.rate: must not be negative"}`))
				return
			}
			overlay = string(b)
		case http.MethodDelete:
			overlay = ""
		}
		w.Write([]byte(`{"overlay":` + jsonString(overlay) + `}`))
	}))
	defer dist.Close()
	h := NewRouter(Deps{Targets: fakeTargets{}, Faults: &fakeFaults{}, Distributor: distributor.New(dist.URL, ""), MetricsHandler: http.NotFoundHandler()})

	w := do(h, http.MethodPut, "/api/distributor/config", `{"limits":{"global":{"rate":100,"burst":100}}}`)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.Contains(t, w.Body.String(), `"overlay":"{\"limits\":{\"global\":{\"rate\":100,\"burst\":100}}}"`)

	w = do(h, http.MethodPut, "/api/distributor/config", `{"limits":{"global":{"rate":-1}}}`)
	require.Equal(t, http.StatusBadRequest, w.Code)
	require.Contains(t, w.Body.String(), "limits.global.rate: must not be negative", "the distributor's reasons are passed on")

	for _, body := range []string{``, `[1,2]`, `{}`, `{"limits":`} {
		w = do(h, http.MethodPut, "/api/distributor/config", body)
		require.Equal(t, http.StatusBadRequest, w.Code, body)
		require.Contains(t, w.Body.String(), "JSON object", body)
	}
	require.Contains(t, do(h, http.MethodGet, "/api/distributor/config", "").Body.String(), "rate\\\":100", "refusals changed nothing")

	w = do(h, http.MethodDelete, "/api/distributor/config", "")
	require.Equal(t, http.StatusOK, w.Code)
	require.Contains(t, w.Body.String(), `"overlay":""`)

	dist.Close()
	w = do(h, http.MethodGet, "/api/distributor/config", "")
	require.Equal(t, http.StatusBadGateway, w.Code, "an unreachable distributor is a 502, not a 500")
	require.Contains(t, w.Body.String(), "error")
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
