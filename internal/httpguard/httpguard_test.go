package httpguard

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// ok is the guarded handler: it says it was reached.
var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })

func serve(h http.Handler, method, host string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/admin/x", nil)
	r.Host = host
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func errorOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	require.Equal(t, "application/json", w.Header().Get("Content-Type"))
	var e struct{ Error string }
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e), w.Body.String())
	require.NotEmpty(t, e.Error)
	return e.Error
}

func TestHostsAllowLoopbackIPsTheServiceNamesAndTheConfiguredList(t *testing.T) {
	h := NewHosts("ALLOWED_HOSTS", " lab.example:8080 , Other.Example. ", "platform-api")
	for _, host := range []string{"localhost", "localhost:5050", "LOCALHOST.", "app.localhost:5050", "127.0.0.1:5050", "[::1]:5050", "[::1]", "::1",
		"172.18.0.5:5050", "platform-api:5050", "platform-api", "lab.example", "lab.example:1", "other.example", ""} {
		require.True(t, h.Allowed(host), host)
	}
	for _, host := range []string{"evil.example", "evil.example:5050", "localhost.evil.example", "platform-api.evil.example", "127.0.0.1.nip.io", "distributor:8080"} {
		require.False(t, h.Allowed(host), host)
	}
	require.True(t, NewHosts("ALLOWED_HOSTS", "a,*", "x").Allowed("evil.example"), "* switches the check off")
}

func TestARebindingHostGets421NamingTheHostAndTheVariable(t *testing.T) {
	h := NewHosts("ALLOWED_HOSTS", "", "distributor").Check(ok)
	w := serve(h, "POST", "evil.example:8080")
	require.Equal(t, http.StatusMisdirectedRequest, w.Code)
	msg := errorOf(t, w)
	require.Contains(t, msg, `"evil.example:8080"`)
	require.Contains(t, msg, "ALLOWED_HOSTS")
	require.Equal(t, http.StatusTeapot, serve(h, "POST", "distributor:8080").Code)
	require.Equal(t, http.StatusMisdirectedRequest, serve(h, "GET", "evil.example").Code, "reads too: a rebinding page could read them")
}

func TestPagesOfOtherSitesAndOriginsCannotChangeAnything(t *testing.T) {
	h := SameOrigin(ok)
	tests := []struct {
		name, method string
		header       []string
		want         int
	}{
		{"curl: neither header", "POST", nil, http.StatusTeapot},
		{"Swagger UI of the service itself (Chromium's headers)", "POST", []string{"Sec-Fetch-Site", "same-origin", "Origin", "http://localhost:5050"}, http.StatusTeapot},
		{"an address typed by the user", "POST", []string{"Sec-Fetch-Site", "none"}, http.StatusTeapot},
		{"the own origin, old browser", "DELETE", []string{"Origin", "http://LOCALHOST:5050"}, http.StatusTeapot},
		{"a cross-site page", "POST", []string{"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"}, http.StatusForbidden},
		{"another port of localhost (same-site)", "PUT", []string{"Sec-Fetch-Site", "same-site", "Origin", "http://localhost:3000"}, http.StatusForbidden},
		{"a foreign Origin without Sec-Fetch-Site", "POST", []string{"Origin", "http://evil.example"}, http.StatusForbidden},
		{"a foreign Origin despite same-origin", "PATCH", []string{"Sec-Fetch-Site", "same-origin", "Origin", "http://evil.example"}, http.StatusForbidden},
		{"another port of the same host", "POST", []string{"Origin", "http://localhost:3000"}, http.StatusForbidden},
		{"an opaque origin", "POST", []string{"Origin", "null"}, http.StatusForbidden},
		{"a file: page", "POST", []string{"Origin", "file://"}, http.StatusForbidden},
		{"a cross-site GET changes nothing", "GET", []string{"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"}, http.StatusTeapot},
		{"a cross-site preflight", "OPTIONS", []string{"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"}, http.StatusTeapot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(h, tt.method, "localhost:5050", tt.header...)
			require.Equal(t, tt.want, w.Code)
			if tt.want == http.StatusForbidden {
				require.Contains(t, errorOf(t, w), "refused")
			}
		})
	}
}

