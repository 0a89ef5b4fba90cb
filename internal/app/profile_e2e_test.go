package app_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/pkg/shopclient"
)

// TestProfile changes a customer's name through the public API, in both
// topologies, and checks that every storefront instance comes to show it.
func TestProfile(t *testing.T) {
	eachTopology(t, profileSuite)
}

type profileAccount = shopclient.Account

func profileSuite(t *testing.T, tp *topology) {
	c := newClient(t, tp)
	// at is c pinned to one storefront instance, sharing c's cookies.
	at := func(base string) *client { return &client{t: t, hc: c.hc, bases: []string{base}} }
	// nameEverywhere waits until every instance reports want as the name:
	// an instance other than the one that took the change may serve its
	// cached token→account lookup for a few seconds more.
	nameEverywhere := func(want string) {
		t.Helper()
		for _, base := range c.bases {
			testenv.CheckFor(t, 20*time.Second, func() error {
				var me profileAccount
				at(base).must(200, "GET", "/api/v1/me", nil).decode(t, &me)
				if me.Name != want {
					return fmt.Errorf("%s: name %q, want %q", base, me.Name, want)
				}
				return nil
			})
		}
	}

	email := fmt.Sprintf("profile-%d@example.com", time.Now().UnixNano())
	var acct profileAccount
	c.must(201, "POST", "/api/v1/accounts", map[string]string{"email": email, "password": "correct horse", "name": "Ada"}).decode(t, &acct)
	c.must(401, "PATCH", "/api/v1/me", map[string]string{"name": "Ada Lovelace"})
	c.must(200, "POST", "/api/v1/sessions", map[string]string{"email": email, "password": "correct horse"})
	// Every instance now has the old name cached.
	nameEverywhere("Ada")

	var updated profileAccount
	c.must(200, "PATCH", "/api/v1/me", map[string]string{"name": "  Ada Lovelace "}).decode(t, &updated)
	if updated != (profileAccount{ID: acct.ID, Email: email, Name: "Ada Lovelace"}) {
		t.Fatalf("PATCH answered %+v", updated)
	}
	nameEverywhere("Ada Lovelace")

	// Refused changes leave the name as it is, on every instance.
	var p problem
	c.must(422, "PATCH", "/api/v1/me", map[string]string{"name": ""}).decode(t, &p)
	if p.Status != 422 || p.Detail == "" {
		t.Errorf("empty name problem = %+v", p)
	}
	c.must(422, "PATCH", "/api/v1/me", map[string]string{"name": "   "})
	c.must(400, "PATCH", "/api/v1/me", map[string]any{"name": "Grace", "admin": true})
	for _, base := range c.bases {
		var me profileAccount
		at(base).must(200, "GET", "/api/v1/me", nil).decode(t, &me)
		if me.Name != "Ada Lovelace" {
			t.Errorf("%s: after refused changes name = %q", base, me.Name)
		}
	}

	// Logged out (the cookie is gone): 401 everywhere, and nothing changes.
	c.must(204, "DELETE", "/api/v1/sessions", nil)
	for _, base := range c.bases {
		at(base).must(401, "PATCH", "/api/v1/me", map[string]string{"name": "Mallory"})
		at(base).must(401, "GET", "/api/v1/me", nil)
	}
	c.must(200, "POST", "/api/v1/sessions", map[string]string{"email": email, "password": "correct horse"})
	var me profileAccount
	c.must(200, "GET", "/api/v1/me", nil).decode(t, &me)
	if me.Name != "Ada Lovelace" {
		t.Errorf("after logging in again name = %q", me.Name)
	}
}
