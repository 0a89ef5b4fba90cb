package search

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenIndexRefusesOtherLayout checks that an index built with another
// mapping is not silently searched with the wrong analyzers.
func TestOpenIndexRefusesOtherLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "search.bleve")
	idx, err := OpenIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := idx.bi.SetInternal(mappingVersionKey, []byte("globo-search-v0")); err != nil {
		t.Fatal(err)
	}
	if err := idx.Close(); err != nil {
		t.Fatal(err)
	}
	if idx, err := OpenIndex(dir); err == nil || !strings.Contains(err.Error(), "layout") {
		if idx != nil {
			idx.Close()
		}
		t.Fatalf("OpenIndex of an index with another layout: err = %v, want a layout error", err)
	}
}