func TestMutatingRequestsMustSayJSONWithOrWithoutABody(t *testing.T) {
	h := JSONOnly()(ok)
	tests := []struct {
		method, ct string
		want       int
	}{
		{"POST", "application/json", http.StatusTeapot},
		{"POST", "application/json; charset=utf-8", http.StatusTeapot},
		{"PUT", "Application/JSON", http.StatusTeapot},
		{"DELETE", "application/json", http.StatusTeapot},
		{"POST", "text/plain", http.StatusUnsupportedMediaType},
		{"POST", "text/plain; charset=utf-8", http.StatusUnsupportedMediaType},
		{"POST", "application/x-www-form-urlencoded", http.StatusUnsupportedMediaType},
		{"POST", "multipart/form-data; boundary=x", http.StatusUnsupportedMediaType},
		{"POST", "", http.StatusUnsupportedMediaType},
		{"DELETE", "", http.StatusUnsupportedMediaType},
		{"PATCH", "application/json-seq", http.StatusUnsupportedMediaType},
		{"POST", "application/yaml", http.StatusUnsupportedMediaType},
		{"POST", ";;", http.StatusUnsupportedMediaType},
		{"GET", "", http.StatusTeapot},
		{"HEAD", "text/plain", http.StatusTeapot},
	}
	for _, tt := range tests {
		w := serve(h, tt.method, "localhost", "Content-Type", tt.ct)
		require.Equal(t, tt.want, w.Code, "%s %q", tt.method, tt.ct)
		if tt.want == http.StatusUnsupportedMediaType {
			require.Contains(t, errorOf(t, w), "send Content-Type: application/json")
		}
	}
	require.Equal(t, http.StatusTeapot, serve(JSONOnly("application/yaml")(ok), "PUT", "localhost", "Content-Type", "application/yaml").Code)
	msg := errorOf(t, serve(h, "POST", "localhost", "Content-Type", "text/plain"))
	require.Equal(t, `POST /admin/x with Content-Type "text/plain" is refused: send Content-Type: application/json (every POST, PUT, PATCH and DELETE, with a body or without, e.g. curl -H 'Content-Type: application/json')`, msg)
}

func TestABearerTokenIsRequiredOnlyWhenConfigured(t *testing.T) {
	require.Equal(t, http.StatusTeapot, serve(Bearer("", "distributor", "ADMIN_TOKEN")(ok), "POST", "localhost").Code)
	h := Bearer("s3cret", "distributor", "ADMIN_TOKEN")(ok)
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong", "Bearer s3cre", "Bearer s3cret2", "Basic czNjcmV0", "s3cret"} {
		w := serve(h, "POST", "localhost", "Authorization", auth)
		require.Equal(t, http.StatusUnauthorized, w.Code, auth)
		require.Equal(t, `Bearer realm="distributor"`, w.Header().Get("WWW-Authenticate"))
		require.Contains(t, errorOf(t, w), "Authorization: Bearer <ADMIN_TOKEN>")
	}
	for _, auth := range []string{"Bearer s3cret", "bearer s3cret", "BEARER  s3cret "} {
		require.Equal(t, http.StatusTeapot, serve(h, "GET", "localhost", "Authorization", auth).Code, auth)
	}
}

func TestRefusalsQuoteWhatTheClientSentSafely(t *testing.T) {
	require.Equal(t, `"a\x22b\x0a"`, quote("a\"b\n"))
	require.Equal(t, `"`+strings.Repeat("x", 100)+`..."`, quote(strings.Repeat("x", 300)))
}

func FuzzHostname(f *testing.F) {
	for _, s := range []string{"localhost:5050", "[::1]:80", "::1", "evil.example.", "", "[", "]:", "a:b:c"} {
		f.Add(s)
	}
	h := NewHosts("ALLOWED_HOSTS", "", "platform-api")
	f.Fuzz(func(t *testing.T, s string) {
		n := hostname(s)
		if n != strings.ToLower(n) {
			t.Fatalf("hostname(%q) = %q is not lower case", s, n)
		}
		if h.Allowed(s) && !(n == "" || n == "localhost" || strings.HasSuffix(n, ".localhost") || n == "platform-api" || net.ParseIP(n) != nil) {
			t.Fatalf("%q allowed as %q", s, n)
		}
	})
}
