package shipping

import (
	"iter"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Region is a state, province or territory of a country: its code (the
// ISO 3166-2 subdivision code without the country, e.g. "CA" for
// California) and its name.
type Region struct {
	Code string `json:"code"`
	Name string `json:"name"`
}

// Country is a country the shop ships to: its ISO 3166-1 alpha-2 code, its
// English name and, for countries whose addresses need one, the list of its
// regions and what they are called ("State", "Province").
type Country struct {
	Code        string   `json:"code"`
	Name        string   `json:"name"`
	RegionLabel string   `json:"region_label,omitempty"`
	Regions     []Region `json:"regions,omitempty"`
	// postal checks and normalizes a postal code (already trimmed and
	// upper-cased); nil accepts any.
	postal func(string) (string, bool)
	// postalHint says what a postal code looks like, for error messages.
	postalHint string
}

// HasRegions reports whether an address in c needs a region from c.Regions.
func (c Country) HasRegions() bool { return len(c.Regions) > 0 }

// Field names of an address, as in its JSON and in FieldErrors.
const (
	FieldName       = "name"
	FieldLine1      = "line1"
	FieldCity       = "city"
	FieldRegion     = "region"
	FieldPostalCode = "postal_code"
	FieldCountry    = "country"
)

// addressFields is the order in which address fields are checked and
// their errors reported.
var addressFields = []string{FieldName, FieldLine1, FieldCity, FieldRegion, FieldPostalCode, FieldCountry}

// FieldErrors says what is wrong with an address, by field name (FieldName
// and the others), in words fit for the customer.
type FieldErrors map[string]string

// Err is nil for no errors, or errs.Invalid naming every bad field, in the
// order of the form ("address region: choose a state; ...").
func (fe FieldErrors) Err() error {
	if len(fe) == 0 {
		return nil
	}
	var parts []string
	for f, m := range fe.All() {
		parts = append(parts, "address "+f+": "+m)
	}
	return errs.E(errs.Invalid, errs.Msg("%s", strings.Join(parts, "; ")))
}

// All yields the bad fields with their messages, in the order of the form.
func (fe FieldErrors) All() iter.Seq2[string, string] {
	return func(yield func(field, msg string) bool) {
		for _, f := range addressFields {
			if m, ok := fe[f]; ok && !yield(f, m) {
				return
			}
		}
	}
}

var (
	usZIP    = regexp.MustCompile(`^([0-9]{5})(?:[- ]?([0-9]{4}))?$`)
	caPostal = regexp.MustCompile(`^([A-Z][0-9][A-Z]) ?([0-9][A-Z][0-9])$`)
	gbPostal = regexp.MustCompile(`^([A-Z]{1,2}[0-9][A-Z0-9]?) ?([0-9][A-Z]{2})$`)
	nlPostal = regexp.MustCompile(`^([0-9]{4}) ?([A-Z]{2})$`)
	jpPostal = regexp.MustCompile(`^([0-9]{3})-?([0-9]{4})$`)
)

// digits accepts exactly n ASCII digits.
func digits(n int) func(string) (string, bool) {
	return func(s string) (string, bool) {
		if len(s) != n {
			return "", false
		}
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return "", false
			}
		}
		return s, true
	}
}

// joined accepts what re matches and spells it as its groups joined by sep
// (empty groups left out).
func joined(re *regexp.Regexp, sep string) func(string) (string, bool) {
	return func(s string) (string, bool) {
		m := re.FindStringSubmatch(s)
		if m == nil {
			return "", false
		}
		var parts []string
		for _, g := range m[1:] {
			if g != "" {
				parts = append(parts, g)
			}
		}
		return strings.Join(parts, sep), true
	}
}

