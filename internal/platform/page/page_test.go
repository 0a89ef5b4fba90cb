package page_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/page"
)

func TestParseDefaults(t *testing.T) {
	r, err := page.Parse("", "")
	if err != nil || r != (page.Request{Size: page.DefaultSize, Offset: 0}) {
		t.Fatalf("Parse(\"\", \"\") = %+v, %v", r, err)
	}
	for size, want := range map[string]int{"1": 1, "50": 50, "100": page.MaxSize} {
		r, err := page.Parse(size, "")
		if err != nil || r.Size != want || r.Offset != 0 {
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
	b64 := base64.RawURLEncoding.EncodeToString
	for _, tok := range []string{
		"!!!",                 // not base64
		b64([]byte("12")),     // no prefix
		b64([]byte("o:")),     // no number
		b64([]byte("o:-20")),  // negative
		b64([]byte("o:1e3")),  // not an integer
		b64([]byte("x:20")),   // another prefix
		page.Token(20) + "==", // padded
		"ABC",                 // decodes to bytes without the prefix
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
	for _, off := range []int{0, 1, 20, 99, 12345, 1 << 40} {
		tok := page.Token(off)
		if strings.ContainsAny(tok, "+/=&?# ") {
			t.Errorf("Token(%d) = %q is not URL-safe", off, tok)
		}
		r, err := page.Parse("10", tok)
		if err != nil || r.Offset != off || r.Size != 10 {
			t.Errorf("Parse(Token(%d)) = %+v, %v", off, r, err)
		}
	}
}

func TestNext(t *testing.T) {
	r := page.Request{Size: 10, Offset: 30}
	if tok := r.Next(11); tok != page.Token(40) {
		t.Errorf("Next(11) = %q, want the token of offset 40", tok)
	}
	for _, n := range []int{0, 5, 10} {
		if tok := r.Next(n); tok != "" {
			t.Errorf("Next(%d) = %q, want no next page", n, tok)
		}
	}
	// Walking pages through tokens visits every item exactly once.
	items := make([]int, 47)
	for i := range items {
		items[i] = i
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
		end := min(r.Offset+r.Size+1, len(items))
		got := items[r.Offset:end] // fetched Size+1, as callers do
		seen = append(seen, got[:min(len(got), r.Size)]...)
		if tok = r.Next(len(got)); tok == "" {
			break
		}
	}
	if len(seen) != len(items) {
		t.Fatalf("saw %d items, want %d", len(seen), len(items))
	}
	for i, v := range seen {
		if v != i {
			t.Fatalf("item %d is %d", i, v)
		}
	}
}
