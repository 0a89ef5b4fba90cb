package catalog_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// TestThumbnailFailure is the contract of SetThumbnailsFailed and
// ThumbnailFailure, run against *Service (with and without the product
// cache) and against *Client over HTTP.
func TestThumbnailFailure(t *testing.T) {
	for _, mode := range []struct {
		name           string
		remote, cached bool
	}{{"service", false, false}, {"service+cache", false, true}, {"http", true, false}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			testThumbnailFailure(t, newEnv(t, mode.remote, mode.cached))
		})
	}
}

func testThumbnailFailure(t *testing.T, e *env) {
	ctx := context.Background()
	p := e.list(t, newItem(t, "Vase", "home", 1))
	other := e.list(t, newItem(t, "Jug", "home", 1))

	// None recorded yet.
	if f, err := e.api.ThumbnailFailure(ctx, p.ID); err != nil || f != (catalog.ThumbnailFailure{}) {
		t.Fatalf("before: %+v, %v; want none", f, err)
	}

	const reason = "the png image is 100000x100000 pixels; at most 10000 a side are accepted"
	if err := e.api.SetThumbnailsFailed(ctx, p.ID, reason); err != nil {
		t.Fatal(err)
	}
	f, err := e.api.ThumbnailFailure(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if f.Reason != reason || !f.At.Equal(e.clockNow) {
		t.Fatalf("failure %+v, want %q at %v", f, reason, e.clockNow)
	}
	// Only that product.
	if f, err := e.api.ThumbnailFailure(ctx, other.ID); err != nil || f.Reason != "" {
		t.Fatalf("other product: %+v, %v", f, err)
	}
	// The product is otherwise as it was, without thumbnails.
	if got, err := e.api.GetProduct(ctx, p.ID); err != nil || len(got.Thumbnails) != 0 || got.Version != p.Version {
		t.Fatalf("product after the failure: %+v, %v", got, err)
	}

	// A repeat (a redelivered job) replaces the reason and time.
	e.clk.Advance(time.Minute)
	if err := e.api.SetThumbnailsFailed(ctx, p.ID, "  the image is damaged\n\x00"); err != nil {
		t.Fatal(err)
	}
	if f, _ := e.api.ThumbnailFailure(ctx, p.ID); f.Reason != "the image is damaged" || !f.At.Equal(e.clockNow.Add(time.Minute)) {
		t.Fatalf("after a repeat: %+v", f)
	}

	// A long reason is cut, on a character boundary.
	long := strings.Repeat("é", catalog.MaxThumbnailFailureReason)
	if err := e.api.SetThumbnailsFailed(ctx, p.ID, long); err != nil {
		t.Fatal(err)
	}
	if f, _ := e.api.ThumbnailFailure(ctx, p.ID); len(f.Reason) != catalog.MaxThumbnailFailureReason || f.Reason != long[:catalog.MaxThumbnailFailureReason] {
		t.Fatalf("long reason recorded as %d bytes %q...", len(f.Reason), f.Reason[:min(len(f.Reason), 20)])
	}

	wantKind(t, "empty reason", e.api.SetThumbnailsFailed(ctx, p.ID, " \n "), errs.Invalid)
	wantKind(t, "unknown product", e.api.SetThumbnailsFailed(ctx, "prd_nope", reason), errs.NotFound)
	_, err = e.api.ThumbnailFailure(ctx, "prd_nope")
	wantKind(t, "unknown product", err, errs.NotFound)

	// Thumbnails made afterwards (a replayed job after a fix) supersede
	// the failure.
	keys := map[string]string{"small": "products/" + p.ID + "/thumb-small-0123456789ab.jpg"}
	if err := e.api.SetThumbnails(ctx, p.ID, keys); err != nil {
		t.Fatal(err)
	}
	if f, err := e.api.ThumbnailFailure(ctx, p.ID); err != nil || f.Reason != "" {
		t.Fatalf("after thumbnails were made: %+v, %v; want none", f, err)
	}
}
