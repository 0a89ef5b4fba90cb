// Package money holds amounts of money in integer minor units.
package money

import (
	"fmt"
	"strconv"
	"strings"
)

// Currency is the only currency the shop trades in.
const Currency = "USD"

// Money is an amount in minor units (cents) of a currency.
type Money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// USD returns cents as Money in US dollars.
func USD(cents int64) Money { return Money{Amount: cents, Currency: Currency} }

// Add returns m+o; both must be in the same currency.
func (m Money) Add(o Money) Money {
	c := m.Currency
	if c == "" {
		c = o.Currency
	}
	return Money{Amount: m.Amount + o.Amount, Currency: c}
}

// Times returns m multiplied by n.
func (m Money) Times(n int) Money { return Money{Amount: m.Amount * int64(n), Currency: m.Currency} }

// String formats the amount for people, with thousands separators, e.g.
// "$12.50" or "$2,450.00".
func (m Money) String() string {
	sign := ""
	a := m.Amount
	if a < 0 {
		sign, a = "-", -a
	}
	dollars := strconv.FormatInt(a/100, 10)
	var b strings.Builder
	for i, d := range dollars {
		if i > 0 && (len(dollars)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return fmt.Sprintf("%s$%s.%02d", sign, b.String(), a%100)
}
