package shopclient_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/globomantics/globomantics/internal/storefront"
)

// TestGeneratedCodeIsCurrent fails when the committed documents or client
// are not what go generate would make of the API now: run
// "go generate ./pkg/shopclient" after changing the API.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	j, j30, err := storefront.OpenAPIDocuments()
	if err != nil {
		t.Fatal(err)
	}
	stale := false
	for name, want := range map[string][]byte{"openapi.json": j, "openapi-3.0.json": j30} {
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not the API's current document", name)
			stale = true
		}
	}
	if stale {
		t.Fatal(`the API changed: run "go generate ./pkg/shopclient" and commit the result`)
	}

	// The client, regenerated from the committed 3.0 document by the
	// module's pinned oapi-codegen (go generate's second step).
	goCmd, err := exec.LookPath("go") // go test puts GOROOT/bin first in PATH
	if err != nil {
		t.Fatalf("no go command to run oapi-codegen with: %v", err)
	}
	out := filepath.Join(t.TempDir(), "shopclient.gen.go")
	cmd := exec.Command(goCmd, "tool", "oapi-codegen", "-config", "oapi-codegen.yaml", "-o", out, "openapi-3.0.json")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oapi-codegen: %v\n%s", err, msg)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("shopclient.gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal(`shopclient.gen.go is stale: run "go generate ./pkg/shopclient" and commit the result`)
	}
}
