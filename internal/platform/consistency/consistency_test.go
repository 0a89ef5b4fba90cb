package consistency

import (
	"strings"
	"testing"
)

func TestLSNRoundTrip(t *testing.T) {
	for _, s := range []string{"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", "0/1"} {
		n, err := ParseLSN(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if got := FormatLSN(n); got != s {
			t.Errorf("FormatLSN(ParseLSN(%q)) = %q", s, got)
		}
	}
	if n, _ := ParseLSN("1/0"); n != 1<<32 {
		t.Errorf("1/0 = %d", n)
	}
	for _, bad := range []string{"", "16", "x/1", "1/x", "100000000/0", "1/100000000", "-1/0"} {
		if _, err := ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) accepted", bad)
		}
	}
}

func TestTokenObserveKeepsHighest(t *testing.T) {
	tok := NewToken()
	tok.Observe("order", 10)
	tok.Observe("order", 5)
	tok.Observe("account/s1", 3)
	tok.Observe("", 99) // no source: ignored
	tok.Observe("cart", 0)
	if tok.Position("order") != 10 || tok.Position("account/s1") != 3 || tok.Position("cart") != 0 {
		t.Fatalf("token = %s", tok)
	}
	var nilTok *Token
	nilTok.Observe("x", 1) // a nil token is an empty one
	if nilTok.Position("x") != 0 || !nilTok.Empty() || nilTok.String() != "" {
		t.Error("nil token is not empty")
	}
}

func TestTokenStringParse(t *testing.T) {
	tok := NewToken()
	tok.Observe("order", 0x1_0000_0020)
	tok.Observe("account", 7)
	s := tok.String()
	if s != "account=0/7;order=1/20" {
		t.Fatalf("String = %q", s)
	}
	back, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	if back.String() != s {
		t.Errorf("round trip %q -> %q", s, back)
	}
	other := NewToken()
	other.Observe("order", 1)
	other.Observe("cart", 9)
	other.Merge(back)
	if other.String() != "account=0/7;cart=0/9;order=1/20" {
		t.Errorf("merge = %q", other)
	}
	if e, err := Parse(""); err != nil || !e.Empty() {
		t.Errorf("empty parse: %v %v", e, err)
	}
	for _, bad := range []string{"order", "order=", "=0/1", "or der=0/1", "order=1", strings.Repeat("a=0/1;", MaxSources+1)} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
