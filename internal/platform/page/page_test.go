package page_test

import (
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/page"
)

func TestParseDefaults(t *testing.T) {
	r, err := page.Parse("", "")
	if err != nil || r != (page.Request{Size: page.DefaultSize}) {
		t.Fatalf("Parse(\"\", \"\") = %+v, %v", r, err)
	}
	for size, want := range map[string]int{"1": 1, "50": 50, "100": page.MaxSize} {
		r, err := page.Parse(size, "")
		if err != nil || r.Size != want || r.Token != "" {
			t.Errorf("Parse(%q) = %+v, %v", size, r, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, size := range []string{"0", "-1", "101", "1000000000000000000000", "ten", "1.5", " 5", "5 "} {
		r, err := page.Parse(size, "")
		if !errs.Is(errs.BadRequest, err) || r != (page.Request{}) {
			t.Errorf("Parse(size %q) = %+v, %v; want BadRequest", size, r, err)
			continue
		}
		if d := errs.Detail(err); d != "page_size must be an integer from 1 to 100" {
			t.Errorf("size %q: detail %q", size, d)
		}
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, tok := range []string{
		"!!!",                                  // not base64
		"%%%%",                                 // not base64
		b64("o:20"),                            // the old offset tokens
		b64(`{"v":2,"l":"x","k":["a"]}`),       // a future version
		b64(`{"v":1,"l":"","k":["a"]}`),        // no list
		b64(`{"v":1,"l":"x","k":[]}`),          // no key
		b64(`{"v":1,"l":"x","k":[1]}`),         // key of another type
		b64(`{"v":1,"l":"x","k":["a"],"o":5}`), // unknown field
		b64(`{"v":1,"l":"x","k":["a"]}{}`),     // trailing data
		page.Token("x", "a") + "==",            // padded
		strings.TrimRight(base64.URLEncoding.EncodeToString([]byte(`{"v":1,"l":"x","k":["ab"]}`)), "=") + "x", // bad length
		"ABC",
	} {
		r, err := page.Parse("", tok)
		if !errs.Is(errs.BadRequest, err) || r != (page.Request{}) {
			t.Errorf("Parse(token %q) = %+v, %v; want BadRequest", tok, r, err)
			continue
		}
		if d := errs.Detail(err); d != "page_token is not valid" {
			t.Errorf("token %q: detail %q", tok, d)
		}
	}
}

func TestTokenRoundTrip(t *testing.T) {
	keys := [][]string{{"a"}, {"1712345678901", "ord_x"}, {"ünicode & ?#=/+", ""}}
	for _, key := range keys {
		tok := page.Token("orders/newest", key...)
		if strings.ContainsAny(tok, "+/=&?# ") {
			t.Errorf("Token(%q) = %q is not URL-safe", key, tok)
		}
		r, err := page.Parse("10", tok)
		if err != nil || r.Token != tok || r.Size != 10 {
			t.Fatalf("Parse(Token(%q)) = %+v, %v", key, r, err)
		}
		got, err := r.After("orders/newest", len(key))
		if err != nil || !slices.Equal(got, key) {
			t.Errorf("After = %q, %v; want %q", got, err, key)
		}
	}
}

func TestAfterRejectsAnotherList(t *testing.T) {
	r := page.Request{Size: 5, Token: page.Token("products/id/home", "prd_1")}
	if _, err := r.After("products/id/books", 1); !errs.Is(errs.BadRequest, err) || !strings.Contains(errs.Detail(err), "another list") {
		t.Errorf("After(another scope) = %v (%q); want BadRequest", err, errs.Detail(err))
	}
	if _, err := r.After("products/id/home", 2); !errs.Is(errs.BadRequest, err) {
		t.Errorf("After(key of another length) = %v; want BadRequest", err)
	}
	if k, err := (page.Request{Size: 5}).After("anything", 3); k != nil || err != nil {
		t.Errorf("After of the first page = %q, %v", k, err)
	}
	if _, err := (page.Request{Token: "!!"}).After("x", 1); !errs.Is(errs.BadRequest, err) {
		t.Errorf("After(garbage) = %v; want BadRequest", err)
	}
}

func TestCheckSize(t *testing.T) {
	for in, want := range map[int]int{0: page.DefaultSize, 1: 1, page.MaxSize: page.MaxSize} {
		r, err := page.Request{Size: in}.CheckSize("op")
		if err != nil || r.Size != want {
			t.Errorf("CheckSize(%d) = %+v, %v", in, r, err)
		}
	}
	for _, in := range []int{-1, page.MaxSize + 1} {
		if _, err := (page.Request{Size: in}).CheckSize("op"); !errs.Is(errs.BadRequest, err) {
			t.Errorf("CheckSize(%d) = %v; want BadRequest", in, err)
		}
	}
}

// TestKeysetWalk: walking pages through tokens visits every item exactly
// once even when items are inserted before and after the cursor between
// fetches.
func TestKeysetWalk(t *testing.T) {
	items := []int{}
	for i := 0; i < 47; i++ {
		items = append(items, i*10)
	}
	const list = "ints/asc"
	fetch := func(r page.Request) []int { // the store: items after the key, r.Size+1 of them
		key, err := r.After(list, 1)
		if err != nil {
			t.Fatal(err)
		}
		after := -1
		if key != nil {
			after, _ = strconv.Atoi(key[0])
		}
		var out []int
		for _, v := range items {
			if v > after && len(out) < r.Size+1 {
				out = append(out, v)
			}
		}
		return out
	}
	var seen []int
	tok := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		r, err := page.Parse("10", tok)
		if err != nil {
			t.Fatal(err)
		}
		got := fetch(r)
		pageItems := got[:min(len(got), r.Size)]
		seen = append(seen, pageItems...)
		tok = r.Next(list, len(got), func() []string { return []string{strconv.Itoa(pageItems[len(pageItems)-1])} })
		if tok == "" {
			break
		}
		// Rows arrive before the cursor (never seen) and after it (seen once).
		items = append([]int{-1 - pages}, items...)
		items = append(items, 1000+pages)
	}
	want := []int{}
	for _, v := range items {
		if v >= 0 {
			want = append(want, v)
		}
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("saw %v\nwant %v", seen, want)
	}
}
