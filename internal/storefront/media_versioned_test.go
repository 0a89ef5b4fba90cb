package storefront

import (
	"net/http"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/worker/thumbnail"
)

// Media under a content-versioned key (as the catalog and the thumbnail
// worker make them) is cached for a year as immutable; media under an older
// key keeps a day's lifetime. Both keep ETag, Last-Modified and 304s, and a
// 304 repeats the Cache-Control so that a CDN refreshing its copy keeps it as
// long again.
func TestMediaVersionedCacheControl(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	pic := "\x89PNG\r\n\x1a\n versioned image bytes"
	thumb := "\xff\xd8\xff\xe0 thumbnail bytes"
	const (
		immutable = "public, max-age=31536000, immutable"
		day       = "public, max-age=86400"
	)
	blobs := map[string]string{
		catalog.OriginalKey("prd_01", "png", []byte(pic)):   pic,
		thumbnail.Key("prd_01", "small", []byte(thumb)):     thumb,
		"products/prd_01/thumb-medium-0123456789ab.jpg":     thumb,
		"products/prd_01/original.png":                      pic, // listed before keys were versioned
		"products/prd_01/thumb-small.jpg":                   thumb,
		"products/prd_01/thumb-small-0123456789AB.jpg":      thumb, // not lowercase hex
		"products/prd_01/thumb-small-0123456789a.jpg":       thumb, // 11 digits
		"products/prd_01/thumb-small-0123456789abc.jpg":     thumb, // 13 digits
		"products/prd_01/thumb-small0123456789ab.jpg":       thumb, // no dash
		"products/prd_01/thumb-small-0123456789ab":          thumb, // no extension
		"products/x-0123456789ab.d/thumb-small.jpg":         thumb, // the hash is not in the base name
		"products/prd_01/thumb-small-0123456789ab.jpg.orig": thumb, // nor at its end
	}
	for key, body := range blobs {
		if err := e.blobs.Put(t.Context(), key, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		key, cacheControl string
	}{
		{catalog.OriginalKey("prd_01", "png", []byte(pic)), immutable},
		{thumbnail.Key("prd_01", "small", []byte(thumb)), immutable},
		{"products/prd_01/thumb-medium-0123456789ab.jpg", immutable},
		{"products/prd_01/original.png", day},
		{"products/prd_01/thumb-small.jpg", day},
		{"products/prd_01/thumb-small-0123456789AB.jpg", day},
		{"products/prd_01/thumb-small-0123456789a.jpg", day},
		{"products/prd_01/thumb-small-0123456789abc.jpg", day},
		{"products/prd_01/thumb-small0123456789ab.jpg", day},
		{"products/prd_01/thumb-small-0123456789ab", day},
		{"products/x-0123456789ab.d/thumb-small.jpg", day},
		{"products/prd_01/thumb-small-0123456789ab.jpg.orig", day},
	} {
		t.Run(tc.key, func(t *testing.T) {
			url := "/media/" + tc.key
			r := b.do("GET", url, nil)
			wantStatus(t, r, http.StatusOK)
			if r.body != blobs[tc.key] {
				t.Fatalf("body %q, want %q", r.body, blobs[tc.key])
			}
			if got := r.Header.Get("Cache-Control"); got != tc.cacheControl {
				t.Fatalf("Cache-Control %q, want %q", got, tc.cacheControl)
			}
			etag, lm := r.Header.Get("ETag"), r.Header.Get("Last-Modified")
			if !strings.HasPrefix(etag, `"`) || lm == "" {
				t.Fatalf("ETag %q, Last-Modified %q", etag, lm)
			}
			for _, cond := range [][2]string{{"If-None-Match", etag}, {"If-Modified-Since", lm}} {
				r := b.do("GET", url, nil, cond[0], cond[1])
				wantStatus(t, r, http.StatusNotModified)
				if got := r.Header.Get("Cache-Control"); got != tc.cacheControl || r.Header.Get("ETag") != etag {
					t.Errorf("304 for %s: Cache-Control %q, ETag %q; want %q, %q", cond[0], got, r.Header.Get("ETag"), tc.cacheControl, etag)
				}
			}
			h := b.do("HEAD", url, nil)
			wantStatus(t, h, http.StatusOK)
			if got := h.Header.Get("Cache-Control"); got != tc.cacheControl {
				t.Errorf("HEAD: Cache-Control %q, want %q", got, tc.cacheControl)
			}
		})
	}

	// A versioned key that does not exist is a 404 that no cache may keep
	// for a year.
	r := b.do("GET", "/media/products/prd_01/thumb-small-ffffffffffff.jpg", nil)
	wantProblem(t, r, http.StatusNotFound)
	if strings.Contains(r.Header.Get("Cache-Control"), "immutable") {
		t.Errorf("404 Cache-Control %q", r.Header.Get("Cache-Control"))
	}
}
