package thumbnail_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/catalog/catalogdb"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/worker/thumbnail"
)

// pngChunk appends a PNG chunk with its length and CRC.
func pngChunk(b []byte, typ string, data []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	start := len(b)
	b = append(b, typ...)
	b = append(b, data...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[start:]))
}

// bombPNG is a PNG whose header claims a w x h 8-bit greyscale image,
// followed by one tiny IDAT chunk: a few dozen bytes claiming any size.
func bombPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	return grayPNG(t, w, h, 1)
}

// grayPNG is a w x h 8-bit greyscale PNG whose IDAT holds the first rows
// rows of black pixels (rows = h gives a whole, valid image).
func grayPNG(t testing.TB, w, h, rows int) []byte {
	t.Helper()
	b := []byte("\x89PNG\r\n\x1a\n")
	ihdr := binary.BigEndian.AppendUint32(nil, uint32(w))
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(h))
	ihdr = append(ihdr, 8, 0, 0, 0, 0) // depth 8, greyscale, deflate, filter 0, no interlace
	b = pngChunk(b, "IHDR", ihdr)
	var z bytes.Buffer
	zw, err := zlib.NewWriterLevel(&z, zlib.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	row := make([]byte, w+1) // filter byte 0, then black pixels
	for range rows {
		if _, err := zw.Write(row); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	b = pngChunk(b, "IDAT", z.Bytes())
	return pngChunk(b, "IEND", nil)
}

func TestCheck(t *testing.T) {
	webp, err := os.ReadFile("testdata/blue-purple-pink.lossy.webp")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, format, reason string
		data                 []byte
	}{
		{"png", "png", "", encodePNG(t, twoTone(30, 20))},
		{"jpeg", "jpeg", "", encodeJPEG(t, twoTone(30, 20))},
		{"webp", "webp", "", webp},
		{"at the side limit", "png", "", bombPNG(t, thumbnail.MaxSourceSide, 4000)},
		{"text", "", "not a JPEG, PNG or WebP image", []byte("plain text, not a picture")},
		{"empty", "", "not a JPEG, PNG or WebP image", nil},
		{"gif", "", "not a JPEG, PNG or WebP image", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;")},
		{"bomb", "png", "the png image is 100000x100000 pixels; at most 10000 a side are accepted", bombPNG(t, 100_000, 100_000)},
		{"too tall", "png", "the png image is 1x10001 pixels; at most 10000 a side are accepted", bombPNG(t, 1, 10_001)},
		{"too many pixels", "png", "the png image is 7000x7000 pixels (49.0 megapixels); at most 40 megapixels are accepted", bombPNG(t, 7000, 7000)},
		{"no pixels", "", "the image is damaged", bombPNG(t, 0, 10)},
		{"truncated", "", "the image is damaged", encodeJPEG(t, twoTone(200, 200))[:300]},
	} {
		format, err := thumbnail.Check(bytes.NewReader(tc.data))
		if format != tc.format {
			t.Errorf("%s: format %q, want %q", tc.name, format, tc.format)
		}
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("%s: %v, want accepted", tc.name, err)
		case tc.reason != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.reason)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.reason)
		}
	}
}

