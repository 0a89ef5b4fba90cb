package shipping_test

import (
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/shipping"
)

func TestValidateAddressNormalizes(t *testing.T) {
	tests := []struct {
		in   shipping.Address
		want shipping.Address
	}{
		{
			shipping.Address{Name: " Ada ", Line1: "1 Main St", City: "Springfield", Region: "illinois", PostalCode: "62701 1234", Country: "us"},
			shipping.Address{Name: "Ada", Line1: "1 Main St", City: "Springfield", Region: "IL", PostalCode: "62701-1234", Country: "US"},
		},
		{
			shipping.Address{Name: "Ada", Line1: "24 Sussex Dr", City: "Ottawa", Region: "on", PostalCode: "k1m1m4", Country: "CA"},
			shipping.Address{Name: "Ada", Line1: "24 Sussex Dr", City: "Ottawa", Region: "ON", PostalCode: "K1M 1M4", Country: "CA"},
		},
		{
			shipping.Address{Name: "Ada", Line1: "12 Analytical Row", City: "London", PostalCode: "n19gu", Country: "gb"},
			shipping.Address{Name: "Ada", Line1: "12 Analytical Row", City: "London", PostalCode: "N1 9GU", Country: "GB"},
		},
		{
			shipping.Address{Name: "Ada", Line1: "1 George St", City: "Sydney", Region: "New South Wales", PostalCode: "2000", Country: "AU"},
			shipping.Address{Name: "Ada", Line1: "1 George St", City: "Sydney", Region: "NSW", PostalCode: "2000", Country: "AU"},
		},
		{ // the ISO 3166-2 code, as the form's list sends it
			shipping.Address{Name: "Ada", Line1: "1 Hay St", City: "Perth", Region: "AU-WA", PostalCode: "6000", Country: "AU"},
			shipping.Address{Name: "Ada", Line1: "1 Hay St", City: "Perth", Region: "WA", PostalCode: "6000", Country: "AU"},
		},
		{ // a free-text region where the shop has no list
			shipping.Address{Name: "Ada", Line1: "Main St 1", City: "Dublin", Region: " Co. Dublin ", PostalCode: "D02 X285", Country: "IE"},
			shipping.Address{Name: "Ada", Line1: "Main St 1", City: "Dublin", Region: "Co. Dublin", PostalCode: "D02 X285", Country: "IE"},
		},
	}
	for _, tc := range tests {
		got, fe := shipping.ValidateAddress(tc.in)
		if len(fe) != 0 || got != tc.want {
			t.Errorf("ValidateAddress(%+v) = %+v, %v; want %+v", tc.in, got, fe, tc.want)
		}
	}
}

func TestValidateAddressNamesBadFields(t *testing.T) {
	good := shipping.Address{Name: "Ada", Line1: "1 Main St", City: "Springfield", Region: "IL", PostalCode: "62701", Country: "US"}
	tests := []struct {
		name   string
		change func(a *shipping.Address)
		fields []string
	}{
		{"no region in the US", func(a *shipping.Address) { a.Region = "" }, []string{"region"}},
		{"a region of another country", func(a *shipping.Address) { a.Region = "Ontario" }, []string{"region"}},
		{"another country's region code", func(a *shipping.Address) { a.Region = "AU-WA" }, []string{"region"}},
		{"a bad ZIP", func(a *shipping.Address) { a.PostalCode = "6270" }, []string{"postal_code"}},
		{"a country the shop does not ship to", func(a *shipping.Address) { a.Country = "ZZ" }, []string{"country"}},
		{"a free-text country", func(a *shipping.Address) { a.Country = "United States" }, []string{"country"}},
		{"empty fields", func(a *shipping.Address) { a.Name, a.City = " ", "" }, []string{"name", "city"}},
		{"control characters", func(a *shipping.Address) { a.Line1 = "1 Main\x00St" }, []string{"line1"}},
		{"too long", func(a *shipping.Address) { a.City = strings.Repeat("x", shipping.MaxFieldLen+1) }, []string{"city"}},
		{"a bad Canadian postal code", func(a *shipping.Address) { a.Country, a.Region, a.PostalCode = "CA", "QC", "12345" }, []string{"postal_code"}},
	}
	for _, tc := range tests {
		a := good
		tc.change(&a)
		_, fe := shipping.ValidateAddress(a)
		if len(fe) != len(tc.fields) {
			t.Errorf("%s: errors %v, want exactly %v", tc.name, fe, tc.fields)
			continue
		}
		for _, f := range tc.fields {
			if fe[f] == "" {
				t.Errorf("%s: no error for %s in %v", tc.name, f, fe)
			}
		}
		err := fe.Err()
		if !errs.Is(errs.Invalid, err) || !strings.Contains(errs.Detail(err), "address "+tc.fields[0]) {
			t.Errorf("%s: Err() = %v, want Invalid naming %s", tc.name, err, tc.fields[0])
		}
	}
	if _, fe := shipping.ValidateAddress(good); fe.Err() != nil {
		t.Errorf("good address: %v", fe.Err())
	}
}

func TestCountries(t *testing.T) {
	list := shipping.Countries()
	for i, c := range list {
		if len(c.Code) != 2 || c.Name == "" {
			t.Errorf("country %+v", c)
		}
		if i > 0 && list[i-1].Name >= c.Name {
			t.Errorf("countries not sorted by name at %s", c.Name)
		}
	}
	for _, code := range []string{"US", "CA", "AU"} {
		c, ok := shipping.CountryByCode(code)
		if !ok || !c.HasRegions() || c.RegionLabel == "" {
			t.Errorf("%s: %+v, %v; want a country with regions", code, c, ok)
		}
	}
	if got := shipping.RegionName("US", "CA"); got != "California" {
		t.Errorf("RegionName(US, CA) = %q", got)
	}
	if got := shipping.CountryName("GB"); got != "United Kingdom" {
		t.Errorf("CountryName(GB) = %q", got)
	}
}
