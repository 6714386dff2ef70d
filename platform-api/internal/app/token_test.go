package app

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// No Docker here: how the token and the other guards' settings are read.
func TestTheTokenComesFromTheEnvironmentOrTheFileAlertmanagerReadsAndBothMustAgree(t *testing.T) {
	file := filepath.Join(t.TempDir(), "platform-api-token")
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

	c, err := ConfigFromEnv(env(map[string]string{"PLATFORM_API_TOKEN": "s3cret", "ALLOWED_HOSTS": "lab.example", "DISTRIBUTOR_ADMIN_TOKEN": "adm"}))
	require.NoError(t, err)
	require.Equal(t, "s3cret", c.Token)
	require.Equal(t, "lab.example", c.AllowedHosts)
	require.Equal(t, "adm", c.DistributorToken)

	require.NoError(t, os.WriteFile(file, nil, 0o644))
	c, err = ConfigFromEnv(env(map[string]string{"PLATFORM_API_TOKEN_FILE": file}))
	require.NoError(t, err)
	require.Empty(t, c.Token, "the stack's empty file: no token, as before")

	require.NoError(t, os.WriteFile(file, []byte("s3cret\n"), 0o644))
	for _, kv := range []map[string]string{{"PLATFORM_API_TOKEN_FILE": file}, {"PLATFORM_API_TOKEN_FILE": file, "PLATFORM_API_TOKEN": "s3cret"}} {
		c, err = ConfigFromEnv(env(kv))
		require.NoError(t, err)
		require.Equal(t, "s3cret", c.Token, "read as Alertmanager reads it, without the newline")
	}

	_, err = ConfigFromEnv(env(map[string]string{"PLATFORM_API_TOKEN_FILE": file, "PLATFORM_API_TOKEN": "other"}))
	require.ErrorContains(t, err, "Alertmanager sends with every alert")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	_, err = ConfigFromEnv(env(map[string]string{"PLATFORM_API_TOKEN_FILE": file, "PLATFORM_API_TOKEN": "s3cret"}))
	require.ErrorContains(t, err, "prometheus/alertmanager/platform-api-token", "a token only in the environment would refuse every alert")
	_, err = ConfigFromEnv(env(map[string]string{"PLATFORM_API_TOKEN_FILE": filepath.Join(t.TempDir(), "missing")}))
	require.ErrorContains(t, err, "PLATFORM_API_TOKEN_FILE")
}
