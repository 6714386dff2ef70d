package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/devstack"
)

// adminCall sends one request to the real distributor binary as a browser
// page or a client would, and returns the status and the error message.
func adminCall(t *testing.T, method, url, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct{ Error string }
	json.Unmarshal(b, &e)
	return resp.StatusCode, e.Error
}

// The attacks of issue 14 §1 against the built distributor binary with
// ADMIN_TOKEN set: a page in the user's browser (text/plain or form POST,
// DNS rebinding, another origin) cannot drain an analyzer, and a client
// without the token cannot either; /debug/pprof/ is off; emitters are not
// affected. On the binary of before, every one of these drains answered
// 200.
func TestTheRealDistributorRefusesWhatAWebPageCouldSendToItsAdminRoutes(t *testing.T) {
	s := devstack.Start(t, bins, devstack.Options{DistributorEnv: []string{"ADMIN_TOKEN=s3cret"}})
	url := s.Distributor.URL()
	drain := url + "/admin/analyzers/analyzer-1/drain"
	auth := []string{"Authorization", "Bearer s3cret"}
	with := func(h ...string) []string { return append(append([]string{}, auth...), h...) }

	for _, tc := range []struct {
		name   string
		header []string
		body   string
		status int
		says   string
	}{
		{"no token", []string{"Content-Type", "application/json"}, "", 401, "Bearer <ADMIN_TOKEN>"},
		{"a wrong token", []string{"Content-Type", "application/json", "Authorization", "Bearer guess"}, "", 401, "ADMIN_TOKEN"},
		{"a text/plain POST", with("Content-Type", "text/plain"), "{}", 415, "send Content-Type: application/json"},
		{"a form POST", with("Content-Type", "application/x-www-form-urlencoded"), "a=b", 415, "send Content-Type: application/json"},
		{"a POST without a body or a type", with(), "", 415, "send Content-Type: application/json"},
		{"a DNS-rebinding page", with("Content-Type", "application/json", "Host", "evil.example:8080"), "", 421, `"evil.example:8080"`},
		{"another origin", with("Content-Type", "application/json", "Origin", "http://evil.example"), "", 403, "evil.example"},
		{"a cross-site page", with("Content-Type", "application/json", "Sec-Fetch-Site", "cross-site"), "", 403, "cross-site"},
	} {
		code, msg := adminCall(t, http.MethodPost, drain, tc.body, tc.header...)
		require.Equal(t, tc.status, code, tc.name)
		require.Contains(t, msg, tc.says, tc.name)
	}
	var an struct {
		Analyzers []struct {
			ID      string `json:"id"`
			Drained bool   `json:"drained"`
		} `json:"analyzers"`
	}
	analyzers := func() {
		req, _ := http.NewRequest(http.MethodGet, url+"/admin/analyzers", nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&an))
	}
	analyzers()
	require.False(t, an.Analyzers[0].Drained, "nothing above drained analyzer-1")

	code, msg := adminCall(t, http.MethodPost, drain, "", with("Content-Type", "application/json", "Host", "distributor:8080")...)
	require.Equal(t, http.StatusOK, code, msg)
	analyzers()
	require.True(t, an.Analyzers[0].Drained, "the compose name, the token and JSON: drained")

	code, _ = adminCall(t, http.MethodGet, url+"/configz", "")
	require.Equal(t, http.StatusUnauthorized, code, "the configuration is not disclosed without the token")
	code, msg = adminCall(t, http.MethodGet, url+"/debug/pprof/", "", auth...)
	require.Equal(t, http.StatusNotFound, code)
	require.Contains(t, msg, "PPROF=true")
	code, _ = postPacket(t, url, "", "emitter-under-any-name", 1, 1)
	require.Equal(t, http.StatusAccepted, code, "ingest needs no token")
	code, _ = adminCall(t, http.MethodPost, url+"/ingest", `{"emitter_id":"e","packet_id":2,"messages":[{"message":"m"}]}`, "Host", "logs.example")
	require.Equal(t, http.StatusAccepted, code, "and takes any Host and Content-Type, as the log-streamer's did")
}
