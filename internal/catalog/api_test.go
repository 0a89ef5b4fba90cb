package catalog_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/catalog/catalogdb"
	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/cache"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is one catalog service under test, reached in process or over HTTP.
type env struct {
	api      catalog.API      // what the contract is tested through
	svc      *catalog.Service // for set-up
	db       *sqldb.DB
	blobs    *blob.FS
	blobDir  string
	kicks    *atomic.Int32
	server   *httptest.Server // nil in process
	clockNow time.Time
	clk      *clock.Fake
}

func newEnv(t *testing.T, remote, cached bool) *env {
	t.Helper()
	ctx := context.Background()
	db := testenv.SQLite(t)
	store, err := catalogdb.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	blobs, err := blob.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{db: db, blobs: blobs, blobDir: dir, kicks: new(atomic.Int32)}
	e.clockNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var opts []catalog.Option
	if cached {
		// A long TTL: the suite passes only if every change invalidates.
		opts = append(opts, catalog.WithCache(cache.NewMemory(clock.Real{}, 100), time.Hour))
	}
	e.clk = clock.NewFake(e.clockNow)
	opts = append(opts, catalog.WithLogger(testenv.Logger(t)))
	e.svc = catalog.NewService(store, blobs, func() { e.kicks.Add(1) }, e.clk, opts...)
	e.api = e.svc
	if remote {
		e.server = httptest.NewServer(httpx.Middleware(testenv.Logger(t), catalog.NewHandler(e.svc)))
		t.Cleanup(e.server.Close)
		e.api = catalog.NewClient(httpx.NewClient("catalog", []string{e.server.URL}, nil))
	}
	err = e.svc.EnsureCategories(ctx, []catalog.Category{
		{ID: "home", Name: "Home & Kitchen"}, {ID: "books", Name: "Books"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestAPI is the contract suite, run against *Service and against *Client
// over HTTP.
func TestAPI(t *testing.T) {
	cases := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"Categories", testCategories},
		{"ListItem", testListItem},
		{"ListItemLargeImage", testListItemLargeImage},
		{"ListItemInvalid", testListItemInvalid},
		{"GetProduct", testGetProduct},
		{"ListProducts", testListProducts},
		{"GetProducts", testGetProducts},
		{"SetThumbnails", testSetThumbnails},
		{"ReserveRelease", testReserveRelease},
		{"ReserveInvalid", testReserveInvalid},
		{"ReservationExpiry", testReservationExpiry},
		{"CommitStock", testCommitStock},
		{"StockLevels", testStockLevels},
		{"UpdateProduct", testUpdateProduct},
		{"UpdateProductInvalid", testUpdateProductInvalid},
	}
	for _, mode := range []struct {
		name           string
		remote, cached bool
	}{{"service", false, false}, {"service+cache", false, true}, {"http", true, false}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) { tc.fn(t, newEnv(t, mode.remote, mode.cached)) })
			}
		})
	}
}

