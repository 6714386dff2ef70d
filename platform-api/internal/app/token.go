package app

import (
	"fmt"
	"os"
	"strings"
)

// platformToken is the API's bearer token: PLATFORM_API_TOKEN, or the
// content of the file PLATFORM_API_TOKEN_FILE. The compose stack mounts one
// file, prometheus/alertmanager/platform-api-token, into both the platform and
// Alertmanager, whose webhook sends it (http_config.authorization.
// credentials_file), so one token is written in one place. Read as
// Alertmanager reads it: surrounding white space is not part of it.
//
// When both are set they must agree: a token in the environment that
// Alertmanager does not send would refuse every alert (401), and an
// experiment's time to detect would silently go missing. The platform
// refuses to start instead, saying so.
func platformToken(getenv func(string) string) (string, error) {
	tok := strings.TrimSpace(getenv("PLATFORM_API_TOKEN"))
	path := strings.TrimSpace(getenv("PLATFORM_API_TOKEN_FILE"))
	if path == "" {
		return tok, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("PLATFORM_API_TOKEN_FILE: %w", err)
	}
	fromFile := strings.TrimSpace(string(b))
	if tok != "" && tok != fromFile {
		return "", fmt.Errorf("PLATFORM_API_TOKEN differs from the token in PLATFORM_API_TOKEN_FILE (%s), which Alertmanager sends with every alert: "+
			"write the same token into that file (in the compose stack: prometheus/alertmanager/platform-api-token), or leave PLATFORM_API_TOKEN unset", path)
	}
	return fromFile, nil
}
