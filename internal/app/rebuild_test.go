package app_test

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestSearchIndexRebuiltFromCatalog loses both the search index and the
// broker's stored events, as a new search instance joining after the
// events' retention would, and finds the catalog searchable again.
func TestSearchIndexRebuiltFromCatalog(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end suite skipped in -short mode")
	}
	tp := allInOne(t)
	tp.start(t)
	c := newClient(t, tp)
	var pg struct {
		Items []product `json:"items"`
	}
	c.must(200, "GET", "/api/v1/products?page_size=1", nil).decode(t, &pg)
	target := pg.Items[0]
	word := ""
	for _, w := range strings.Fields(target.Name) {
		if len(w) > len(word) {
			word = w
		}
	}
	find := func() error {
		var res struct {
			Items []product `json:"items"`
		}
		c.must(200, "GET", "/api/v1/search?q="+url.QueryEscape(word), nil).decode(t, &res)
		for _, p := range res.Items {
			if p.ID == target.ID {
				return nil
			}
		}
		return fmt.Errorf("%s not found", target.ID)
	}
	testenv.CheckFor(t, 30*time.Second, find)

	tp.stop(t)
	dataDir := tp.procs[0].args[1]
	for _, d := range []string{"search.bleve", "nats"} {
		if err := os.RemoveAll(filepath.Join(dataDir, d)); err != nil {
			t.Fatal(err)
		}
	}
	tp.start(t)
	testenv.CheckFor(t, 30*time.Second, find)
}
