package storefront

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestDependencies keeps the storefront a pure consumer of the services'
// contracts: it may import the platform packages and the services' contract
// packages, never a service's store, the app, or a worker.
func TestDependencies(t *testing.T) {
	const mod = "github.com/globomantics/globomantics/internal/"
	allowed := map[string]bool{
		"account": true, "catalog": true, "search": true, "cart": true, "checkout": true,
		"order": true, "payment": true, "shipping": true, "partner": true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range parsed.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			rest, ok := strings.CutPrefix(p, mod)
			if !ok || strings.HasPrefix(rest, "platform/") || allowed[rest] {
				continue
			}
			t.Errorf("%s imports %s: the storefront may only use the services' contracts and the platform", f, p)
		}
	}
}