// TestHandleWebP makes thumbnails of lossy and lossless WebP originals (from
// golang.org/x/image's test data; see testdata/README).
func TestHandleWebP(t *testing.T) {
	ctx := context.Background()
	blobs := newBlobs(t)
	cat := &fakeCatalog{}
	// The files are small (150x100, 75x100): sizes below them show scaling.
	w := thumbnail.New(blobs, cat, testenv.Logger(t), thumbnail.WithSizes([]thumbnail.Size{{Name: "small", Max: 30}, {Name: "medium", Max: 60}, {Name: "large", Max: 1024}}))
	for _, tc := range []struct {
		file                 string
		small, medium, large image.Point
	}{
		{"blue-purple-pink.lossy.webp", image.Pt(30, 20), image.Pt(60, 40), image.Pt(150, 100)},
		{"gopher-doc.8bpp.lossless.webp", image.Pt(30, 40), image.Pt(60, 80), image.Pt(75, 100)},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile("testdata/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			id := "prd_" + strings.NewReplacer(".", "_", "-", "_").Replace(tc.file)
			key := "products/" + id + "/original.webp"
			put(t, blobs, key, data)
			cat.calls = nil
			if err := w.Handle(ctx, event(t, id, key)); err != nil {
				t.Fatal(err)
			}
			if len(cat.calls) != 1 || len(cat.calls[0]) != 3 {
				t.Fatalf("SetThumbnails calls %v, want one with three sizes", cat.calls)
			}
			for size, want := range map[string]image.Point{"small": tc.small, "medium": tc.medium, "large": tc.large} {
				key := cat.calls[0][size]
				wantVersionedKey(t, blobs, id, size, key)
				if got := decodeBlob(t, blobs, key).Bounds().Size(); got != want {
					t.Errorf("%s: %v, want %v", size, got, want)
				}
			}
			// The large one (the original's size) looks like the original.
			src, _, err := image.Decode(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			large := decodeBlob(t, blobs, cat.calls[0]["large"])
			b := src.Bounds()
			for _, p := range []image.Point{{b.Dx() / 4, b.Dy() / 4}, {b.Dx() / 2, b.Dy() / 2}, {3 * b.Dx() / 4, 3 * b.Dy() / 4}} {
				r, g, bl, a := src.At(b.Min.X+p.X, b.Min.Y+p.Y).RGBA()
				if a>>8 < 250 {
					continue // transparent parts become white
				}
				if !near(large.At(p.X, p.Y), uint8(r>>8), uint8(g>>8), uint8(bl>>8)) {
					t.Errorf("pixel %v: %v, original %v", p, large.At(p.X, p.Y), src.At(b.Min.X+p.X, b.Min.Y+p.Y))
				}
			}
			if len(cat.failed) != 0 {
				t.Fatalf("failures recorded: %v", cat.failed)
			}
		})
	}
}

// TestBombRefusedWithoutAllocating: originals whose header claims more
// pixels than allowed are refused from the header, before their pixels are
// decoded: a 100000x100000 PNG of a few dozen bytes, and a valid 7000x7000
// PNG (49 MB of pixels in 50 kB) that would decode if it were not refused.
func TestBombRefusedWithoutAllocating(t *testing.T) {
	ctx := context.Background()
	blobs := newBlobs(t)
	cat := &fakeCatalog{}
	w := thumbnail.New(blobs, cat, testenv.Logger(t))
	real := grayPNG(t, 7000, 7000, 7000)
	if cfg, err := png7000(real); err != nil || cfg != image.Pt(7000, 7000) {
		t.Fatalf("the 7000x7000 PNG is not valid: %v %v", cfg, err)
	}
	for id, data := range map[string][]byte{"prd_bomb": bombPNG(t, 100_000, 100_000), "prd_49mp": real} {
		key := "products/" + id + "/original.png"
		put(t, blobs, key, data)
		ev := event(t, id, key)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := w.Handle(ctx, ev)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatalf("%s: Handle = %v, want nil (acknowledged)", id, err)
		}
		// Reading the blob and its header costs about its size; decoding
		// would cost at least the pixels (49 MB, or 10 GB for the bomb).
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s (%d bytes): Handle allocated %d bytes", id, len(data), alloc)
		if alloc > 4<<20 {
			t.Errorf("%s: Handle allocated %d bytes; the pixels were decoded", id, alloc)
		}
		if !strings.Contains(cat.failed[id], "pixels") {
			t.Errorf("%s: failure %q, want the size named", id, cat.failed[id])
		}
	}
	if len(cat.calls) != 0 {
		t.Fatalf("thumbnails recorded for bombs: %v", cat.calls)
	}
}

// png7000 decodes the whole test PNG (to prove it would decode) and returns
// its size.
func png7000(data []byte) (image.Point, error) {
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return image.Point{}, err
	}
	return img.Bounds().Size(), nil
}

