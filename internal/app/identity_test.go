package app_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/app"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// startIn starts one process running services on dataDir and waits until it
// is ready; env adds GLOBO_* variables to the service token.
func startIn(t *testing.T, dataDir, services string, env map[string]string) *proc {
	t.Helper()
	e := tokenEnv()
	for k, v := range env {
		e[k] = v
	}
	p := &proc{name: services, addr: testenv.FreeAddr(t), env: e,
		args: []string{"--data-dir", dataDir, "--services", services}}
	p.start(t)
	waitReady(t, p)
	return p
}

// refusedIn runs services on dataDir and returns the error Run fails with;
// the test fails if it starts instead.
func refusedIn(t *testing.T, dataDir, services string, env map[string]string) error {
	t.Helper()
	e := tokenEnv()
	for k, v := range env {
		e[k] = v
	}
	logs := &syncBuffer{}
	args := []string{"globomantics", "serve", "--http-addr", testenv.FreeAddr(t), "--data-dir", dataDir, "--services", services}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, args, func(k string) string { return e[k] }, io.Discard, logs) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("Run returned no error\n%s", logs)
		}
		t.Logf("refused: %v", err)
		return err
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		t.Fatalf("Run started instead of refusing\n%s", logs)
	}
	return nil
}

// svcCall makes a call to an internal API with the service token and
// returns the body, failing the test on another status than want.
func svcCall(t *testing.T, p *proc, method, path, body string, want int) []byte {
	t.Helper()
	req, err := http.NewRequest(method, p.internalURL()+path, strings.NewReader(body))
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
		t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, b, want)
	}
	return b
}

func stockOf(t *testing.T, p *proc, id string) int {
	t.Helper()
	var pr struct {
		Stock int `json:"stock"`
	}
	if err := json.Unmarshal(svcCall(t, p, "GET", "/svc/catalog/v1/products/"+id, "", 200), &pr); err != nil {
		t.Fatal(err)
	}
	return pr.Stock
}

func removeDB(t *testing.T, path string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
}

// TestLostDatabaseRefused: a restart keeps the catalog as it was (sold
// units stay sold, nothing is seeded again); once catalog.db is deleted the
// shop refuses to start, naming the catalog, its file and the way out,
// instead of seeding the catalog again at its original stock.
func TestLostDatabaseRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the shop; skipped in -short mode")
	}
	dir := t.TempDir()
	const services, product = "catalog,cart", "prd_home_02"
	p := startIn(t, dir, services, nil)
	before := stockOf(t, p, product)
	svcCall(t, p, "PUT", "/svc/catalog/v1/reservations/res_identity_test", `{"lines":[{"product_id":"`+product+`","quantity":3}]}`, http.StatusNoContent)
	p.shutdown(t)
	if b, err := os.ReadFile(filepath.Join(dir, "shop.id")); err != nil || !strings.HasPrefix(string(b), "shop_") {
		t.Fatalf("shop.id = %q, %v", b, err)
	}

	p = startIn(t, dir, services, nil)
	if got := stockOf(t, p, product); got != before-3 {
		t.Errorf("stock after a restart = %d, want %d", got, before-3)
	}
	p.shutdown(t)
	if strings.Contains(p.logs.String(), "seeded demo catalog") {
		t.Errorf("a restart seeded the catalog again:\n%s", p.logs)
	}

	catalogDB := filepath.Join(dir, "catalog.db")
	removeDB(t, catalogDB)
	err := refusedIn(t, dir, services, nil)
	for _, want := range []string{"catalog database", catalogDB, "restore it", "fresh data directory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	// Refused again, not started empty on the second try.
	if err2 := refusedIn(t, dir, services, nil); !strings.Contains(err2.Error(), catalogDB) {
		t.Errorf("second try: %v", err2)
	}
}

// TestAddingAServiceToADataDirectory: a service that never ran in a data
// directory starts there with a new database; only databases the data
// directory has seen are guarded.
func TestAddingAServiceToADataDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the shop; skipped in -short mode")
	}
	dir := t.TempDir()
	startIn(t, dir, "catalog", nil).shutdown(t)
	p := startIn(t, dir, "catalog,cart", nil)
	svcCall(t, p, "POST", "/svc/cart/v1/carts/someone/items", `{"product_id":"prd_home_02","quantity":1}`, http.StatusOK)
	p.shutdown(t)
	removeDB(t, filepath.Join(dir, "cart.db"))
	if err := refusedIn(t, dir, "catalog,cart", nil); !strings.Contains(err.Error(), "cart database") {
		t.Errorf("lost cart.db: %v", err)
	}
}

