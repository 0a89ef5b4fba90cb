package httpx_test

import (
	"net/http/httptest"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

func TestQuery(t *testing.T) {
	for _, raw := range []string{"", "a=1", "a=1&b=%C3%A9", "a=1&a=2&c", "page_token=abc_-"} {
		r := httptest.NewRequest("GET", "/x?"+raw, nil)
		v, err := httpx.Query(r)
		if err != nil {
			t.Errorf("Query(%q) = %v", raw, err)
			continue
		}
		if want := r.URL.Query(); v.Encode() != want.Encode() {
			t.Errorf("Query(%q) = %v, want %v", raw, v, want)
		}
	}
	for _, raw := range []string{"page_token=%%%%", "a=%zz", "a=1;b=2", "%"} {
		r := httptest.NewRequest("GET", "/x", nil)
		r.URL.RawQuery = raw
		_, err := httpx.Query(r)
		if !errs.Is(errs.BadRequest, err) || errs.Detail(err) != "the query string is not valid" {
			t.Errorf("Query(%q) = %v (%q); want BadRequest", raw, err, errs.Detail(err))
		}
	}
}