// pngImage is a w x h PNG; noisy makes it incompressible (and large).
func pngImage(t testing.TB, w, h int, noisy bool) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	rnd := rand.New(rand.NewPCG(uint64(w), uint64(h)))
	for y := range h {
		for x := range w {
			c := color.NRGBA{uint8(x), uint8(y), 128, 255}
			if noisy {
				c = color.NRGBA{uint8(rnd.IntN(256)), uint8(rnd.IntN(256)), uint8(rnd.IntN(256)), 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func jpegImage(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{200, uint8(x), uint8(y), 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gifImage(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	img := image.NewPaletted(image.Rect(0, 0, 10, 10), []color.Color{color.Black, color.White})
	if err := gif.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func newItem(t testing.TB, name, cat string, stock int) catalog.NewItem {
	return catalog.NewItem{
		Name:        name,
		Description: "A fine " + strings.ToLower(name) + " for everyday use.",
		Category:    cat,
		Price:       money.USD(1999),
		Stock:       stock,
		Image:       pngImage(t, 40, 30, false),
	}
}

func (e *env) list(t *testing.T, item catalog.NewItem) catalog.Product {
	t.Helper()
	p, err := e.api.ListItem(context.Background(), item)
	if err != nil {
		t.Fatalf("ListItem(%q): %v", item.Name, err)
	}
	return p
}

// blobFiles lists the files in the blob store.
func (e *env) blobFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(e.blobDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(e.blobDir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) outboxCount(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM outbox WHERE subject = ?`, catalog.SubjectItemListed).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) stock(t *testing.T, id string) int {
	t.Helper()
	p, err := e.svc.GetProduct(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return p.Stock
}

func wantKind(t *testing.T, what string, err error, k errs.Kind) {
	t.Helper()
	if !errs.Is(k, err) {
		t.Fatalf("%s: got %v (kind %v), want kind %v", what, err, errs.KindOf(err), k)
	}
}

func testCategories(t *testing.T, e *env) {
	cats, err := e.api.ListCategories(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []catalog.Category{{ID: "home", Name: "Home & Kitchen"}, {ID: "books", Name: "Books"}}
	if !slices.Equal(cats, want) {
		t.Fatalf("ListCategories = %v, want %v", cats, want)
	}
	err = e.svc.EnsureCategories(context.Background(), []catalog.Category{{ID: "Bad Id", Name: "x"}})
	wantKind(t, "EnsureCategories(bad id)", err, errs.Invalid)
}

func testListItem(t *testing.T, e *env) {
	ctx := context.Background()
	item := newItem(t, "  Desk Lamp ", "home", 12)
	p := e.list(t, item)
	if !strings.HasPrefix(p.ID, "prd_") || p.Name != "Desk Lamp" || p.Description != item.Description ||
		p.Category != "home" || p.Price != money.USD(1999) || p.Stock != 12 || len(p.Thumbnails) != 0 {
		t.Fatalf("ListItem = %+v", p)
	}
	sum := sha256.Sum256(item.Image)
	key := "products/" + p.ID + "/original-" + hex.EncodeToString(sum[:6]) + ".png"
	if p.ImageURL != catalog.MediaPrefix+key {
		t.Fatalf("ImageURL = %q, want %q", p.ImageURL, catalog.MediaPrefix+key)
	}
	obj, _, err := e.blobs.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(obj)
	obj.Close()
	if !bytes.Equal(stored, item.Image) {
		t.Fatal("stored image differs from the listed one")
	}
	got, err := e.api.GetProduct(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(p) {
		t.Fatalf("GetProduct = %+v, want %+v", got, p)
	}
	if e.outboxCount(t) != 1 || e.kicks.Load() != 1 {
		t.Fatalf("outbox rows %d, kicks %d; want 1 and 1", e.outboxCount(t), e.kicks.Load())
	}

	// JPEG is detected from the bytes, not from anything the client says.
	j := newItem(t, "Cookbook", "books", 0)
	j.Image = jpegImage(t, 64, 48)
	j.Price = money.Money{Amount: 500} // currency defaults to USD
	pj := e.list(t, j)
	if !strings.HasSuffix(pj.ImageURL, "/original-"+catalog.ContentTag(j.Image)+".jpg") || pj.Price != money.USD(500) || pj.Stock != 0 {
		t.Fatalf("JPEG item = %+v", pj)
	}
}

func testListItemLargeImage(t *testing.T, e *env) {
	item := newItem(t, "Poster", "home", 1)
	item.Image = pngImage(t, 900, 900, true) // about 2.4 MB: over the default body limit once in base64
	if len(item.Image) <= httpx.MaxBodyBytes {
		t.Fatalf("test image is only %d bytes", len(item.Image))
	}
	p := e.list(t, item)
	info, err := e.blobs.Stat(context.Background(), strings.TrimPrefix(p.ImageURL, catalog.MediaPrefix))
	if err != nil || info.Size != int64(len(item.Image)) {
		t.Fatalf("stored image: %+v, %v", info, err)
	}
}

func testListItemInvalid(t *testing.T, e *env) {
	ctx := context.Background()
	tooBig := append(pngImage(t, 8, 8, false), make([]byte, catalog.MaxImageBytes)...)
	cases := []struct {
		name   string
		change func(*catalog.NewItem)
		detail string
	}{
		{"empty name", func(it *catalog.NewItem) { it.Name = "" }, "name must not be empty"},
		{"blank name", func(it *catalog.NewItem) { it.Name = " \t " }, "name must not be empty"},
		{"long name", func(it *catalog.NewItem) { it.Name = strings.Repeat("x", 201) }, "name must be at most 200 characters"},
		{"control characters in name", func(it *catalog.NewItem) { it.Name = "Lamp\nSubject: spam" }, "name must not contain control characters"},
		{"zero price", func(it *catalog.NewItem) { it.Price = money.USD(0) }, "price must be positive"},
		{"negative price", func(it *catalog.NewItem) { it.Price = money.USD(-5) }, "price must be positive"},
		{"other currency", func(it *catalog.NewItem) { it.Price = money.Money{Amount: 100, Currency: "EUR"} }, "price must be in USD"},
		{"negative stock", func(it *catalog.NewItem) { it.Stock = -1 }, "stock must not be negative"},
		{"no category", func(it *catalog.NewItem) { it.Category = "" }, "category must not be empty"},
		{"unknown category", func(it *catalog.NewItem) { it.Category = "garden" }, `unknown category "garden"`},
		{"no image", func(it *catalog.NewItem) { it.Image = nil }, "image must not be empty"},
		{"gif image", func(it *catalog.NewItem) { it.Image = gifImage(t) }, "image must be a PNG or JPEG file"},
		{"not an image", func(it *catalog.NewItem) { it.Image = []byte("GIF89a? no, just text") }, "image must be a PNG or JPEG file"},
		{"truncated png", func(it *catalog.NewItem) { it.Image = pngImage(t, 8, 8, false)[:20] }, "image must be a PNG or JPEG file"},
		{"too wide", func(it *catalog.NewItem) { it.Image = pngImage(t, 4001, 2, false) }, "image must be at most 4000x4000 pixels (got 4001x2)"},
		{"too many bytes", func(it *catalog.NewItem) { it.Image = tooBig }, "image must be at most 8 MB"},
	}
	for _, tc := range cases {
		item := newItem(t, "Teapot", "home", 3)
		tc.change(&item)
		_, err := e.api.ListItem(ctx, item)
		wantKind(t, tc.name, err, errs.Invalid)
		if d := errs.Detail(err); d != tc.detail {
			t.Errorf("%s: detail %q, want %q", tc.name, d, tc.detail)
		}
	}
	// Nothing was written anywhere.
	pg, err := e.api.ListProducts(ctx, catalog.ProductFilter{})
	if err != nil || len(pg.Items) != 0 {
		t.Fatalf("products after rejected listings: %v, %v", pg.Items, err)
	}
	if files := e.blobFiles(t); len(files) != 0 {
		t.Fatalf("blobs after rejected listings: %v", files)
	}
	if n, k := e.outboxCount(t), e.kicks.Load(); n != 0 || k != 0 {
		t.Fatalf("outbox rows %d, kicks %d after rejected listings", n, k)
	}
}

func testGetProduct(t *testing.T, e *env) {
	ctx := context.Background()
	for _, id := range []string{"prd_missing", "", "a/b", "../x"} {
		_, err := e.api.GetProduct(ctx, id)
		wantKind(t, fmt.Sprintf("GetProduct(%q)", id), err, errs.NotFound)
		if d := errs.Detail(err); d != "no such product" {
			t.Errorf("GetProduct(%q) detail = %q", id, d)
		}
	}
}

func testListProducts(t *testing.T, e *env) {
	ctx := context.Background()
	var all []string
	for i, name := range []string{"Kettle", "Novel", "Mug", "Atlas", "Pan"} {
		cat := "home"
		if i%2 == 1 {
			cat = "books"
		}
		all = append(all, e.list(t, newItem(t, name, cat, i)).ID)
	}
	slices.Sort(all)

	var seen []string
	f := catalog.ProductFilter{Page: page.Request{Size: 2}}
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("too many pages")
		}
		pg, err := e.api.ListProducts(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pg.Items {
			seen = append(seen, p.ID)
		}
		if pg.NextPageToken == "" {
			break
		}
		if f.Page, err = page.Parse("2", pg.NextPageToken); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(seen, all) {
		t.Fatalf("paged through %v, want %v (all, by id)", seen, all)
	}

	pg, err := e.api.ListProducts(ctx, catalog.ProductFilter{Category: "books"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pg.Items) != 2 || pg.Items[0].Category != "books" || pg.Items[1].Category != "books" || pg.NextPageToken != "" {
		t.Fatalf("books = %+v", pg)
	}
	pg, err = e.api.ListProducts(ctx, catalog.ProductFilter{Category: "garden"})
	if err != nil || pg.Items == nil || len(pg.Items) != 0 || pg.NextPageToken != "" {
		t.Fatalf("unknown category = %+v, %v; want an empty page", pg, err)
	}
	_, err = e.api.ListProducts(ctx, catalog.ProductFilter{Page: page.Request{Size: page.MaxSize + 1}})
	wantKind(t, "page size over max", err, errs.BadRequest)
	_, err = e.api.ListProducts(ctx, catalog.ProductFilter{Page: page.Request{Size: -1}})
	wantKind(t, "negative size", err, errs.BadRequest)
	for name, tok := range map[string]string{
		"garbage":            "%%%%",
		"old offset token":   "bzoy", // "o:2"
		"another category's": page.Token("products/id/home", "prd_1"),
		"another list's":     page.Token("orders/newest/usr_1", "1", "ord_1"),
		"empty key":          page.Token("products/id/books", ""),
	} {
		_, err = e.api.ListProducts(ctx, catalog.ProductFilter{Category: "books", Page: page.Request{Size: 5, Token: tok}})
		wantKind(t, name+" token", err, errs.BadRequest)
	}
}

func testGetProducts(t *testing.T, e *env) {
	ctx := context.Background()
	a := e.list(t, newItem(t, "Alpha", "home", 1))
	b := e.list(t, newItem(t, "Beta", "books", 2))
	got, err := e.api.GetProducts(ctx, []string{b.ID, "prd_nope", a.ID, b.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != b.ID || got[1].ID != a.ID || got[0].Name != "Beta" {
		t.Fatalf("GetProducts = %+v, want Beta then Alpha", got)
	}
	got, err = e.api.GetProducts(ctx, nil)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("GetProducts(nil) = %v, %v; want empty", got, err)
	}
	// More ids than one HTTP request carries.
	var many []string
	for i := range 150 {
		many = append(many, fmt.Sprintf("prd_x%03d", i))
	}
	many = append(many, a.ID)
	many = append([]string{b.ID}, many...)
	got, err = e.api.GetProducts(ctx, many)
	if err != nil || len(got) != 2 || got[0].ID != b.ID || got[1].ID != a.ID {
		t.Fatalf("GetProducts(152 ids) = %+v, %v", got, err)
	}
}

func testSetThumbnails(t *testing.T, e *env) {
	ctx := context.Background()
	p := e.list(t, newItem(t, "Vase", "home", 1))
	keys := map[string]string{"small": "products/" + p.ID + "/thumb-small.jpg", "medium": "products/" + p.ID + "/thumb-medium.jpg"}
	if err := e.api.SetThumbnails(ctx, p.ID, keys); err != nil {
		t.Fatal(err)
	}
	if err := e.api.SetThumbnails(ctx, p.ID, keys); err != nil { // idempotent
		t.Fatal(err)
	}
	want := map[string]string{"small": catalog.MediaPrefix + keys["small"], "medium": catalog.MediaPrefix + keys["medium"]}
	got, _ := e.api.GetProduct(ctx, p.ID)
	if fmt.Sprint(got.Thumbnails) != fmt.Sprint(want) {
		t.Fatalf("Thumbnails = %v, want %v", got.Thumbnails, want)
	}
	pg, _ := e.api.ListProducts(ctx, catalog.ProductFilter{})
	if len(pg.Items) != 1 || fmt.Sprint(pg.Items[0].Thumbnails) != fmt.Sprint(want) {
		t.Fatalf("listed thumbnails = %+v", pg.Items)
	}

	wantKind(t, "unknown product", e.api.SetThumbnails(ctx, "prd_nope", keys), errs.NotFound)
	for name, bad := range map[string]map[string]string{
		"empty":     {},
		"bad key":   {"small": "../etc/passwd"},
		"abs key":   {"small": "/products/x.jpg"},
		"bad size":  {"Big!": "products/x/y.jpg"},
		"no size":   {"": "products/x/y.jpg"},
		"empty key": {"small": ""},
	} {
		wantKind(t, name, e.api.SetThumbnails(ctx, p.ID, bad), errs.Invalid)
	}
	got, _ = e.api.GetProduct(ctx, p.ID)
	if fmt.Sprint(got.Thumbnails) != fmt.Sprint(want) {
		t.Fatalf("rejected SetThumbnails changed them to %v", got.Thumbnails)
	}
}

func testReserveRelease(t *testing.T, e *env) {
	ctx := context.Background()
	a := e.list(t, newItem(t, "Plate", "home", 10))
	b := e.list(t, newItem(t, "Bowl", "home", 3))
	lines := []catalog.Line{{ProductID: a.ID, Quantity: 4}, {ProductID: b.ID, Quantity: 3}}
	for range 2 { // the repeat is a no-op
		if err := e.api.ReserveStock(ctx, "chk_1", lines, 0); err != nil {
			t.Fatal(err)
		}
		if sa, sb := e.stock(t, a.ID), e.stock(t, b.ID); sa != 6 || sb != 0 {
			t.Fatalf("stock = %d, %d; want 6, 0", sa, sb)
		}
	}
	// Short stock: Conflict naming the product by its name (the message
	// reaches the customer), never by its id; nothing taken.
	err := e.api.ReserveStock(ctx, "chk_2", []catalog.Line{{ProductID: a.ID, Quantity: 1}, {ProductID: b.ID, Quantity: 1}}, 0)
	wantKind(t, "short stock", err, errs.Conflict)
	if d := errs.Detail(err); d != "Bowl is sold out" || strings.Contains(d, b.ID) {
		t.Errorf("conflict detail %q should name the product Bowl, not its id", d)
	}
	err = e.api.ReserveStock(ctx, "chk_3", []catalog.Line{{ProductID: a.ID, Quantity: 1}, {ProductID: "prd_nope", Quantity: 1}}, 0)
	wantKind(t, "unknown product", err, errs.NotFound)
	if sa := e.stock(t, a.ID); sa != 6 {
		t.Fatalf("failed reservations changed stock to %d", sa)
	}
	for range 2 { // released once
		if err := e.api.ReleaseStock(ctx, "chk_1"); err != nil {
			t.Fatal(err)
		}
		if sa, sb := e.stock(t, a.ID), e.stock(t, b.ID); sa != 10 || sb != 3 {
			t.Fatalf("stock after release = %d, %d; want 10, 3", sa, sb)
		}
	}
	if err := e.api.ReleaseStock(ctx, "chk_unknown"); err != nil {
		t.Fatalf("releasing an unknown reservation: %v", err)
	}
	// chk_2 failed, so its id is still free.
	if err := e.api.ReserveStock(ctx, "chk_2", []catalog.Line{{ProductID: b.ID, Quantity: 3}}, 0); err != nil {
		t.Fatal(err)
	}
	if sb := e.stock(t, b.ID); sb != 0 {
		t.Fatalf("stock = %d, want 0", sb)
	}
}

func testReserveInvalid(t *testing.T, e *env) {
	ctx := context.Background()
	a := e.list(t, newItem(t, "Plate", "home", 10))
	for name, tc := range map[string]struct {
		id    string
		lines []catalog.Line
	}{
		"zero quantity":     {"r1", []catalog.Line{{ProductID: a.ID, Quantity: 0}}},
		"negative quantity": {"r1", []catalog.Line{{ProductID: a.ID, Quantity: 2}, {ProductID: a.ID, Quantity: -1}}},
		"no lines":          {"r1", nil},
		"no product":        {"r1", []catalog.Line{{Quantity: 1}}},
		"no id":             {"", []catalog.Line{{ProductID: a.ID, Quantity: 1}}},
		"blank id":          {"  ", []catalog.Line{{ProductID: a.ID, Quantity: 1}}},
	} {
		wantKind(t, name, e.api.ReserveStock(ctx, tc.id, tc.lines, 0), errs.Invalid)
	}
	wantKind(t, "release without id", e.api.ReleaseStock(ctx, ""), errs.Invalid)
	if sa := e.stock(t, a.ID); sa != 10 {
		t.Fatalf("invalid reservations changed stock to %d", sa)
	}
	// r1 was never taken by the invalid attempts.
	if err := e.api.ReserveStock(ctx, "r1", []catalog.Line{{ProductID: a.ID, Quantity: 10}}, 0); err != nil {
		t.Fatal(err)
	}
}

// levelOf returns the product's stock audit through the API under test.
func (e *env) levelOf(t *testing.T, id string) catalog.StockLevel {
	t.Helper()
	ls, err := e.api.StockLevels(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.ProductID == id {
			return l
		}
	}
	t.Fatalf("StockLevels has no %s: %+v", id, ls)
	return catalog.StockLevel{}
}

func (e *env) wantLevel(t *testing.T, id string, stock, reserved, sold int) {
	t.Helper()
	want := catalog.StockLevel{ProductID: id, Stock: stock, Reserved: reserved, Sold: sold}
	if got := e.levelOf(t, id); got != want {
		t.Fatalf("StockLevel = %+v, want %+v", got, want)
	}
	if s := e.stock(t, id); s != stock {
		t.Fatalf("product stock = %d, want %d", s, stock)
	}
}

func (e *env) sweep(t *testing.T, want int) {
	t.Helper()
	n, err := e.svc.ReleaseExpired(context.Background())
	if err != nil || n != want {
		t.Fatalf("ReleaseExpired = %d, %v; want %d", n, err, want)
	}
}

func testReservationExpiry(t *testing.T, e *env) {
	ctx := context.Background()
	a := e.list(t, newItem(t, "Plate", "home", 100))
	one := []catalog.Line{{ProductID: a.ID, Quantity: 1}}
	// hold 0: DefaultHold; a negative hold too; 10 minutes; over MaxHold: MaxHold.
	for id, hold := range map[string]time.Duration{"default": 0, "negative": -time.Second, "short": 10 * time.Minute,
		"long": 48 * time.Hour, "tiny": time.Microsecond} {
		if err := e.api.ReserveStock(ctx, "r_"+id, one, hold); err != nil {
			t.Fatal(err)
		}
	}
	e.wantLevel(t, a.ID, 95, 5, 0)
	e.clk.Advance(time.Millisecond) // "tiny" was held for at least a millisecond, not the default
	e.sweep(t, 1)
	e.clk.Advance(10 * time.Minute)
	e.sweep(t, 1)
	e.wantLevel(t, a.ID, 97, 3, 0)
	e.clk.Advance(catalog.DefaultHold - 10*time.Minute - time.Millisecond)
	e.sweep(t, 2)
	e.clk.Advance(catalog.MaxHold - catalog.DefaultHold - time.Millisecond)
	e.sweep(t, 0) // "long" holds exactly MaxHold
	e.clk.Advance(time.Millisecond)
	e.sweep(t, 1)
	e.wantLevel(t, a.ID, 100, 0, 0)
	// An expired reservation: commit refuses it, release is a no-op, a
	// repeated reserve takes nothing.
	err := e.api.CommitStock(ctx, "r_short")
	wantKind(t, "commit expired", err, errs.Conflict)
	if d := errs.Detail(err); d != "the reservation has expired" {
		t.Errorf("detail = %q", d)
	}
	if err := e.api.ReleaseStock(ctx, "r_short"); err != nil {
		t.Fatal(err)
	}
	if err := e.api.ReserveStock(ctx, "r_short", one, 0); err != nil {
		t.Fatal(err)
	}
	e.wantLevel(t, a.ID, 100, 0, 0)

	// The sweeper loop, started by the app, does the same on its own.
	if err := e.api.ReserveStock(ctx, "r_loop", []catalog.Line{{ProductID: a.ID, Quantity: 7}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	e.wantLevel(t, a.ID, 93, 7, 0)
	loopCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.svc.RunSweeper(loopCtx, 5*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })
	e.clk.Advance(time.Minute)
	testenv.CheckFor(t, 10*time.Second, func() error {
		if l := e.levelOf(t, a.ID); l.Stock != 100 || l.Reserved != 0 {
			return fmt.Errorf("level %+v", l)
		}
		return nil
	})
	cancel()
	<-done
}

func testCommitStock(t *testing.T, e *env) {
	ctx := context.Background()
	a := e.list(t, newItem(t, "Plate", "home", 10))
	lines := []catalog.Line{{ProductID: a.ID, Quantity: 4}}
	if err := e.api.ReserveStock(ctx, "chk_1", lines, time.Minute); err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if err := e.api.CommitStock(ctx, "chk_1"); err != nil {
			t.Fatal(err)
		}
	}
	e.wantLevel(t, a.ID, 6, 0, 4)
	e.clk.Advance(time.Hour)
	e.sweep(t, 0)
	if err := e.api.CommitStock(ctx, "chk_1"); err != nil {
		t.Fatalf("repeated commit after the expiry: %v", err)
	}
	e.wantLevel(t, a.ID, 6, 0, 4)
	// A checkout rolling back before it took the money undoes the sale.
	if err := e.api.ReleaseStock(ctx, "chk_1"); err != nil {
		t.Fatalf("release of a committed reservation: %v", err)
	}
	e.wantLevel(t, a.ID, 10, 0, 0)
	wantKind(t, "commit after release", e.api.CommitStock(ctx, "chk_1"), errs.Conflict)

	// Released, then committed: Conflict, and the stock stays back.
	if err := e.api.ReserveStock(ctx, "chk_2", lines, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.api.ReleaseStock(ctx, "chk_2"); err != nil {
		t.Fatal(err)
	}
	wantKind(t, "commit released", e.api.CommitStock(ctx, "chk_2"), errs.Conflict)
	// Unknown: Conflict, nothing recorded (the id can still reserve).
	wantKind(t, "commit unknown", e.api.CommitStock(ctx, "chk_3"), errs.Conflict)
	if err := e.api.ReserveStock(ctx, "chk_3", []catalog.Line{{ProductID: a.ID, Quantity: 1}}, 0); err != nil {
		t.Fatal(err)
	}
	e.wantLevel(t, a.ID, 9, 1, 0)
	wantKind(t, "commit without id", e.api.CommitStock(ctx, ""), errs.Invalid)
}

func testStockLevels(t *testing.T, e *env) {
	ctx := context.Background()
	ls, err := e.api.StockLevels(ctx)
	if err != nil || ls == nil || len(ls) != 0 {
		t.Fatalf("StockLevels of an empty catalog = %#v, %v; want an empty list", ls, err)
	}
	a := e.list(t, newItem(t, "Plate", "home", 10))
	b := e.list(t, newItem(t, "Bowl", "home", 3))
	if err := e.api.ReserveStock(ctx, "r1", []catalog.Line{{ProductID: a.ID, Quantity: 2}, {ProductID: b.ID, Quantity: 3}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.api.ReserveStock(ctx, "r2", []catalog.Line{{ProductID: a.ID, Quantity: 5}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.api.CommitStock(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	ls, err = e.api.StockLevels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []catalog.StockLevel{{ProductID: a.ID, Stock: 3, Reserved: 2, Sold: 5}, {ProductID: b.ID, Stock: 0, Reserved: 3}}
	slices.SortFunc(want, func(x, y catalog.StockLevel) int { return strings.Compare(x.ProductID, y.ProductID) })
	if fmt.Sprint(ls) != fmt.Sprint(want) {
		t.Fatalf("StockLevels = %+v, want %+v (by product id)", ls, want)
	}
}

// TestHTTPErrors checks what only the HTTP API can get wrong.
func TestHTTPErrors(t *testing.T) {
	e := newEnv(t, true, false)
	base := e.server.URL + catalog.PathPrefix
	img := base64.StdEncoding.EncodeToString(pngImage(t, 4, 4, false))
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
	}{
		{"unknown field", "POST", "products", "application/json", `{"name":"x","colour":"red"}`, 400},
		{"bad json", "POST", "products", "application/json", `{"name":`, 400},
		{"wrong type", "POST", "products", "application/json", `{"name":"x","stock":"many"}`, 400},
		{"not json", "POST", "products", "text/plain", `{}`, 415},
		{"no content type", "POST", "products", "", `{}`, 415},
		{"bad base64", "POST", "products", "application/json", `{"name":"x","image":"***"}`, 400},
		{"valid", "POST", "products", "application/json", `{"name":"Cup","category":"home","price":{"amount":100,"currency":"USD"},"stock":1,"image":"` + img + `"}`, 201},
		{"too large", "POST", "products", "application/json", `{"name":"` + strings.Repeat("x", catalog.MaxListItemBody) + `"}`, 413},
		{"bad page size", "GET", "products?page_size=0", "", "", 400},
		{"huge page size", "GET", "products?page_size=1000", "", "", 400},
		{"bad page token", "GET", "products?page_token=nope", "", "", 400},
		{"ids and paging", "GET", "products?ids=a,b&page_size=2", "", "", 400},
		{"too many ids", "GET", "products?ids=" + strings.Repeat("p,", catalog.MaxBatchIDs) + "p", "", "", 400},
		{"ids", "GET", "products?ids=a,,b", "", "", 200},
		{"bad reservation body", "PUT", "reservations/r1", "application/json", `{"lines":"all"}`, 400},
		{"negative hold", "PUT", "reservations/r1", "application/json", `{"lines":[{"product_id":"p","quantity":1}],"hold_ms":-1}`, 422},
		{"commit unknown", "POST", "reservations/r9/commit", "", "", 409},
		{"stock", "GET", "admin/stock", "", "", 200},
		{"thumbnails unknown field", "PUT", "products/x/thumbnails", "application/json", `{"thumbs":{}}`, 400},
		{"no such route", "GET", "nothing/here", "", "", 404},
	}
	for _, tc := range cases {
		req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, resp.StatusCode, tc.status, body)
			continue
		}
		if tc.status >= 400 {
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("%s: content type %q, want problem+json", tc.name, ct)
			}
		}
	}
	pg, err := e.api.ListProducts(context.Background(), catalog.ProductFilter{})
	if err != nil || len(pg.Items) != 1 || pg.Items[0].Name != "Cup" {
		t.Fatalf("only the valid listing should exist: %+v, %v", pg.Items, err)
	}
}
