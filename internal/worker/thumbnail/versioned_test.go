package thumbnail_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/jpeg"
	"io"
	"io/fs"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/worker/thumbnail"
)

// versionedThumb is the shape of a thumbnail key.
var versionedThumb = regexp.MustCompile(`^products/([^/]+)/thumb-([a-z0-9]+)-([0-9a-f]{12})\.jpg$`)

// readBlob returns a blob's bytes.
func readBlob(t testing.TB, s blob.Store, key string) []byte {
	t.Helper()
	obj, _, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantVersionedKey checks that key is the product's thumbnail of the size
// and carries the first 12 hex digits of the SHA-256 of the stored bytes.
func wantVersionedKey(t testing.TB, s blob.Store, productID, size, key string) {
	t.Helper()
	m := versionedThumb.FindStringSubmatch(key)
	if m == nil || m[1] != productID || m[2] != size {
		t.Fatalf("%s thumbnail key %q is not products/%s/thumb-%s-<hash>.jpg", size, key, productID, size)
	}
	sum := sha256.Sum256(readBlob(t, s, key))
	if want := hex.EncodeToString(sum[:])[:12]; m[3] != want {
		t.Fatalf("%s thumbnail key %q carries hash %s; its bytes hash to %s", size, key, m[3], want)
	}
}

// blobFiles lists the keys stored under dir.
func blobFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func TestKey(t *testing.T) {
	if got := thumbnail.Key("prd_1", "small", []byte("abc")); got != "products/prd_1/thumb-small-ba7816bf8f01.jpg" {
		t.Fatalf("Key = %q", got)
	}
	if thumbnail.Key("prd_1", "small", []byte("abc")) == thumbnail.Key("prd_1", "small", []byte("abd")) {
		t.Fatal("different bytes, same key")
	}
}

// Go's JPEG encoder gives the same bytes for the same image and options,
// which is what makes a redelivered job write the same keys.
func TestJPEGEncodingDeterministic(t *testing.T) {
	src := thumbnail.Resize(twoTone(1200, 900), 480, 480)
	var first []byte
	for i := range 5 {
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, src, &jpeg.Options{Quality: thumbnail.Quality}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = buf.Bytes()
		} else if !bytes.Equal(first, buf.Bytes()) {
			t.Fatalf("encoding %d differs from the first", i)
		}
	}
}

// A redelivered job, on the same instance or another one, writes the same
// keys and leaves the stored thumbnails as they were.
func TestHandleRedeliverySameKeys(t *testing.T) {
	ctx := context.Background()
	orig := encodeJPEG(t, twoTone(1200, 900))
	const id, okey = "prd_re", "products/prd_re/original.jpg"

	dir := t.TempDir()
	blobs, err := blob.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	put(t, blobs, okey, orig)
	cat := &fakeCatalog{}
	if err := thumbnail.New(blobs, cat, testenv.Logger(t)).Handle(ctx, event(t, id, okey)); err != nil {
		t.Fatal(err)
	}
	stat := func(key string) blob.Info {
		info, err := blobs.Stat(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	before := map[string]blob.Info{}
	for _, key := range cat.calls[0] {
		before[key] = stat(key)
	}
	filesBefore := blobFiles(t, dir)

	// Another worker (another instance) gets the event again.
	if err := thumbnail.New(blobs, cat, testenv.Logger(t)).Handle(ctx, event(t, id, okey)); err != nil {
		t.Fatal(err)
	}
	if len(cat.calls) != 2 || !maps.Equal(cat.calls[0], cat.calls[1]) {
		t.Fatalf("SetThumbnails calls %v, want the same keys twice", cat.calls)
	}
	if got := blobFiles(t, dir); !slices.Equal(got, filesBefore) {
		t.Fatalf("blobs after redelivery %v, want %v", got, filesBefore)
	}
	for key, info := range before {
		if got := stat(key); !got.ModTime.Equal(info.ModTime) || got.Size != info.Size {
			t.Errorf("%s was rewritten: %+v, was %+v", key, got, info)
		}
	}

	// A worker on another blob store makes byte-identical thumbnails.
	other := newBlobs(t)
	put(t, other, okey, orig)
	cat2 := &fakeCatalog{}
	if err := thumbnail.New(other, cat2, testenv.Logger(t)).Handle(ctx, event(t, id, okey)); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(cat2.calls[0], cat.calls[0]) {
		t.Fatalf("keys from a fresh store %v, want %v", cat2.calls[0], cat.calls[0])
	}
	for _, key := range cat.calls[0] {
		if !bytes.Equal(readBlob(t, blobs, key), readBlob(t, other, key)) {
			t.Fatalf("%s: the bytes differ between the two renderings", key)
		}
	}
}

// Thumbnails rendered otherwise (another quality, other sizes, another
// picture) get new keys; the earlier ones stay readable.
func TestHandleKeysFollowBytes(t *testing.T) {
	ctx := context.Background()
	blobs := newBlobs(t)
	const id, okey = "prd_v", "products/prd_v/original.png"
	put(t, blobs, okey, encodePNG(t, twoTone(800, 600)))

	render := func(opts ...thumbnail.Option) map[string]string {
		t.Helper()
		cat := &fakeCatalog{}
		if err := thumbnail.New(blobs, cat, testenv.Logger(t), opts...).Handle(ctx, event(t, id, okey)); err != nil {
			t.Fatal(err)
		}
		if len(cat.calls) != 1 || len(cat.calls[0]) < 2 {
			t.Fatalf("SetThumbnails calls %v", cat.calls)
		}
		for size, key := range cat.calls[0] {
			wantVersionedKey(t, blobs, id, size, key)
		}
		return cat.calls[0]
	}
	base := render()
	if again := render(thumbnail.WithQuality(thumbnail.Quality)); !maps.Equal(base, again) {
		t.Fatalf("the same rendering gave keys %v, then %v", base, again)
	}
	lowQ := render(thumbnail.WithQuality(40))
	for size := range base {
		if lowQ[size] == base[size] {
			t.Errorf("%s: quality 40 kept the key %s", size, base[size])
		}
	}
	resized := render(thumbnail.WithSizes([]thumbnail.Size{{Name: "small", Max: 160}, {Name: "medium", Max: 400}}))
	if resized["medium"] == base["medium"] {
		t.Errorf("medium at 400 px kept the key %s", base["medium"])
	}
	if got := decodeBlob(t, blobs, resized["medium"]).Bounds().Size(); got != image.Pt(400, 300) {
		t.Errorf("medium at 400 px is %v, want 400x300", got)
	}
	// The earlier thumbnails are still there, unchanged (URLs in pages and
	// caches keep working).
	for size, key := range base {
		wantVersionedKey(t, blobs, id, size, key)
	}

	// Another picture for the same product: new keys.
	put(t, blobs, okey, encodePNG(t, twoTone(600, 800)))
	other := render()
	for size := range base {
		if other[size] == base[size] {
			t.Errorf("%s: another picture kept the key %s", size, base[size])
		}
	}
}