// TestFailureRecordRetried: when the catalog cannot record the failure, the
// event is redelivered (the error is returned), and the redelivery records it.
func TestFailureRecordRetried(t *testing.T) {
	ctx := context.Background()
	blobs := newBlobs(t)
	put(t, blobs, "products/prd_t/original.png", []byte("not an image"))
	ev := event(t, "prd_t", "products/prd_t/original.png")
	down := &fakeCatalog{err: errs.E("catalog PUT", errs.Unavailable, errors.New("connection refused"))}
	if err := thumbnail.New(blobs, down, testenv.Logger(t)).Handle(ctx, ev); !errs.Is(errs.Unavailable, err) {
		t.Fatalf("catalog down: Handle = %v, want the error (redelivery)", err)
	}
	cat := &fakeCatalog{}
	if err := thumbnail.New(blobs, cat, testenv.Logger(t)).Handle(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if cat.failed["prd_t"] == "" {
		t.Fatal("failure not recorded on redelivery")
	}
	// A product gone meanwhile: nothing to record, acknowledged.
	gone := &fakeCatalog{err: errs.E("catalog PUT", errs.NotFound, errs.Msg("no such product"))}
	if err := thumbnail.New(blobs, gone, testenv.Logger(t)).Handle(ctx, ev); err != nil {
		t.Fatalf("product gone: Handle = %v, want nil", err)
	}
}

// TestThroughBusFailure runs a real catalog, outbox relay, embedded broker
// and worker: a product whose original is not an image gets its thumbnails
// marked failed in the catalog (over its HTTP API too), and the queue goes
// on: an item listed after it gets its thumbnails.
func TestThroughBusFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := testenv.Bus(t)
	db := testenv.SQLite(t)
	store, err := catalogdb.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	blobs := newBlobs(t)
	relay := outbox.NewRelay(db, b, testenv.Logger(t))
	relayDone := make(chan struct{})
	go func() { relay.Run(ctx); close(relayDone) }()
	t.Cleanup(func() { cancel(); <-relayDone })

	svc := catalog.NewService(store, blobs, relay.Kick, clock.Real{})
	if err := svc.EnsureCategories(ctx, []catalog.Category{{ID: "home", Name: "Home"}}); err != nil {
		t.Fatal(err)
	}
	w := thumbnail.New(blobs, svc, testenv.Logger(t))
	if err := b.Subscribe(ctx, thumbnail.ConsumerName, thumbnail.Subjects, w.Handle); err != nil {
		t.Fatal(err)
	}

	// An original that got past ListItem's checks some other way (an
	// older version, a partner upload, a damaged blob): not an image.
	const badKey = "products/prd_bad/original-0123456789ab.png"
	put(t, blobs, badKey, []byte("<html>not a picture</html>"))
	if err := store.CreateProduct(ctx, catalog.Record{ID: "prd_bad", Name: "Broken", Description: "x", Category: "home",
		Price: money.USD(100), Stock: 1, ImageKey: badKey, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	relay.Kick()
	good, err := svc.ListItem(ctx, catalog.NewItem{
		Name: "Lamp", Description: "A lamp.", Category: "home", Price: money.USD(2500), Stock: 3,
		Image: encodeJPEG(t, twoTone(1200, 900)),
	})
	if err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 10*time.Second, func() error {
		f, err := svc.ThumbnailFailure(ctx, "prd_bad")
		if err != nil {
			return err
		}
		if f.Reason == "" {
			return errors.New("not marked failed yet")
		}
		got, err := svc.GetProduct(ctx, good.ID)
		if err != nil {
			return err
		}
		if len(got.Thumbnails) != 3 {
			return errors.New("the good item has no thumbnails yet")
		}
		return nil
	})
	f, _ := svc.ThumbnailFailure(ctx, "prd_bad")
	if !strings.HasPrefix(f.Reason, "not a JPEG, PNG or WebP image") || f.At.IsZero() {
		t.Fatalf("failure %+v", f)
	}
	if p, _ := svc.GetProduct(ctx, "prd_bad"); len(p.Thumbnails) != 0 {
		t.Fatalf("the broken product has thumbnails %v", p.Thumbnails)
	}
}
