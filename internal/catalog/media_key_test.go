package catalog_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/catalog"
)

func TestContentTag(t *testing.T) {
	// Known SHA-256 digests, cut to 12 hex digits.
	for in, want := range map[string]string{
		"":    "e3b0c44298fc",
		"abc": "ba7816bf8f01",
	} {
		if got := catalog.ContentTag([]byte(in)); got != want {
			t.Errorf("ContentTag(%q) = %q, want %q", in, got, want)
		}
	}
	if got := catalog.OriginalKey("prd_1", "png", []byte("abc")); got != "products/prd_1/original-ba7816bf8f01.png" {
		t.Errorf("OriginalKey = %q", got)
	}
}

// versionedOriginal is the shape of a listed item's image key.
var versionedOriginal = regexp.MustCompile(`^products/(prd_[A-Za-z0-9_]+)/original-([0-9a-f]{12})\.(png|jpg)$`)

// TestListItemVersionedKey lists items through the service and its HTTP
// client and checks that every image key names its content: the hash of the
// stored bytes, the same for the same picture, another for another picture.
func TestListItemVersionedKey(t *testing.T) {
	for _, remote := range []bool{false, true} {
		name := map[bool]string{false: "service", true: "http"}[remote]
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, remote, false)
			picA := pngImage(t, 40, 30, false)
			picB := pngImage(t, 41, 30, false) // another picture
			picJ := jpegImage(t, 64, 48)

			a := e.list(t, withImage(newItem(t, "Lamp", "home", 1), picA))
			b := e.list(t, withImage(newItem(t, "Shade", "home", 1), picB))
			c := e.list(t, withImage(newItem(t, "Lamp Again", "home", 1), picA))
			j := e.list(t, withImage(newItem(t, "Cookbook", "books", 1), picJ))

			tags := map[string]string{}
			for _, tc := range []struct {
				p   catalog.Product
				pic []byte
				ext string
			}{{a, picA, "png"}, {b, picB, "png"}, {c, picA, "png"}, {j, picJ, "jpg"}} {
				key, ok := strings.CutPrefix(tc.p.ImageURL, catalog.MediaPrefix)
				m := versionedOriginal.FindStringSubmatch(key)
				if !ok || m == nil || m[1] != tc.p.ID || m[3] != tc.ext {
					t.Fatalf("%s: ImageURL %q is not /media/products/<id>/original-<hash>.%s", tc.p.Name, tc.p.ImageURL, tc.ext)
				}
				sum := sha256.Sum256(tc.pic)
				if want := hex.EncodeToString(sum[:])[:12]; m[2] != want {
					t.Errorf("%s: key hash %s, want %s (SHA-256 of the image)", tc.p.Name, m[2], want)
				}
				tags[tc.p.Name] = m[2]

				// The key names exactly the listed bytes.
				obj, _, err := e.blobs.Get(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				stored, err := io.ReadAll(obj)
				obj.Close()
				if err != nil || !bytes.Equal(stored, tc.pic) {
					t.Fatalf("%s: stored image differs from the listed one (%v)", tc.p.Name, err)
				}
				got, err := e.api.GetProduct(ctx, tc.p.ID)
				if err != nil || got.ImageURL != tc.p.ImageURL {
					t.Fatalf("%s: GetProduct ImageURL %q, %v; want %q", tc.p.Name, got.ImageURL, err, tc.p.ImageURL)
				}
			}
			if tags["Lamp"] == tags["Shade"] {
				t.Errorf("different pictures got the same key hash %s", tags["Lamp"])
			}
			if tags["Lamp"] != tags["Lamp Again"] {
				t.Errorf("the same picture got hashes %s and %s", tags["Lamp"], tags["Lamp Again"])
			}
			if a.ImageURL == c.ImageURL {
				t.Errorf("two products share the image URL %s", a.ImageURL)
			}
		})
	}
}

// Products listed before keys were versioned keep their key and URL.
func TestLegacyImageKeyKept(t *testing.T) {
	r := catalog.Record{ID: "prd_old", ImageKey: "products/prd_old/original.png",
		ThumbnailKeys: map[string]string{"small": "products/prd_old/thumb-small.jpg"}}
	p := r.Product()
	if p.ImageURL != "/media/products/prd_old/original.png" || p.Thumbnails["small"] != "/media/products/prd_old/thumb-small.jpg" {
		t.Fatalf("legacy record became %q, %v", p.ImageURL, p.Thumbnails)
	}
}

func withImage(item catalog.NewItem, pic []byte) catalog.NewItem {
	item.Image = pic
	return item
}