// TestDatabaseOfAnotherShopRefused: a catalog.db copied from another data
// directory is refused, named, as another shop's.
func TestDatabaseOfAnotherShopRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the shop; skipped in -short mode")
	}
	mine, theirs := t.TempDir(), t.TempDir()
	startIn(t, mine, "catalog", nil).shutdown(t)
	startIn(t, theirs, "catalog", nil).shutdown(t)
	b, err := os.ReadFile(filepath.Join(theirs, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	removeDB(t, filepath.Join(mine, "catalog.db"))
	if err := os.WriteFile(filepath.Join(mine, "catalog.db"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	err = refusedIn(t, mine, "catalog", nil)
	if !strings.Contains(err.Error(), "belongs to another shop") || !strings.Contains(err.Error(), filepath.Join(mine, "catalog.db")) {
		t.Errorf("refusal %q, want it to name the catalog database as another shop's", err)
	}
}

// TestDamagedDatabaseRefused: a catalog.db with garbage pages in the middle
// is refused at start, named.
func TestDamagedDatabaseRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the shop; skipped in -short mode")
	}
	dir := t.TempDir()
	startIn(t, dir, "catalog", nil).shutdown(t)
	path := filepath.Join(dir, "catalog.db")
	testenv.CorruptFile(t, path)
	err := refusedIn(t, dir, "catalog", nil)
	if !strings.Contains(err.Error(), "catalog database") || !strings.Contains(err.Error(), path) {
		t.Errorf("refusal %q, want it to name the catalog database %s", err, path)
	}
}

// TestNewProcessJoinsSharedDatabase: a process with a fresh data directory
// on a database that already belongs to a shop (as every instance of the
// scaled-out shop has) joins that shop and does not seed it again.
func TestNewProcessJoinsSharedDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the shop; skipped in -short mode")
	}
	env := map[string]string{"GLOBO_DB_CATALOG": filepath.Join(t.TempDir(), "shared-catalog.db")}
	first, second := t.TempDir(), t.TempDir()
	p := startIn(t, first, "catalog", env)
	svcCall(t, p, "PUT", "/svc/catalog/v1/reservations/res_join", `{"lines":[{"product_id":"prd_home_02","quantity":2}]}`, http.StatusNoContent)
	want := stockOf(t, p, "prd_home_02")
	p.shutdown(t)
	p = startIn(t, second, "catalog", env)
	if got := stockOf(t, p, "prd_home_02"); got != want {
		t.Errorf("stock seen by the new process = %d, want %d", got, want)
	}
	p.shutdown(t)
	a, _ := os.ReadFile(filepath.Join(first, "shop.id"))
	b, _ := os.ReadFile(filepath.Join(second, "shop.id"))
	if len(a) == 0 || string(a) != string(b) {
		t.Errorf("shop ids: first %q, second %q: want the same", a, b)
	}
}

// TestGarbageSearchIndexRebuilt: search index files overwritten with
// garbage do not stop the shop: the index is set aside with a warning,
// rebuilt from the catalog, and search finds the catalog's products.
func TestGarbageSearchIndexRebuilt(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the shop; skipped in -short mode")
	}
	dir := t.TempDir()
	const services = "catalog,search"
	find := func(p *proc) func() error {
		return func() error {
			b := svcCall(t, p, "GET", "/svc/search/v1/search?q=skillet", "", 200)
			if !strings.Contains(string(b), "prd_home_02") {
				return fmt.Errorf("search for skillet: %s", b)
			}
			return nil
		}
	}
	p := startIn(t, dir, services, nil)
	testenv.CheckFor(t, 30*time.Second, find(p))
	p.shutdown(t)

	index := filepath.Join(dir, "search.bleve")
	n := 0
	err := filepath.WalkDir(index, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		garbage := make([]byte, max(info.Size(), 16))
		_, _ = rand.Read(garbage)
		n++
		return os.WriteFile(path, garbage, 0o644)
	})
	if err != nil || n == 0 {
		t.Fatalf("garbage in %d index files: %v", n, err)
	}

	p = startIn(t, dir, services, nil)
	testenv.CheckFor(t, 30*time.Second, find(p))
	p.shutdown(t)
	logs := p.logs.String()
	if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, index) {
		t.Errorf("no warning naming the index %s:\n%s", index, logs)
	}
}
