package devstack

import (
	"os"
	"os/exec"
	"testing"
)

// Command is the path of a program a test runs for real (Debian's
// prometheus, promtool...): without it the test fails under CI (CI=true
// installs it, so its absence is a broken set-up, not a pass) and is
// skipped elsewhere, saying which package to install.
func Command(t testing.TB, name, debianPackage string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err == nil {
		return bin
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is needed (apt-get install %s)", name, debianPackage)
	}
	t.Skipf("%s not installed (apt-get install %s); CI runs this test", name, debianPackage)
	return ""
}
