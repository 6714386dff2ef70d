package distributor

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/httpguard"
)

// standIn guards a stand-in of the distributor's /admin/config with the
// same httpguard chain the distributor puts on it (distributor/internal/api
// admin.go; the real binary's refusals are tested in test/integration/
// security_test.go): the client must pass it, token and types included.
func standIn(t *testing.T, token string, overlay *string) *httptest.Server {
	r := chi.NewRouter()
	r.Use(httpguard.NewHosts("ALLOWED_HOSTS", "", "distributor").Check, httpguard.SameOrigin, httpguard.Bearer(token, "distributor", "ADMIN_TOKEN"),
		httpguard.JSONOnly("application/yaml", "application/x-yaml"))
	r.HandleFunc("/admin/config", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.Method {
		case http.MethodPut:
			*overlay = string(b)
		case http.MethodDelete:
			*overlay = ""
		}
		w.Write([]byte(`{"overlay":"` + *overlay + `"}`))
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv
}

func TestTheClientPassesTheDistributorsGuardsWithItsAdminToken(t *testing.T) {
	ctx := context.Background()
	var overlay string
	srv := standIn(t, "adm1n", &overlay)
	c := New(srv.URL, "adm1n")
	require.NoError(t, c.SetOverlay(ctx, []byte(`limits: {global: {rate: 5}}`)))
	got, err := c.Overlay(ctx)
	require.NoError(t, err)
	require.Equal(t, "limits: {global: {rate: 5}}", got)
	require.NoError(t, c.SetOverlay(ctx, nil), "the bodiless DELETE says JSON too")
	require.Empty(t, overlay)

	var e *Error
	require.ErrorAs(t, New(srv.URL, "").SetOverlay(ctx, []byte(`{}`)), &e)
	require.Equal(t, http.StatusUnauthorized, e.Status)
	require.Contains(t, e.Message, "ADMIN_TOKEN")
	require.NoError(t, New(standIn(t, "", &overlay).URL, "").SetOverlay(ctx, nil), "no token on either side")
}
