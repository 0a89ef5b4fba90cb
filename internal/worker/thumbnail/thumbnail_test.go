package thumbnail_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/catalog/catalogdb"
	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/worker/thumbnail"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fakeCatalog records SetThumbnails and SetThumbnailsFailed calls and fails
// with err when set.
type fakeCatalog struct {
	mu     sync.Mutex
	calls  []map[string]string
	failed map[string]string // product id -> reason
	err    error
}

func (f *fakeCatalog) SetThumbnailsFailed(ctx context.Context, id, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if f.failed == nil {
		f.failed = map[string]string{}
	}
	f.failed[id] = reason
	return nil
}

func (f *fakeCatalog) SetThumbnails(ctx context.Context, id string, keys map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.calls = append(f.calls, maps.Clone(keys))
	return nil
}

// twoTone is a w x h image, red on the left half and blue on the right.
func twoTone(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.NRGBA{220, 20, 20, 255}
			if x >= w/2 {
				c = color.NRGBA{20, 20, 220, 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	return img
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// event is the ThumbnailRequested job of a product's image, as the catalog
// enqueues it (every size).
func event(t testing.TB, productID, imageKey string, sizes ...string) bus.Event {
	t.Helper()
	data, err := json.Marshal(catalog.ThumbnailRequested{ProductID: productID, ImageKey: imageKey, Sizes: sizes, RequestedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return bus.Event{ID: catalog.ThumbnailJobID(productID, imageKey), Type: catalog.SubjectThumbnailRequested, Time: time.Now(), Data: data}
}

// listedEvent is the ItemListed event through which versions before the
// jobs asked for thumbnails (the legacy consumer's).
func listedEvent(t testing.TB, productID, imageKey string) bus.Event {
	t.Helper()
	data, err := json.Marshal(catalog.ItemListed{ProductID: productID, Name: "Thing", Category: "home", Price: money.USD(100), ImageKey: imageKey})
	if err != nil {
		t.Fatal(err)
	}
	return bus.Event{ID: productID, Type: catalog.SubjectItemListed, Time: time.Now(), Data: data}
}

// TestHandleSizesAndLegacyEvents: a job naming sizes gets those only; one
// naming no size the worker makes is a dead letter; an ItemListed event of
// the legacy consumer makes every size, as a job does.
func TestHandleSizesAndLegacyEvents(t *testing.T) {
	ctx := context.Background()
	blobs := newBlobs(t)
	cat := &fakeCatalog{}
	w := thumbnail.New(blobs, cat, testenv.Logger(t))
	put(t, blobs, "products/prd_1/original.jpg", encodeJPEG(t, twoTone(1200, 900)))
	if err := w.Handle(ctx, event(t, "prd_1", "products/prd_1/original.jpg", "small", "nope")); err != nil {
		t.Fatal(err)
	}
	if err := w.Handle(ctx, event(t, "prd_1", "products/prd_1/original.jpg", "nope")); !bus.IsPermanent(err) {
		t.Errorf("a job for no known size: %v, want a permanent error", err)
	}
	if err := w.Handle(ctx, listedEvent(t, "prd_1", "products/prd_1/original.jpg")); err != nil {
		t.Fatal(err)
	}
	if len(cat.calls) != 2 || len(cat.calls[0]) != 1 || cat.calls[0]["small"] == "" || len(cat.calls[1]) != len(thumbnail.Sizes) {
		t.Fatalf("SetThumbnails calls %+v: want the small one, then every size", cat.calls)
	}
}

func newBlobs(t testing.TB) *blob.FS {
	t.Helper()
	b, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func put(t testing.TB, s blob.Store, key string, b []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
}

// decodeBlob reads a blob as a JPEG image.
func decodeBlob(t testing.TB, s blob.Store, key string) image.Image {
	t.Helper()
	obj, _, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	img, format, err := image.Decode(obj)
	if err != nil || format != "jpeg" {
		t.Fatalf("%s: %v, format %q; want a JPEG", key, err, format)
	}
	return img
}

func near(c color.Color, r, g, b uint8) bool {
	cr, cg, cb, _ := c.RGBA()
	d := func(a uint32, b uint8) bool { return int(a>>8)-int(b) < 40 && int(b)-int(a>>8) < 40 }
	return d(cr, r) && d(cg, g) && d(cb, b)
}

func TestFit(t *testing.T) {
	for _, tc := range []struct{ w, h, mw, mh, ww, wh int }{
		{800, 600, 160, 160, 160, 120},
		{600, 800, 160, 160, 120, 160},
		{800, 600, 480, 480, 480, 360},
		{1000, 1000, 160, 160, 160, 160},
		{4000, 10, 160, 160, 160, 1}, // never below 1 pixel
		{10, 4000, 480, 480, 1, 480},
		{100, 50, 160, 160, 100, 50}, // never enlarged
		{160, 160, 160, 160, 160, 160},
		{333, 1000, 160, 160, 53, 160}, // rounded
		{3999, 4000, 480, 480, 480, 480},
	} {
		if w, h := thumbnail.Fit(tc.w, tc.h, tc.mw, tc.mh); w != tc.ww || h != tc.wh {
			t.Errorf("Fit(%d, %d, %d, %d) = %d, %d; want %d, %d", tc.w, tc.h, tc.mw, tc.mh, w, h, tc.ww, tc.wh)
		}
	}
}

func TestResize(t *testing.T) {
	src := twoTone(800, 600)
	dst := thumbnail.Resize(src, 160, 160)
	if dst.Bounds() != image.Rect(0, 0, 160, 120) {
		t.Fatalf("bounds %v, want 160x120", dst.Bounds())
	}
	// Scaled, not cropped: the left edge is red and the right edge blue.
	if !near(dst.At(2, 60), 220, 20, 20) || !near(dst.At(157, 60), 20, 20, 220) {
		t.Fatalf("colours at the edges: %v, %v", dst.At(2, 60), dst.At(157, 60))
	}

	// Transparent parts become white.
	clear := image.NewNRGBA(image.Rect(0, 0, 300, 300))
	if got := thumbnail.Resize(clear, 160, 160).At(80, 80); !near(got, 255, 255, 255) {
		t.Fatalf("transparent pixel became %v, want white", got)
	}
}

func TestHandle(t *testing.T) {
	ctx := context.Background()
	blobs := newBlobs(t)
	cat := &fakeCatalog{}
	w := thumbnail.New(blobs, cat, testenv.Logger(t))

	for _, tc := range []struct {
		name                 string
		id                   string
		original             []byte
		ext                  string
		small, medium, large image.Point
	}{
		// Scaled to 160, 480 and 1024 wide, never enlarged.
		{"landscape png", "prd_land", encodePNG(t, twoTone(800, 600)), "png", image.Pt(160, 120), image.Pt(480, 360), image.Pt(800, 600)},
		{"big jpeg", "prd_big", encodeJPEG(t, twoTone(2000, 1000)), "jpg", image.Pt(160, 80), image.Pt(480, 240), image.Pt(1024, 512)},
		{"portrait jpeg", "prd_port", encodeJPEG(t, twoTone(300, 900)), "jpg", image.Pt(160, 480), image.Pt(300, 900), image.Pt(300, 900)},
		{"small png", "prd_tiny", encodePNG(t, twoTone(100, 50)), "png", image.Pt(100, 50), image.Pt(100, 50), image.Pt(100, 50)},
		{"between sizes", "prd_mid", encodeJPEG(t, twoTone(400, 200)), "jpg", image.Pt(160, 80), image.Pt(400, 200), image.Pt(400, 200)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cat.calls = nil
			key := "products/" + tc.id + "/original." + tc.ext
			put(t, blobs, key, tc.original)
			for range 2 { // idempotent: a redelivery does the same again
				if err := w.Handle(ctx, event(t, tc.id, key)); err != nil {
					t.Fatal(err)
				}
			}
			if len(cat.calls) != 2 || !maps.Equal(cat.calls[0], cat.calls[1]) {
				t.Fatalf("SetThumbnails calls %v, want twice the same keys", cat.calls)
			}
			want := cat.calls[0]
			if len(want) != 3 {
				t.Fatalf("thumbnails %v, want small, medium and large", want)
			}
			for size, key := range want {
				wantVersionedKey(t, blobs, tc.id, size, key)
			}
			for size, wantSize := range map[string]image.Point{"small": tc.small, "medium": tc.medium, "large": tc.large} {
				img := decodeBlob(t, blobs, want[size])
				if img.Bounds().Size() != wantSize {
					t.Errorf("%s: %v, want %v", size, img.Bounds().Size(), wantSize)
				}
				b := img.Bounds()
				if !near(img.At(b.Min.X+1, b.Dy()/2), 220, 20, 20) || !near(img.At(b.Max.X-2, b.Dy()/2), 20, 20, 220) {
					t.Errorf("%s: the picture was not scaled whole", size)
				}
			}
		})
	}
}

func TestHandlePermanentFailures(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	blobs, err := blob.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	cat := &fakeCatalog{}
	w := thumbnail.New(blobs, cat, testenv.Logger(t))
	put(t, blobs, "products/prd_bad/original.png", []byte("\x89PNG\r\n\x1a\n but not really"))
	put(t, blobs, "products/prd_trunc/original.jpg", encodeJPEG(t, twoTone(200, 200))[:300])

	put(t, blobs, "products/prd_text/original.png", []byte("hello, I am a text file"))
	put(t, blobs, "products/prd_huge/original.png", bombPNG(t, 100_000, 100_000))
	put(t, blobs, "products/prd_wide/original.png", bombPNG(t, 10_001, 1))

	for name, ev := range map[string]bus.Event{
		"missing original": event(t, "prd_gone", "products/prd_gone/original.png"),
		"not an image":     event(t, "prd_bad", "products/prd_bad/original.png"),
		"text":             event(t, "prd_text", "products/prd_text/original.png"),
		"too large":        event(t, "prd_huge", "products/prd_huge/original.png"),
		"too wide":         event(t, "prd_wide", "products/prd_wide/original.png"),
		"truncated jpeg":   event(t, "prd_trunc", "products/prd_trunc/original.jpg"),
		"no product id":    event(t, "", "products/x/original.png"),
		"bad image key":    event(t, "prd_x", "../../etc/passwd"),
		"bad product id":   event(t, "../x", "products/x/original.png"),
	} {
		if err := w.Handle(ctx, ev); err != nil {
			t.Errorf("%s: Handle = %v, want nil (acknowledged, not retried)", name, err)
		}
	}
	// An event that cannot be decoded can never succeed: a permanent
	// error sends it to the dead letters with the reason.
	bad := bus.Event{ID: "x", Type: catalog.SubjectItemListed, Data: json.RawMessage(`"nope"`)}
	if err := w.Handle(ctx, bad); !bus.IsPermanent(err) {
		t.Errorf("bad payload: Handle = %v, want a permanent error", err)
	}
	if len(cat.calls) != 0 {
		t.Fatalf("SetThumbnails called for unusable events: %v", cat.calls)
	}
	// Every product named by a usable event is marked failed, with a reason
	// that says what is wrong; events naming no product mark nothing.
	for id, want := range map[string]string{
		"prd_gone":  "the original image is missing",
		"prd_bad":   "the image is damaged",
		"prd_text":  "not a JPEG, PNG or WebP image",
		"prd_huge":  "the png image is 100000x100000 pixels; at most 10000 a side are accepted",
		"prd_wide":  "the png image is 10001x1 pixels; at most 10000 a side are accepted",
		"prd_trunc": "the image is damaged",
		"prd_x":     "the original image has an invalid key",
	} {
		if got := cat.failed[id]; got != want {
			t.Errorf("%s: failure reason %q, want %q", id, got, want)
		}
	}
	if len(cat.failed) != 7 {
		t.Errorf("failures recorded: %v, want the 7 products above", cat.failed)
	}
	for _, f := range blobFiles(t, dir) {
		if strings.Contains(f, "/thumb-") {
			t.Errorf("a thumbnail was written: %s", f)
		}
	}

	// A product deleted meanwhile is not worth retrying either.
	put(t, blobs, "products/prd_ok/original.png", encodePNG(t, twoTone(50, 50)))
	cat.err = errs.E("catalog.SetThumbnails", errs.NotFound, errs.Msg("no such product"))
	if err := w.Handle(ctx, event(t, "prd_ok", "products/prd_ok/original.png")); err != nil {
		t.Fatalf("product gone: Handle = %v, want nil", err)
	}
}

// failingBlobs is a blob store whose Put fails.
type failingBlobs struct{ blob.Store }

func (failingBlobs) Put(ctx context.Context, key string, r io.Reader) error {
	return errs.E("blob.Put", errs.Unavailable, errors.New("disk on fire"))
}

func TestHandleRetryableFailures(t *testing.T) {
	ctx := context.Background()
	blobs := newBlobs(t)
	put(t, blobs, "products/prd_1/original.png", encodePNG(t, twoTone(64, 64)))
	ev := event(t, "prd_1", "products/prd_1/original.png")

	// The blob store fails first: no thumbnail is stored yet (a stored one
	// is not written again, so a failing store would go unnoticed).
	cat := &fakeCatalog{}
	if err := thumbnail.New(failingBlobs{blobs}, cat, testenv.Logger(t)).Handle(ctx, ev); err == nil {
		t.Fatal("blob store failing: Handle = nil, want the error (redelivery)")
	}
	if len(cat.calls) != 0 {
		t.Fatal("SetThumbnails called although the thumbnails were not stored")
	}
	down := &fakeCatalog{err: errs.E("catalog PUT", errs.Unavailable, errors.New("connection refused"))}
	if err := thumbnail.New(blobs, down, testenv.Logger(t)).Handle(ctx, ev); !errs.Is(errs.Unavailable, err) {
		t.Fatalf("catalog down: Handle = %v, want the error (redelivery)", err)
	}
	// Once things work again, the redelivery succeeds.
	if err := thumbnail.New(blobs, cat, testenv.Logger(t)).Handle(ctx, ev); err != nil || len(cat.calls) != 1 {
		t.Fatalf("retry: %v, %d calls", err, len(cat.calls))
	}
}

// TestThroughBus lists an item in a real catalog service whose outbox relay
// publishes to an embedded broker, and checks that the subscribed worker ends
// up recording its thumbnails.
func TestThroughBus(t *testing.T) {
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

	p, err := svc.ListItem(ctx, catalog.NewItem{
		Name: "Lamp", Description: "A lamp.", Category: "home", Price: money.USD(2500), Stock: 3,
		Image: encodeJPEG(t, twoTone(1200, 900)),
	})
	if err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 10*time.Second, func() error {
		got, err := svc.GetProduct(ctx, p.ID)
		if err != nil {
			return err
		}
		if len(got.Thumbnails) != 3 {
			return errors.New("no thumbnails yet")
		}
		p = got
		return nil
	})
	for size, url := range p.Thumbnails {
		key, ok := strings.CutPrefix(url, catalog.MediaPrefix)
		if !ok {
			t.Fatalf("%s thumbnail URL %q is not under %s", size, url, catalog.MediaPrefix)
		}
		wantVersionedKey(t, blobs, p.ID, size, key)
	}
	if got := decodeBlob(t, blobs, strings.TrimPrefix(p.Thumbnails["medium"], catalog.MediaPrefix)).Bounds().Size(); got != image.Pt(480, 360) {
		t.Fatalf("medium thumbnail is %v, want 480x360", got)
	}
}

// BenchmarkResize scales a 1600x1200 photo-sized image to each thumbnail
// size, straight from the original.
func BenchmarkResize(b *testing.B) {
	src := image.NewRGBA(image.Rect(0, 0, 1600, 1200))
	for y := range 1200 {
		for x := range 1600 {
			src.SetRGBA(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	for _, sz := range thumbnail.Sizes {
		b.Run(sz.Name, func(b *testing.B) {
			for b.Loop() {
				thumbnail.Resize(src, sz.Max, sz.Max)
			}
		})
	}
}

// BenchmarkHandle is the whole job for one 1200x900 JPEG original: decode,
// both thumbnails, encode, store.
func BenchmarkHandle(b *testing.B) {
	blobs := newBlobs(b)
	put(b, blobs, "products/prd_b/original.jpg", encodeJPEG(b, twoTone(1200, 900)))
	w := thumbnail.New(blobs, &fakeCatalog{}, testenv.Logger(b))
	ev := event(b, "prd_b", "products/prd_b/original.jpg")
	for b.Loop() {
		if err := w.Handle(context.Background(), ev); err != nil {
			b.Fatal(err)
		}
	}
}
