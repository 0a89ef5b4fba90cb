package search_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/search"
)

// TestSearchHTTPBadQuery: a query string that does not parse, or a page
// token that is not this query's, is a 400 problem+json rather than the
// first page.
func TestSearchHTTPBadQuery(t *testing.T) {
	svc, _ := newService(t)
	feed(t, svc, catalogue...)
	srv := httptest.NewServer(search.NewHandler(svc))
	t.Cleanup(srv.Close)
	for _, raw := range []string{
		"q=lamp&page_token=%%%%",
		"q=lamp&page_token=" + search.SearchToken(search.Query{Text: "lamps"}, 10),
		"q=lamp&page_token=" + page.Token("orders/newest/usr_1", "1", "ord_1"),
		"q=lamp;page_size=2",
		"q=%zz",
	} {
		resp, err := http.Get(srv.URL + "/svc/search/v1/search?" + raw)
		if err != nil {
			t.Fatal(err)
		}
		var p errs.Problem
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") || err != nil || p.Detail == "" {
			t.Errorf("GET ?%s = %d %s %+v (%v); want 400 problem+json with a detail", raw, resp.StatusCode, resp.Header.Get("Content-Type"), p, err)
		}
	}
}
