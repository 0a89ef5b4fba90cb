package catalog_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"image"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/catalog/catalogdb"
	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func allProducts(t *testing.T, api catalog.API) []catalog.Product {
	t.Helper()
	var out []catalog.Product
	f := catalog.ProductFilter{Page: page.Request{Size: page.MaxSize}}
	for {
		pg, err := api.ListProducts(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pg.Items...)
		if pg.NextPageToken == "" {
			return out
		}
		f.Page.Token = pg.NextPageToken
	}
}

func TestSeed(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, false, false)
	// newEnv made two categories; seeding renames "home" and adds the rest.
	n, err := catalog.Seed(ctx, e.svc)
	if err != nil {
		t.Fatal(err)
	}
	if n < 24 {
		t.Fatalf("Seed created %d products, want at least 24", n)
	}
	cats, err := e.svc.ListCategories(ctx)
	if err != nil {
		t.Fatal(err)
	}
	catIDs := map[string]bool{}
	for _, c := range cats {
		catIDs[c.ID] = true
	}
	for _, id := range []string{"home", "outdoors", "electronics", "books"} {
		if !catIDs[id] {
			t.Errorf("category %q missing from %v", id, cats)
		}
	}

	products := allProducts(t, e.svc)
	if len(products) != n {
		t.Fatalf("%d products listed, Seed reported %d", len(products), n)
	}
	perCat := map[string]int{}
	names := map[string]bool{}
	hashes := map[[32]byte]string{}
	for _, p := range products {
		perCat[p.Category]++
		if names[p.Name] {
			t.Errorf("duplicate name %q", p.Name)
		}
		names[p.Name] = true
		if p.Stock < 5 || p.Stock > 50 || p.Price.Amount <= 0 || len(strings.Fields(p.Description)) < 8 {
			t.Errorf("implausible product %+v", p)
		}
		key := strings.TrimPrefix(p.ImageURL, catalog.MediaPrefix)
		if !strings.HasPrefix(key, "products/"+p.ID+"/original-") || !strings.HasSuffix(key, ".jpg") {
			t.Errorf("%s: image key %q", p.Name, key)
		}
		obj, _, err := e.blobs.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want := catalog.OriginalKey(p.ID, "jpg", raw); key != want {
			t.Errorf("%s: image key %q does not carry its content's hash; want %q", p.Name, key, want)
		}
		img, format, err := image.Decode(bytes.NewReader(raw))
		if err != nil || format != "jpeg" || img.Bounds() != image.Rect(0, 0, 800, 600) {
			t.Fatalf("%s: image %v %q %v, want an 800x600 JPEG", p.Name, err, format, img.Bounds())
		}
		// Distinct pictures: hash the decoded pixels of the middle band.
		h := sha256.New()
		for y := 100; y < 500; y += 7 {
			for x := 0; x < 800; x += 3 {
				r, g, b, _ := img.At(x, y).RGBA()
				h.Write([]byte{byte(r >> 8), byte(g >> 8), byte(b >> 8)})
			}
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		if other, dup := hashes[sum]; dup {
			t.Errorf("%s has the same picture as %s", p.Name, other)
		}
		hashes[sum] = p.Name
	}
	for id := range catIDs {
		if perCat[id] < 6 {
			t.Errorf("category %s has %d products, want at least 6", id, perCat[id])
		}
	}
	// Every product went through the ListItem path: one ItemListed each.
	if got := e.outboxCount(t); got != n {
		t.Fatalf("%d ItemListed events in the outbox, want %d", got, n)
	}

	// Search-friendly: a word from a description finds its way into the data.
	found := false
	for _, p := range products {
		if strings.Contains(strings.ToLower(p.Name+" "+p.Description), "lamp") {
			found = true
		}
	}
	if !found {
		t.Error("no product mentions a lamp")
	}

	// Seeding again does nothing.
	n2, err := catalog.Seed(ctx, e.svc)
	if err != nil || n2 != 0 {
		t.Fatalf("second Seed = %d, %v; want 0", n2, err)
	}
	if got := len(allProducts(t, e.svc)); got != n {
		t.Fatalf("second Seed changed the product count to %d", got)
	}
}

func TestSeedLeavesNonEmptyCatalogAlone(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, false, false)
	e.list(t, newItem(t, "Own Product", "home", 3))
	n, err := catalog.Seed(ctx, e.svc)
	if err != nil || n != 0 {
		t.Fatalf("Seed = %d, %v; want 0", n, err)
	}
	cats, _ := e.svc.ListCategories(ctx)
	if len(cats) != 2 || len(allProducts(t, e.svc)) != 1 {
		t.Fatalf("Seed changed a non-empty catalog: %v", cats)
	}
}

// TestSeedConcurrent starts two "processes" (separate connection pools and
// services over one database) seeding at once: each product is made once.
func TestSeedConcurrent(t *testing.T) {
	for _, be := range []struct {
		name string
		dsn  func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "catalog.db") }},
		{"postgres", func(t *testing.T) string { return testenv.PostgresDSN(t) }},
	} {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := be.dsn(t)
			blobs, err := blob.NewFS(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			var (
				svcs [2]*catalog.Service
				dbs  [2]*sqldb.DB
			)
			for i := range svcs {
				db, err := sqldb.Open(ctx, dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				store, err := catalogdb.Open(ctx, db)
				if err != nil {
					t.Fatal(err)
				}
				dbs[i] = db
				svcs[i] = catalog.NewService(store, blobs, nil, clock.Real{})
			}
			var (
				wg     sync.WaitGroup
				counts [2]int
				errs   [2]error
			)
			for i := range svcs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					counts[i], errs[i] = catalog.Seed(ctx, svcs[i])
				}()
			}
			wg.Wait()
			if errs[0] != nil || errs[1] != nil {
				t.Fatalf("Seed errors: %v, %v", errs[0], errs[1])
			}
			products := allProducts(t, svcs[0])
			if counts[0]+counts[1] != len(products) || len(products) < 24 {
				t.Fatalf("Seeds created %d + %d products, catalog has %d", counts[0], counts[1], len(products))
			}
			var events int
			if err := dbs[0].QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox`).Scan(&events); err != nil {
				t.Fatal(err)
			}
			if events != 2*len(products) { // ItemListed and the thumbnail job of each
				t.Fatalf("%d events and jobs for %d products, want two each", events, len(products))
			}
		})
	}
}
