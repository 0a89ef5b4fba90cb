package app_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyRules keeps the services apart: a service's store package
// (internal/<svc>/<svc>db) is imported only by its own service's tests and
// by the composition root, and no service imports the front end, the
// workers or the composition root.
func TestDependencyRules(t *testing.T) {
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", "github.com/globomantics/globomantics/...")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		// Without the package list the rules are not checked: that is a
		// failure, not a pass.
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	const mod = "github.com/globomantics/globomantics/"
	dec := json.NewDecoder(strings.NewReader(string(out)))
	services := []string{"account", "catalog", "search", "cart", "payment", "shipping", "order", "checkout"}
	checked := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		checked++
		from := strings.TrimPrefix(p.ImportPath, mod)
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			to := strings.TrimPrefix(imp, mod)
			for _, s := range services {
				store := "internal/" + s + "/" + s + "db"
				// Benchmark programs (bench/) measure stores directly.
				if to == store && from != "internal/app" && !strings.HasPrefix(from, "internal/"+s) && !strings.HasPrefix(from, "bench/") {
					t.Errorf("%s imports %s: only service %s, internal/app and bench/ may use its store", from, to, s)
				}
				if strings.HasPrefix(from, "internal/"+s) {
					for _, banned := range []string{"internal/app", "internal/storefront", "internal/worker/"} {
						if strings.HasPrefix(to, banned) {
							t.Errorf("service package %s imports %s", from, to)
						}
					}
				}
			}
			if strings.HasPrefix(from, "internal/platform/") && !strings.HasPrefix(to, "internal/platform/") {
				t.Errorf("platform package %s imports domain package %s", from, to)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d packages listed", checked)
	}
}