// countries is the list of countries the shop ships to, by code.
var countries = func() map[string]Country {
	list := []Country{
		{Code: "US", Name: "United States", RegionLabel: "State", Regions: usStates,
			postal: joined(usZIP, "-"), postalHint: "5 digits, or ZIP+4 such as 12345-6789"},
		{Code: "CA", Name: "Canada", RegionLabel: "Province or territory", Regions: caProvinces,
			postal: joined(caPostal, " "), postalHint: "like A1A 1A1"},
		{Code: "AU", Name: "Australia", RegionLabel: "State or territory", Regions: auStates,
			postal: digits(4), postalHint: "4 digits"},
		{Code: "GB", Name: "United Kingdom", postal: joined(gbPostal, " "), postalHint: "like SW1A 1AA"},
		{Code: "IE", Name: "Ireland"},
		{Code: "DE", Name: "Germany", postal: digits(5), postalHint: "5 digits"},
		{Code: "FR", Name: "France", postal: digits(5), postalHint: "5 digits"},
		{Code: "ES", Name: "Spain", postal: digits(5), postalHint: "5 digits"},
		{Code: "IT", Name: "Italy", postal: digits(5), postalHint: "5 digits"},
		{Code: "NL", Name: "Netherlands", postal: joined(nlPostal, " "), postalHint: "like 1234 AB"},
		{Code: "BE", Name: "Belgium", postal: digits(4), postalHint: "4 digits"},
		{Code: "AT", Name: "Austria", postal: digits(4), postalHint: "4 digits"},
		{Code: "CH", Name: "Switzerland", postal: digits(4), postalHint: "4 digits"},
		{Code: "DK", Name: "Denmark", postal: digits(4), postalHint: "4 digits"},
		{Code: "NO", Name: "Norway", postal: digits(4), postalHint: "4 digits"},
		{Code: "SE", Name: "Sweden"},
		{Code: "FI", Name: "Finland", postal: digits(5), postalHint: "5 digits"},
		{Code: "PT", Name: "Portugal"},
		{Code: "JP", Name: "Japan", postal: joined(jpPostal, "-"), postalHint: "like 100-0001"},
		{Code: "NZ", Name: "New Zealand", postal: digits(4), postalHint: "4 digits"},
	}
	m := make(map[string]Country, len(list))
	for _, c := range list {
		m[c.Code] = c
	}
	return m
}()

