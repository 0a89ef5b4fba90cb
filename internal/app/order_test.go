package app_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/app"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// permutations returns every order of list.
func permutations(list []string) [][]string {
	if len(list) <= 1 {
		return [][]string{slices.Clone(list)}
	}
	var out [][]string
	for i := range list {
		rest := slices.Concat(list[:i], list[i+1:])
		for _, p := range permutations(rest) {
			out = append(out, append([]string{list[i]}, p...))
		}
	}
	return out
}

// TestAnyServiceOrderStarts starts the shop with subsets of the services
// named in every order (or, for the storefront and all it needs, in a few
// shuffled ones) and checks that each start works: the services run, the
// catalog answers, a cart write succeeds, a search finds a product.
// Subsets missing a dependency are refused with a message naming it.
func TestAnyServiceOrderStarts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the shop dozens of times; skipped in -short mode")
	}
	var orders [][]string
	for _, set := range [][]string{
		{"search", "catalog"},
		{"cart", "catalog"},
		{"catalog", "cart", "search", "thumbnails"},
	} {
		orders = append(orders, permutations(set)...)
	}
	front := []string{"storefront", "checkout", "search", "cart", "order", "catalog", "account", "payment", "shipping"}
	orders = append(orders, front) // dependant first, dependencies last
	rng := rand.New(rand.NewPCG(1, 2))
	for range 3 {
		o := slices.Clone(front)
		rng.Shuffle(len(o), func(i, j int) { o[i], o[j] = o[j], o[i] })
		orders = append(orders, o)
	}
	// The demo catalog is seeded (and its pictures drawn) once; each start
	// gets a copy of that catalog database and blob store, and builds the
	// rest (search index, broker, other databases) afresh.
	template := t.TempDir()
	startIn(t, template, "catalog", nil).shutdown(t)
	for _, o := range orders {
		t.Run(strings.Join(o, ","), func(t *testing.T) {
			t.Parallel() // each start waits on its own search rebuild: overlap them
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(template)); err != nil {
				t.Fatal(err)
			}
			for _, fresh := range []string{"nats", "search.bleve", "search.rebuilt", "mail"} {
				if err := os.RemoveAll(filepath.Join(dir, fresh)); err != nil {
					t.Fatal(err)
				}
			}
			startAndUse(t, dir, o)
		})
	}
}

// TestMissingDependencyRefused: a subset lacking a dependency is refused in
// every order, before anything is opened, with a message naming what is
// missing and how to provide it.
func TestMissingDependencyRefused(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"search"}, "service search needs catalog: run it here or give its instances with --peer catalog=URL"},
		{[]string{"checkout", "cart", "catalog"}, "service checkout needs payment"},
		{[]string{"storefront", "catalog", "search"}, "service storefront needs account"},
	} {
		for _, o := range permutations(tc.set) {
			t.Run(strings.Join(o, ","), func(t *testing.T) {
				dir := t.TempDir()
				args := []string{"globomantics", "serve", "--http-addr", testenv.FreeAddr(t), "--data-dir", dir, "--services", strings.Join(o, ",")}
				var logs bytes.Buffer
				done := make(chan error, 1)
				go func() {
					done <- app.Run(context.Background(), args, func(k string) string { return tokenEnv()[k] }, io.Discard, &logs)
				}()
				select {
				case err := <-done:
					if err == nil || !strings.Contains(err.Error(), tc.want) {
						t.Fatalf("Run = %v, want an error saying %q\n%s", err, tc.want, logs.String())
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("Run with a missing dependency did not return")
				}
			})
		}
	}
}

// startAndUse starts one process running services (in that order) on
// dataDir, waits until it is ready and makes one basic call of each service
// it runs.
func startAndUse(t *testing.T, dataDir string, services []string) {
	t.Helper()
	p := startIn(t, dataDir, strings.Join(services, ","), nil)
	runs := func(s string) bool { return slices.Contains(services, s) }
	call := func(method, path, body string, want int) string {
		t.Helper()
		base := p.url()
		if strings.HasPrefix(path, "/svc/") {
			base = p.internalURL()
		}
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", operatorAuth())
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s = %d %s, want %d\n%s", method, path, resp.StatusCode, b, want, p.logs)
		}
		return string(b)
	}
	const product, word = "prd_home_02", "skillet" // the demo catalog's Cast Iron Skillet
	if runs("catalog") {
		call("GET", "/svc/catalog/v1/products/"+product, "", http.StatusOK)
	}
	if runs("cart") {
		owner := fmt.Sprintf("order-test-%d", time.Now().UnixNano())
		if got := call("POST", "/svc/cart/v1/carts/"+owner+"/items", `{"product_id":"`+product+`","quantity":1}`, http.StatusOK); !strings.Contains(got, product) {
			t.Errorf("cart after adding %s: %s", product, got)
		}
	}
	if runs("search") {
		if got := call("GET", "/svc/search/v1/search?q="+word, "", http.StatusOK); !strings.Contains(got, product) {
			t.Errorf("search for %q: %s, want %s in it", word, got, product)
		}
	}
	if runs("storefront") {
		if got := call("GET", "/api/v1/search?q="+word, "", http.StatusOK); !strings.Contains(got, product) {
			t.Errorf("storefront search for %q: %s, want %s in it", word, got, product)
		}
		call("GET", "/", "", http.StatusOK)
	}
	p.shutdown(t)
}
