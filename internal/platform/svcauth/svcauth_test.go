package svcauth_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/svcauth"
)

// eachKind runs f against both kinds of keyring: one derived from a shared
// token and one loaded from a credentials directory holding the secrets
// of own only.
func eachKind(t *testing.T, own []string, f func(t *testing.T, k *svcauth.Keyring, full func(name string) *svcauth.Keyring)) {
	t.Run("shared", func(t *testing.T) {
		k := svcauth.FromSharedToken("a-shared-token-of-enough-length")
		f(t, k, func(string) *svcauth.Keyring { return svcauth.FromSharedToken("a-shared-token-of-enough-length") })
	})
	t.Run("dir", func(t *testing.T) {
		dir := t.TempDir()
		if err := svcauth.InitDir(dir, []string{"catalog", "cart", "storefront", svcauth.Operator}); err != nil {
			t.Fatal(err)
		}
		k, err := svcauth.LoadDir(dir, own)
		if err != nil {
			t.Fatal(err)
		}
		f(t, k, func(name string) *svcauth.Keyring {
			other, err := svcauth.LoadDir(dir, []string{name})
			if err != nil {
				t.Fatal(err)
			}
			return other
		})
	})
}

func TestRequire(t *testing.T) {
	eachKind(t, []string{"catalog"}, func(t *testing.T, k *svcauth.Keyring, as func(string) *svcauth.Keyring) {
		h := k.Require("catalog", []string{"cart", "storefront"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}))
		call := func(auth string) int {
			r := httptest.NewRequest("GET", "/svc/catalog/v1/products", nil)
			if auth != "" {
				r.Header.Set("Authorization", auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w.Code
		}
		cred := func(name string) string {
			c, ok := as(name).Credential(name)
			if !ok {
				t.Fatalf("no credential for %s", name)
			}
			return "Bearer " + c
		}
		for _, tc := range []struct {
			auth string
			want int
		}{
			{cred("cart"), 204},
			{cred("storefront"), 204},
			{cred(svcauth.Operator), 204},
			{cred("catalog"), 403}, // valid, but catalog does not call itself
			{"", 401},
			{"Bearer nonsense", 401},
			{"Basic " + strings.TrimPrefix(cred("cart"), "Bearer "), 401},
			{"Bearer cart.0000", 401},
			{"Bearer storefront." + strings.SplitN(cred("cart"), ".", 2)[1], 401}, // cart's secret under another name
		} {
			if got := call(tc.auth); got != tc.want {
				t.Errorf("Authorization %.40q: status %d, want %d", tc.auth, got, tc.want)
			}
		}
	})
}

func TestLoadDirHoldsOnlyItsOwnSecrets(t *testing.T) {
	dir := t.TempDir()
	if err := svcauth.InitDir(dir, []string{"catalog", "cart"}); err != nil {
		t.Fatal(err)
	}
	k, err := svcauth.LoadDir(dir, []string{"cart"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.Credential("cart"); !ok {
		t.Error("cart's own credential is missing")
	}
	if _, ok := k.Credential("catalog"); ok {
		t.Error("a process running cart holds catalog's credential")
	}
}

func TestInitDirKeepsSecrets(t *testing.T) {
	dir := t.TempDir()
	if err := svcauth.InitDir(dir, []string{"cart"}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "cart.secret"))
	if err := svcauth.InitDir(dir, []string{"cart", "catalog"}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "cart.secret"))
	if string(before) != string(after) {
		t.Error("InitDir changed an existing secret")
	}
	k, err := svcauth.LoadDir(dir, []string{"cart", "catalog"})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := k.Credential("cart")
	if got, ok := k.Authenticate("Bearer " + c); !ok || got != "cart" {
		t.Errorf("Authenticate = %q, %v", got, ok)
	}
}

func TestLoadDirRefuses(t *testing.T) {
	dir := t.TempDir()
	if err := svcauth.InitDir(dir, []string{"cart"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svcauth.LoadDir(dir, []string{"catalog"}); err == nil || !strings.Contains(err.Error(), "catalog") {
		t.Errorf("a missing secret: %v", err)
	}
	if err := os.Chmod(filepath.Join(dir, "cart.secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := svcauth.LoadDir(dir, []string{"cart"}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a secret readable by others: %v", err)
	}
	_ = os.Chmod(filepath.Join(dir, "cart.secret"), 0o600)
	if err := os.WriteFile(filepath.Join(dir, "cart.secret"), []byte("changed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := svcauth.LoadDir(dir, []string{"cart"}); err == nil || !strings.Contains(err.Error(), "verifier") {
		t.Errorf("a secret not matching its verifier: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, svcauth.VerifiersFile), []byte("cart nothex\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := svcauth.LoadDir(dir, nil); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a malformed verifiers file: %v", err)
	}
}
