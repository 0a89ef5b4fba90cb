package catalogdb_test

import (
	"context"
	"testing"

	"github.com/globomantics/globomantics/internal/catalog/catalogdb"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestThumbnailFailure: the failure is stored with the product on every
// backend, read back from the primary, and superseded by thumbnails.
func TestThumbnailFailure(t *testing.T) {
	ctx := context.Background()
	for _, be := range testenv.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			t.Parallel()
			s, err := catalogdb.Open(ctx, be.Open(t))
			if err != nil {
				t.Fatal(err)
			}
			ensureCats(t, s)
			create(t, s, rec("prd_1", "home", 1))
			create(t, s, rec("prd_2", "home", 1))

			if f, err := s.ThumbnailFailure(ctx, "prd_1"); err != nil || f.Reason != "" || !f.At.IsZero() {
				t.Fatalf("before: %+v, %v", f, err)
			}
			if err := s.SetThumbnailsFailed(ctx, "prd_1", "not a JPEG, PNG or WebP image", t0); err != nil {
				t.Fatal(err)
			}
			f, err := s.ThumbnailFailure(ctx, "prd_1")
			if err != nil || f.Reason != "not a JPEG, PNG or WebP image" || !f.At.Equal(t0) {
				t.Fatalf("after: %+v, %v", f, err)
			}
			if f, err := s.ThumbnailFailure(ctx, "prd_2"); err != nil || f.Reason != "" {
				t.Fatalf("another product: %+v, %v", f, err)
			}
			if err := s.SetThumbnailsFailed(ctx, "prd_nope", "x", t0); !errs.Is(errs.NotFound, err) {
				t.Fatalf("unknown product: %v", err)
			}
			if _, err := s.ThumbnailFailure(ctx, "prd_nope"); !errs.Is(errs.NotFound, err) {
				t.Fatalf("unknown product: %v", err)
			}
			// The other columns are untouched.
			r, err := s.GetProduct(ctx, "prd_1")
			if err != nil || r.Stock != 1 || r.Version != 1 || len(r.ThumbnailKeys) != 0 {
				t.Fatalf("product: %+v, %v", r, err)
			}
			if err := s.SetThumbnails(ctx, "prd_1", map[string]string{"small": "products/prd_1/thumb-small.jpg"}, t0); err != nil {
				t.Fatal(err)
			}
			if f, err := s.ThumbnailFailure(ctx, "prd_1"); err != nil || f.Reason != "" {
				t.Fatalf("after thumbnails: %+v, %v", f, err)
			}
		})
	}
}
