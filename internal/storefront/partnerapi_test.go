package storefront

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/partner"
	"github.com/globomantics/globomantics/internal/partner/partnerdb"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/ratelimit"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// partnerCatalog is the catalog the partner service lists items in.
type partnerCatalog struct {
	mu    sync.Mutex
	items map[string]catalog.NewItem
}

func (c *partnerCatalog) ListCategories(context.Context) ([]catalog.Category, error) {
	return []catalog.Category{{ID: "home", Name: "Home"}}, nil
}

func (c *partnerCatalog) ListItem(_ context.Context, it catalog.NewItem) (catalog.Product, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := fmt.Sprintf("prd_p%d", len(c.items)+1)
	c.items[id] = it
	return catalog.Product{ID: id, Name: it.Name, Stock: it.Stock}, nil
}

func (c *partnerCatalog) GetProducts(_ context.Context, ids []string) ([]catalog.Product, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []catalog.Product
	for _, id := range ids {
		if it, ok := c.items[id]; ok {
			out = append(out, catalog.Product{ID: id, Stock: it.Stock - 1}) // one sold meanwhile
		}
	}
	return out, nil
}

// partnerEnv is a storefront whose partner API is served by the real
// partner service (on SQLite) over a fake catalog, with two partners.
func partnerEnv(t *testing.T, opts ...func(*Deps)) (*env, *partner.Service, [2]partner.Created) {
	t.Helper()
	st, err := partnerdb.Open(context.Background(), testenv.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	cat := &partnerCatalog{items: map[string]catalog.NewItem{}}
	svc := partner.NewService(st, cat, nil, nil)
	var ps [2]partner.Created
	for i, name := range []string{"Acme", "Rival"} {
		if ps[i], err = svc.Create(context.Background(), name, ""); err != nil {
			t.Fatal(err)
		}
	}
	e := newEnv(t, append([]func(*Deps){func(d *Deps) { d.Partners = svc }}, opts...)...)
	return e, svc, ps
}

func pngBytes(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 4, 4))
	img.Set(1, 1, color.RGBA{200, 10, 10, 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// raw sends body as is with the content type ctype.
func (b *browser) raw(method, path, ctype string, body []byte, hdr ...string) response {
	b.e.t.Helper()
	req, _ := http.NewRequest(method, b.e.srv.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return response{Response: resp, body: string(data)}
}

func TestPartnerAPIAuth(t *testing.T) {
	e, _, ps := partnerEnv(t)
	b := e.browser()
	for _, tc := range []struct{ name, auth, wantChallenge string }{
		{"no header", "", `Bearer realm="globomantics-partner"`},
		{"not bearer", "Basic " + ps[0].Key, `Bearer realm="globomantics-partner"`},
		{"unknown key", "Bearer gpk_nope", `error="invalid_token"`},
	} {
		var hdr []string
		if tc.auth != "" {
			hdr = []string{"Authorization", tc.auth}
		}
		r := b.do("GET", "/api/v1/partner/products", nil, hdr...)
		wantProblem(t, r, http.StatusUnauthorized)
		if got := r.Header.Get("WWW-Authenticate"); !strings.Contains(got, tc.wantChallenge) {
			t.Errorf("%s: WWW-Authenticate %q, want %q in it", tc.name, got, tc.wantChallenge)
		}
	}
	r := b.do("GET", "/api/v1/partner/products", nil, "Authorization", "Bearer "+ps[0].Key)
	wantStatus(t, r, http.StatusOK)
	if r.body != `{"items":[],"next_page_token":""}`+"\n" {
		t.Errorf("no products: %s", r.body)
	}
}

func TestPartnerAPI(t *testing.T) {
	e, _, ps := partnerEnv(t)
	b := e.browser()
	auth := []string{"Authorization", "Bearer " + ps[0].Key}
	rival := []string{"Authorization", "Bearer " + ps[1].Key}

	r := b.do("POST", "/api/v1/partner/products", map[string]any{"name": "Brass lamp", "category": "home",
		"price": money.USD(4500), "stock": 5}, auth...)
	wantStatus(t, r, http.StatusCreated)
	var p partner.Product
	r.json(t, &p)
	if p.Status != partner.ProductAwaitingImage || r.Header.Get("Location") != "/api/v1/partner/products/"+p.ID {
		t.Fatalf("created %+v, Location %q", p, r.Header.Get("Location"))
	}
	wantProblem(t, b.do("POST", "/api/v1/partner/products", map[string]any{"name": "", "category": "home", "price": money.USD(1)}, auth...), http.StatusUnprocessableEntity)
	wantProblem(t, b.do("POST", "/api/v1/partner/products", map[string]any{"name": "x", "colour": "red"}, auth...), http.StatusBadRequest)

	img := pngBytes(t)
	path := "/api/v1/partner/products/" + p.ID + "/image"
	wantProblem(t, b.raw("PUT", path, "application/json", img, auth...), http.StatusBadRequest)
	wantProblem(t, b.raw("PUT", path, "image/png", nil, auth...), http.StatusUnprocessableEntity)
	wantProblem(t, b.raw("PUT", path, "image/png", make([]byte, partner.MaxImageBytes+1), auth...), http.StatusRequestEntityTooLarge)
	// Another partner's product does not exist for it.
	wantProblem(t, b.raw("PUT", path, "image/png", img, rival...), http.StatusNotFound)
	r = b.raw("PUT", path, "image/png", img, auth...)
	wantStatus(t, r, http.StatusOK)
	r.json(t, &p)
	if p.Status != partner.ProductListed || p.ProductID == "" {
		t.Fatalf("after the image: %+v", p)
	}
	wantProblem(t, b.raw("PUT", path, "image/png", img, auth...), http.StatusConflict)

	var list List[partner.Product]
	b.do("GET", "/api/v1/partner/products", nil, auth...).json(t, &list)
	if len(list.Items) != 1 || list.Items[0].Stock != 4 {
		t.Fatalf("products = %+v (want live stock 4)", list.Items)
	}
	b.do("GET", "/api/v1/partner/products", nil, rival...).json(t, &list)
	if len(list.Items) != 0 {
		t.Fatalf("rival sees %+v", list.Items)
	}

	var rep partner.SalesReport
	b.do("GET", "/api/v1/partner/sales", nil, auth...).json(t, &rep)
	if rep.Sales == nil || rep.Units != 0 {
		t.Fatalf("sales = %+v", rep)
	}
	wantProblem(t, b.do("GET", "/api/v1/partner/sales?limit=x", nil, auth...), http.StatusBadRequest)
	wantProblem(t, b.do("GET", "/api/v1/partner/sales?limit=100000", nil, auth...), http.StatusBadRequest)

	r = b.do("PUT", "/api/v1/partner/webhook", map[string]string{"url": "https://acme.example/hooks"}, auth...)
	wantStatus(t, r, http.StatusOK)
	var wh partner.Webhook
	r.json(t, &wh)
	if wh.URL != "https://acme.example/hooks" || !strings.HasPrefix(wh.Secret, partner.SecretPrefix) || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("set webhook = %+v, Cache-Control %q", wh, r.Header.Get("Cache-Control"))
	}
	r = b.do("GET", "/api/v1/partner/webhook", nil, auth...)
	if !strings.Contains(r.body, "https://acme.example/hooks") || strings.Contains(r.body, wh.Secret) {
		t.Fatalf("get webhook: %s", r.body)
	}
	wantProblem(t, b.do("PUT", "/api/v1/partner/webhook", map[string]string{"url": "file:///etc/passwd"}, auth...), http.StatusUnprocessableEntity)

	var ds List[partner.Delivery]
	b.do("GET", "/api/v1/partner/webhooks/deliveries", nil, auth...).json(t, &ds)
	if ds.Items == nil || len(ds.Items) != 0 {
		t.Fatalf("deliveries = %+v", ds)
	}
	wantProblem(t, b.do("DELETE", "/api/v1/partner/products", nil, auth...), http.StatusMethodNotAllowed)
}

func TestPartnerAPIRateLimited(t *testing.T) {
	e, _, ps := partnerEnv(t, func(d *Deps) { d.RateLimiter = ratelimit.NewMemory(nil, 0) })
	b := e.browser()
	auth := []string{"Authorization", "Bearer " + ps[0].Key}
	limited := 0
	for range PartnerLimit.Burst + 5 {
		if r := b.do("GET", "/api/v1/partner/webhook", nil, auth...); r.StatusCode == http.StatusTooManyRequests {
			limited++
			if r.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		}
	}
	if limited == 0 {
		t.Fatalf("no request limited after %d", PartnerLimit.Burst+5)
	}
	// The other partner has its own budget.
	wantStatus(t, b.do("GET", "/api/v1/partner/webhook", nil, "Authorization", "Bearer "+ps[1].Key), http.StatusOK)
}

func TestNoPartnerAPIWithoutPartners(t *testing.T) {
	e := newEnv(t)
	r := e.browser().do("GET", "/api/v1/partner/products", nil, "Authorization", "Bearer gpk_x")
	wantProblem(t, r, http.StatusNotFound)
}
