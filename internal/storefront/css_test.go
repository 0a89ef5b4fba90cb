package storefront

import (
	"strings"
	"testing"
)

// TestStylesheetNesting: style.css is written by many hands, each block
// appended with its comment at the left margin. A block's comment found
// inside an unclosed @media means a brace went missing, and every rule
// after it silently applies to one screen size only (this happened: the
// checkout summary lost its layout on phones).
func TestStylesheetNesting(t *testing.T) {
	css, err := staticFS.ReadFile("static/style.css")
	if err != nil {
		t.Fatal(err)
	}
	depth := 0
	for i, line := range strings.Split(string(css), "\n") {
		if depth > 0 && strings.HasPrefix(line, "/*") {
			t.Errorf("style.css:%d: a top-level comment inside an open block (depth %d): a missing }", i+1, depth)
		}
		depth += strings.Count(line, "{") - strings.Count(line, "}")
		if depth < 0 {
			t.Fatalf("style.css:%d: a } closes nothing", i+1)
		}
	}
	if depth != 0 {
		t.Errorf("style.css ends %d blocks deep", depth)
	}
}
