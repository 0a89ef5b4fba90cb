package money_test

import (
	"encoding/json"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/money"
)

func TestString(t *testing.T) {
	for cents, want := range map[int64]string{
		0:        "$0.00",
		1:        "$0.01",
		10:       "$0.10",
		99:       "$0.99",
		100:      "$1.00",
		1250:     "$12.50",
		123456:   "$1,234.56",
		245000:   "$2,450.00",
		99999:    "$999.99",
		100000:   "$1,000.00",
		-1:       "-$0.01",
		-5:       "-$0.05",
		-100:     "-$1.00",
		-1250:    "-$12.50",
		-123456:  "-$1,234.56",
		99999999: "$999,999.99",
		1e12:     "$10,000,000,000.00",
	} {
		if got := money.USD(cents).String(); got != want {
			t.Errorf("USD(%d).String() = %q, want %q", cents, got, want)
		}
	}
}

func TestAdd(t *testing.T) {
	got := money.USD(1250).Add(money.USD(-50))
	if got != money.USD(1200) {
		t.Errorf("12.50 + -0.50 = %+v", got)
	}
	// The zero Money takes the other operand's currency, so sums can start from it.
	var total money.Money
	for _, p := range []int64{100, 250, 5} {
		total = total.Add(money.USD(p))
	}
	if total != money.USD(355) {
		t.Errorf("sum = %+v, want USD 355", total)
	}
}

func TestTimes(t *testing.T) {
	for _, c := range []struct {
		m    money.Money
		n    int
		want money.Money
	}{
		{money.USD(1250), 3, money.USD(3750)},
		{money.USD(1250), 0, money.USD(0)},
		{money.USD(-5), 4, money.USD(-20)},
		{money.USD(999), 1, money.USD(999)},
	} {
		if got := c.m.Times(c.n); got != c.want {
			t.Errorf("%v × %d = %+v, want %+v", c.m, c.n, got, c.want)
		}
	}
}

func TestJSON(t *testing.T) {
	b, err := json.Marshal(money.USD(1250))
	if err != nil || string(b) != `{"amount":1250,"currency":"USD"}` {
		t.Fatalf("json = %s, %v", b, err)
	}
	var m money.Money
	if err := json.Unmarshal(b, &m); err != nil || m != money.USD(1250) {
		t.Fatalf("round trip = %+v, %v", m, err)
	}
}
