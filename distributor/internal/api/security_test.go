package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

// The attacks of issue 14 §1 against the distributor's full router: what a
// page in the user's browser could send to 127.0.0.1:8080, and what it
// must not achieve (nothing drained, reloaded or changed).

func errorMessage(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	require.Equal(t, "application/json", w.Header().Get("Content-Type"))
	var b errorBody
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &b), w.Body.String())
	require.NotEmpty(t, b.Error)
	return b.Error
}

func TestADrainOrReloadThatIsNotJSONIsRefusedAndChangesNothing(t *testing.T) {
	e := newEnv(t, nil)
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		w := e.do("POST", "/admin/analyzers/analyzer-1/drain", nil, "Content-Type", ct)
		require.Equal(t, http.StatusUnsupportedMediaType, w.Code, ct)
		require.Contains(t, errorMessage(t, w), "send Content-Type: application/json")
		require.Equal(t, http.StatusUnsupportedMediaType, e.do("POST", "/reload", nil, "Content-Type", ct).Code, ct)
		require.Equal(t, http.StatusUnsupportedMediaType, e.do("PUT", "/admin/analyzers/analyzer-1/weight", []byte(`{"weight":0}`), "Content-Type", ct).Code, ct)
		require.Equal(t, http.StatusUnsupportedMediaType, e.do("PUT", "/admin/config", []byte(`{"limits":{}}`), "Content-Type", ct).Code, ct)
		require.Equal(t, http.StatusUnsupportedMediaType, e.do("DELETE", "/admin/config", nil, "Content-Type", ct).Code, ct)
	}
	require.False(t, e.a.statuses[0].Drained)
	require.Zero(t, e.a.statuses[0].Weight)
	require.Zero(t, e.reloads)
	require.Nil(t, e.overlay)

	require.Equal(t, http.StatusOK, e.do("POST", "/admin/analyzers/analyzer-1/drain", nil).Code, "as curl -H 'Content-Type: application/json' sends it")
	require.True(t, e.a.statuses[0].Drained)
	w := e.do("PUT", "/admin/config", []byte("limits:\n  global: {rate: 5}\n"), "Content-Type", "application/yaml")
	require.Equal(t, http.StatusOK, w.Code, "the overlay may be sent as YAML too: %s", w.Body.String())
	require.Contains(t, string(e.overlay), "rate: 5")
}

func TestAdminRoutesRefuseARebindingHostButIngestTakesAnyName(t *testing.T) {
	e := newEnv(t, nil)
	for _, r := range [][2]string{{"POST", "/admin/analyzers/analyzer-1/drain"}, {"POST", "/reload"}, {"GET", "/admin/analyzers"}, {"GET", "/configz"}, {"GET", "/admin/config"}} {
		w := e.do(r[0], r[1], nil, "Host", "evil.example:8080")
		require.Equal(t, http.StatusMisdirectedRequest, w.Code, r)
		msg := errorMessage(t, w)
		require.Contains(t, msg, "evil.example:8080")
		require.Contains(t, msg, "ALLOWED_HOSTS")
	}
	require.False(t, e.a.statuses[0].Drained)
	require.Zero(t, e.reloads)
	for _, host := range []string{"distributor:8080", "127.0.0.1:8080", "[::1]:8080", "172.18.0.4:8080"} {
		require.Equal(t, http.StatusOK, e.do("GET", "/admin/analyzers", nil, "Host", host).Code, host)
	}
	require.Equal(t, http.StatusAccepted, e.do("POST", "/ingest", []byte(packet), "Host", "logs.example:8080", "Content-Type", "text/plain").Code, "emitters reach /ingest under any name, as before")

	e = newSecuredEnv(t, nil, Security{AllowedHosts: "lab.example"})
	require.Equal(t, http.StatusOK, e.do("GET", "/admin/analyzers", nil, "Host", "lab.example:8080").Code)
}

func TestPagesOfOtherOriginsCannotDrain(t *testing.T) {
	e := newEnv(t, nil)
	for _, h := range [][]string{
		{"Origin", "http://evil.example"},
		{"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"},
		{"Sec-Fetch-Site", "same-site", "Origin", "http://localhost:3000"}, // Grafana's port
		{"Origin", "null"},
	} {
		w := e.do("POST", "/admin/analyzers/analyzer-1/drain", nil, h...)
		require.Equal(t, http.StatusForbidden, w.Code, h)
		require.Contains(t, errorMessage(t, w), "refused")
	}
	require.False(t, e.a.statuses[0].Drained)
	require.Equal(t, http.StatusOK, e.do("POST", "/admin/analyzers/analyzer-1/drain", nil, "Origin", "http://localhost:8080", "Sec-Fetch-Site", "same-origin").Code)
}

func TestWithAnAdminTokenEveryAdminRouteNeedsIt(t *testing.T) {
	e := newSecuredEnv(t, nil, Security{AdminToken: "s3cret", Pprof: true})
	for _, r := range [][2]string{{"POST", "/admin/analyzers/analyzer-1/drain"}, {"PUT", "/admin/analyzers/analyzer-1/weight"}, {"POST", "/reload"},
		{"GET", "/admin/analyzers"}, {"GET", "/admin/config"}, {"PUT", "/admin/config"}, {"DELETE", "/admin/config"}, {"GET", "/configz"}, {"GET", "/debug/pprof/"}} {
		for _, auth := range []string{"", "Bearer nope"} {
			w := e.do(r[0], r[1], []byte(`{"weight":0.1}`), "Authorization", auth)
			require.Equal(t, http.StatusUnauthorized, w.Code, "%v %q", r, auth)
			require.Equal(t, `Bearer realm="distributor"`, w.Header().Get("WWW-Authenticate"))
			require.Contains(t, errorMessage(t, w), "Authorization: Bearer <ADMIN_TOKEN>")
		}
	}
	require.False(t, e.a.statuses[0].Drained)
	require.Zero(t, e.reloads)
	require.Equal(t, http.StatusOK, e.do("POST", "/admin/analyzers/analyzer-1/drain", nil, "Authorization", "Bearer s3cret").Code)
	require.True(t, e.a.statuses[0].Drained)
	require.Equal(t, http.StatusOK, e.do("GET", "/debug/pprof/", nil, "Authorization", "Bearer s3cret").Code)
	for _, r := range [][2]string{{"POST", "/ingest"}, {"GET", "/health"}, {"GET", "/ready"}, {"GET", "/metrics-json"}} {
		require.Less(t, e.do(r[0], r[1], []byte(packet)).Code, 300, "%v needs no token", r)
	}
}

func TestPprofIsOffUnlessEnabled(t *testing.T) {
	e := newEnv(t, nil)
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/profile?seconds=1", "/debug/pprof/heap", "/debug/vars"} {
		w := e.do("GET", p, nil)
		require.Equal(t, http.StatusNotFound, w.Code, p)
		require.Contains(t, errorMessage(t, w), "PPROF=true")
	}
	e = newSecuredEnv(t, nil, Security{Pprof: true})
	w := e.do("GET", "/debug/pprof/", nil)
	require.Equal(t, http.StatusOK, w.Code)
	require.Contains(t, w.Body.String(), "goroutine")
	require.Equal(t, http.StatusMisdirectedRequest, e.do("GET", "/debug/pprof/", nil, "Host", "evil.example").Code, "a rebinding page cannot read profiles")
}
