package app_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/pkg/shopclient"
)

// searchSuite checks search's count, sorts, facets, filters, suggestion and
// pages against the demo catalog, whose lamps are the Brass Table Lamp
// (home, $64) and the Smart LED Desk Lamp (electronics, $69).
func searchSuite(t *testing.T, c *client) {
	t.Helper()
	lamps := []string{"prd_home_07", "prd_electronics_06"}
	var res shopclient.SearchResults
	testenv.CheckFor(t, 30*time.Second, func() error {
		c.must(200, "GET", "/api/v1/search?q=lamp&sort=price_desc", nil).decode(t, &res)
		var got []string
		for _, p := range res.Items {
			got = append(got, p.ID)
		}
		if !slices.Equal(got, []string{"prd_electronics_06", "prd_home_07"}) {
			return fmt.Errorf("lamps dearest first = %v, want [prd_electronics_06 prd_home_07]", got)
		}
		return nil
	})
	if res.Total != 2 || res.Start != 0 || res.NextPageToken != "" {
		t.Errorf("lamps: total %d, start %d, next %q", res.Total, res.Start, res.NextPageToken)
	}
	cats := map[string]int{}
	for _, c := range res.Facets.Categories {
		cats[c.ID] = c.Count
		if c.Name == "" || c.Name == c.ID {
			t.Errorf("category facet %+v has no name", c)
		}
	}
	if cats["home"] != 1 || cats["electronics"] != 1 || len(cats) != 2 {
		t.Errorf("category facet = %+v, want home 1 and electronics 1", res.Facets.Categories)
	}
	priced := 0
	for _, p := range res.Facets.Prices {
		if p.MinPrice == 5000 && p.MaxPrice == 10000 {
			priced = p.Count
		}
	}
	if priced != 2 {
		t.Errorf("price facet = %+v, want both lamps from $50 to $100", res.Facets.Prices)
	}

	// Filters: the home category; a price range only the brass lamp is in.
	for _, q := range []string{"q=lamp&category=home", "q=lamp&min_price=6000&max_price=6500"} {
		c.must(200, "GET", "/api/v1/search?"+q, nil).decode(t, &res)
		if res.Total != 1 || len(res.Items) != 1 || res.Items[0].ID != lamps[0] {
			t.Errorf("%s = %+v, want the brass lamp alone", q, res.Items)
		}
	}

	// Pages of one, cheapest first, join up.
	var got []string
	token := ""
	for range 3 {
		c.must(200, "GET", "/api/v1/search?q=lamp&sort=price_asc&page_size=1&page_token="+token, nil).decode(t, &res)
		for _, p := range res.Items {
			got = append(got, p.ID)
		}
		if token = res.NextPageToken; token == "" {
			break
		}
	}
	if !slices.Equal(got, lamps) {
		t.Errorf("lamps cheapest first, a page each = %v, want %v", got, lamps)
	}

	// Did you mean.
	c.must(200, "GET", "/api/v1/search?q=lamb", nil).decode(t, &res)
	if res.Total != 0 || res.Suggestion != "lamp" {
		t.Errorf("lamb: total %d, suggestion %q; want 0 and lamp", res.Total, res.Suggestion)
	}

	// Bad parameters.
	for _, q := range []string{"q=lamp&sort=cheapest", "q=lamp&min_price=-1", "q=lamp&min_price=500&max_price=100", "q=lamp&max_price=x"} {
		c.must(400, "GET", "/api/v1/search?"+q, nil)
	}
}
