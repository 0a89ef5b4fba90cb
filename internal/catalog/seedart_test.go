package catalog

import (
	"bytes"
	"context"
	"testing"
)

func TestInitials(t *testing.T) {
	for name, want := range map[string]string{
		"Cast Iron Skillet":       "CI",
		"The Art of Slow Cooking": "AS",
		"USB-C Charging Hub":      "UC",
		"Pan":                     "P",
		"Ölkanne aus Zinn":        "AZ", // the basic font has no Ö
		"— !":                     "?",
	} {
		if got := initials(name); got != want {
			t.Errorf("initials(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestDemoDataConsistent(t *testing.T) {
	cats := map[string]bool{}
	for _, c := range demoCategories {
		cats[c.ID] = true
	}
	ids := map[string]bool{}
	for _, p := range demoProducts {
		if !cats[p.category] || ids[p.id] || p.stock < 5 || p.stock > 50 {
			t.Errorf("bad demo product %+v", p)
		}
		ids[p.id] = true
	}
}

func TestRenderDeterministic(t *testing.T) {
	c := demoCategories[0]
	a, err := renderProduct("prd_x", "Teapot", c.palette, c.motif)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := renderProduct("prd_x", "Teapot", c.palette, c.motif)
	if !bytes.Equal(a, b) {
		t.Fatal("the same product drew two different pictures")
	}
}

// BenchmarkRenderDemoImages measures drawing and encoding every demo
// product's picture, as Seed does (in parallel over GOMAXPROCS).
func BenchmarkRenderDemoImages(b *testing.B) {
	cats := map[string]demoCategory{}
	for _, c := range demoCategories {
		cats[c.ID] = c
	}
	for b.Loop() {
		if _, err := renderDemoImages(context.Background(), cats); err != nil {
			b.Fatal(err)
		}
	}
}
