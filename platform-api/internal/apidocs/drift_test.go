package apidocs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The committed spec must be what `make swagger` generates from the swag
// comments today: edit the comments, run `make swagger`, commit both.
func TestCommittedSpecMatchesTheSwagComments(t *testing.T) {
	out := t.TempDir()
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "-s", "swagger", "SWAGGER_OUT="+out)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(root)))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make swagger: %v\n%s", err, b)
	}
	for _, f := range []string{"docs.go", "swagger.json", "swagger.yaml"} {
		want, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date: run `make swagger` and commit the result", f)
		}
	}
}
