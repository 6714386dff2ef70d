// Package browsertest finds the headless Chromium that the browser and
// e2e tests drive (Debian's chromium package in CI).
package browsertest

import (
	"os"
	"os/exec"
	"testing"
)

// Chromium is $CHROMIUM_BIN or the first of chromium, chromium-browser and
// google-chrome on PATH; without one the test fails (it does not skip).
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM_BIN"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium: apt-get install chromium (or set CHROMIUM_BIN)")
	return ""
}
