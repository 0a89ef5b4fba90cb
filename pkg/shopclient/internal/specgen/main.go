// Command specgen writes the storefront API's OpenAPI documents into a
// directory: openapi.json (3.1, as served) and openapi-3.0.json (its
// downgrade, from which the client is generated). It is run by go generate
// in pkg/shopclient.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/globomantics/globomantics/internal/storefront"
)

func main() {
	dir := flag.String("dir", ".", "the directory to write the documents into")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "specgen:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	j, j30, err := storefront.OpenAPIDocuments()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "openapi.json"), j, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "openapi-3.0.json"), j30, 0o644)
}