// byName is countries sorted by name, sorted once for Countries.
var byName = func() []Country {
	out := make([]Country, 0, len(countries))
	for _, c := range countries {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}()

// Countries returns the countries the shop ships to, sorted by name. The
// caller may keep the slice; the regions are shared and must not be changed.
func Countries() []Country { return slices.Clone(byName) }

// CountryByCode returns the country with this ISO 3166-1 alpha-2 code (in
// any case) if the shop ships to it.
func CountryByCode(code string) (Country, bool) {
	c, ok := countries[strings.ToUpper(strings.TrimSpace(code))]
	return c, ok
}

// ValidateAddress checks an address for a new order as the customer's form
// does, and returns it normalized: every field trimmed, the country
// upper-cased, the region as its code, the postal code spelled the
// country's way ("K1A 0B1", "12345-6789"). The country must be one the
// shop ships to (Countries); the region is required, and must be one of
// the country's, where the country has a list of regions (US, CA, AU), and
// is free text elsewhere; the postal code must have the country's format
// where the shop knows it. fe holds a message for every bad field and is
// empty when the address is good.
func ValidateAddress(a Address) (norm Address, fe FieldErrors) {
	fe = FieldErrors{}
	fields := []struct {
		name     string
		v        *string
		optional bool
	}{
		{FieldName, &a.Name, false}, {FieldLine1, &a.Line1, false}, {FieldCity, &a.City, false},
		{FieldRegion, &a.Region, true}, {FieldPostalCode, &a.PostalCode, false}, {FieldCountry, &a.Country, false},
	}
	for _, f := range fields {
		v := strings.TrimSpace(*f.v)
		*f.v = v
		if msg := fieldProblem(v, f.optional); msg != "" {
			fe[f.name] = msg
		}
	}
	if _, bad := fe[FieldCountry]; bad {
		return a, fe
	}
	c, ok := CountryByCode(a.Country)
	if !ok {
		fe[FieldCountry] = "we do not ship to this country; choose one from the list"
		return a, fe
	}
	a.Country = c.Code
	if _, bad := fe[FieldRegion]; !bad && c.HasRegions() {
		label := strings.ToLower(c.RegionLabel)
		if r, ok := c.region(a.Region); ok {
			a.Region = r.Code
		} else if a.Region == "" {
			fe[FieldRegion] = "choose a " + label
		} else {
			fe[FieldRegion] = "choose a " + label + " of " + c.Name
		}
	}
	if _, bad := fe[FieldPostalCode]; !bad && c.postal != nil {
		if p, ok := c.postal(strings.ToUpper(a.PostalCode)); ok {
			a.PostalCode = p
		} else {
			fe[FieldPostalCode] = "enter a postal code of " + c.Name + " (" + c.postalHint + ")"
		}
	}
	return a, fe
}

// fieldProblem says what is wrong with a trimmed address field, or "".
func fieldProblem(v string, optional bool) string {
	switch {
	case v == "" && !optional:
		return "this field is required"
	case !utf8.ValidString(v):
		return "this field has characters that cannot be read"
	case utf8.RuneCountInString(v) > MaxFieldLen:
		return "this field is too long"
	case strings.ContainsFunc(v, unicode.IsControl):
		return "this field has characters that cannot be read"
	}
	return ""
}

// region finds one of c's regions by code, ISO 3166-2 code ("US-IL") or
// name, in any case.
func (c Country) region(s string) (Region, bool) {
	if len(s) > 3 && strings.EqualFold(s[:3], c.Code+"-") {
		s = s[3:]
	}
	for _, r := range c.Regions {
		if strings.EqualFold(r.Code, s) || strings.EqualFold(r.Name, s) {
			return r, true
		}
	}
	return Region{}, false
}

var usStates = []Region{
	{"AL", "Alabama"}, {"AK", "Alaska"}, {"AZ", "Arizona"}, {"AR", "Arkansas"}, {"CA", "California"},
	{"CO", "Colorado"}, {"CT", "Connecticut"}, {"DE", "Delaware"}, {"DC", "District of Columbia"},
	{"FL", "Florida"}, {"GA", "Georgia"}, {"HI", "Hawaii"}, {"ID", "Idaho"}, {"IL", "Illinois"},
	{"IN", "Indiana"}, {"IA", "Iowa"}, {"KS", "Kansas"}, {"KY", "Kentucky"}, {"LA", "Louisiana"},
	{"ME", "Maine"}, {"MD", "Maryland"}, {"MA", "Massachusetts"}, {"MI", "Michigan"}, {"MN", "Minnesota"},
	{"MS", "Mississippi"}, {"MO", "Missouri"}, {"MT", "Montana"}, {"NE", "Nebraska"}, {"NV", "Nevada"},
	{"NH", "New Hampshire"}, {"NJ", "New Jersey"}, {"NM", "New Mexico"}, {"NY", "New York"},
	{"NC", "North Carolina"}, {"ND", "North Dakota"}, {"OH", "Ohio"}, {"OK", "Oklahoma"}, {"OR", "Oregon"},
	{"PA", "Pennsylvania"}, {"RI", "Rhode Island"}, {"SC", "South Carolina"}, {"SD", "South Dakota"},
	{"TN", "Tennessee"}, {"TX", "Texas"}, {"UT", "Utah"}, {"VT", "Vermont"}, {"VA", "Virginia"},
	{"WA", "Washington"}, {"WV", "West Virginia"}, {"WI", "Wisconsin"}, {"WY", "Wyoming"},
	{"AS", "American Samoa"}, {"GU", "Guam"}, {"MP", "Northern Mariana Islands"}, {"PR", "Puerto Rico"},
	{"VI", "U.S. Virgin Islands"}, {"AA", "Armed Forces Americas"}, {"AE", "Armed Forces Europe"},
	{"AP", "Armed Forces Pacific"},
}

var caProvinces = []Region{
	{"AB", "Alberta"}, {"BC", "British Columbia"}, {"MB", "Manitoba"}, {"NB", "New Brunswick"},
	{"NL", "Newfoundland and Labrador"}, {"NS", "Nova Scotia"}, {"NT", "Northwest Territories"},
	{"NU", "Nunavut"}, {"ON", "Ontario"}, {"PE", "Prince Edward Island"}, {"QC", "Quebec"},
	{"SK", "Saskatchewan"}, {"YT", "Yukon"},
}

var auStates = []Region{
	{"ACT", "Australian Capital Territory"}, {"NSW", "New South Wales"}, {"NT", "Northern Territory"},
	{"QLD", "Queensland"}, {"SA", "South Australia"}, {"TAS", "Tasmania"}, {"VIC", "Victoria"},
	{"WA", "Western Australia"},
}

// RegionName is the name of the region with code in the country with code
// country, or code itself when the shop has no list for it (free text).
func RegionName(country, code string) string {
	if c, ok := CountryByCode(country); ok {
		if r, ok := c.region(code); ok {
			return r.Name
		}
	}
	return code
}

// CountryName is the name of the country with this code, or the code
// itself for a country the shop does not (or no longer) ship to.
func CountryName(code string) string {
	if c, ok := CountryByCode(code); ok {
		return c.Name
	}
	return code
}
