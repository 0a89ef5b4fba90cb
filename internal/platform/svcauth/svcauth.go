// Package svcauth gives every service of the shop its own credential for
// the internal APIs (/svc/...), and lets a service accept only the callers
// that need it.
//
// A credential is "<service>.<secret>", presented as a bearer token. A
// Keyring holds the secrets of the services this process runs (to call
// others as them) and a way to check anyone's secret (to know who calls).
// It comes in two kinds:
//
//   - from a credentials directory (LoadDir; made by InitDir, or by
//     "globomantics credentials init"): one secret file per service, mode
//     0600, and a verifiers file of their SHA-256 hashes. A process is given
//     the verifiers and the secret files of its own services only, so a
//     process broken into cannot call anyone as another service;
//   - derived from one shared token (FromSharedToken): every secret is an
//     HMAC of the token and the service's name. Callers are still told
//     apart and refused where they have no business, but any process holding
//     the token could mint any identity: for one machine and tests.
package svcauth

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Operator is the identity of the people running the shop (admin
// endpoints, status, command-line tools): every service accepts it.
const Operator = "operator"

// VerifiersFile is the name of the verifiers file in a credentials
// directory: one line "<service> <sha256 hex of its secret>" per service.
const VerifiersFile = "verifiers"

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// Keyring holds this process's own credentials and checks callers'.
type Keyring struct {
	own    map[string]string        // service → its credential "<service>.<secret>"
	derive func(name string) string // shared-token kind: anyone's secret
	verify func(name, secret string) bool
}

// FromSharedToken derives every service's credential from one shared
// token.
func FromSharedToken(token string) *Keyring {
	derive := func(name string) string {
		m := hmac.New(sha256.New, []byte(token))
		m.Write([]byte("globomantics service credential\x00" + name))
		return hex.EncodeToString(m.Sum(nil))
	}
	return &Keyring{
		derive: derive,
		verify: func(name, secret string) bool {
			return subtle.ConstantTimeCompare([]byte(secret), []byte(derive(name))) == 1
		},
	}
}

// Credential returns the credential to present as service name, and
// whether this process holds it.
func (k *Keyring) Credential(name string) (string, bool) {
	if k.derive != nil {
		return name + "." + k.derive(name), true
	}
	c, ok := k.own[name]
	return c, ok
}

// Authenticate returns the service whose credential the Authorization
// header presents, or false when it presents none or a wrong one.
func (k *Keyring) Authenticate(authorization string) (string, bool) {
	cred, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok {
		return "", false
	}
	name, secret, ok := strings.Cut(cred, ".")
	if !ok || !nameRE.MatchString(name) || secret == "" || len(secret) > 256 {
		return "", false
	}
	if !k.verify(name, secret) {
		return "", false
	}
	return name, true
}

// Require lets through only requests whose credential is valid and names
// one of the allowed callers (or the operator): 401 without a valid
// credential, 403 for a caller this service does not serve.
func (k *Keyring) Require(service string, allowed []string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, ok := k.Authenticate(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="globomantics services"`)
			errs.WriteProblem(w, r, errs.E(errs.Unauthorized, errs.Msg("this is an internal service API: a valid service credential is required")))
			return
		}
		if caller != Operator && !slices.Contains(allowed, caller) {
			errs.WriteProblem(w, r, errs.E(errs.Forbidden, errs.Msg("%s does not serve %s", service, caller)))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hashSecret is the verifier of a secret.
func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// LoadDir reads a credentials directory: the verifiers of every service,
// and the secrets of the services in own (each must be there, readable by
// its owner only).
func LoadDir(dir string, own []string) (*Keyring, error) {
	b, err := os.ReadFile(filepath.Join(dir, VerifiersFile))
	if err != nil {
		return nil, fmt.Errorf("credentials %s: %w", dir, err)
	}
	verifiers := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || !nameRE.MatchString(f[0]) || len(f[1]) != 64 {
			return nil, fmt.Errorf("credentials %s: line %d of %s is not \"<service> <sha256 hex>\"", dir, n, VerifiersFile)
		}
		if _, err := hex.DecodeString(f[1]); err != nil {
			return nil, fmt.Errorf("credentials %s: line %d of %s: %w", dir, n, VerifiersFile, err)
		}
		verifiers[f[0]] = f[1]
	}
	k := &Keyring{own: map[string]string{}}
	for _, name := range own {
		p := filepath.Join(dir, name+".secret")
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("credentials: the secret of %s: %w", name, err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("credentials: %s is readable by others (mode %v): chmod 600 it", p, st.Mode().Perm())
		}
		s, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("credentials: the secret of %s: %w", name, err)
		}
		secret := strings.TrimSpace(string(s))
		if v, ok := verifiers[name]; !ok || v != hashSecret(secret) {
			return nil, fmt.Errorf("credentials: the secret of %s in %s does not match its verifier", name, p)
		}
		k.own[name] = name + "." + secret
	}
	k.verify = func(name, secret string) bool {
		want, ok := verifiers[name]
		got := hashSecret(secret)
		return ok && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
	}
	return k, nil
}

// InitDir makes (or completes) a credentials directory for names: a new
// random secret for each name that has none, and the verifiers file of
// them all. Existing secrets are kept, so running it again adds services
// without changing anyone's credential.
func InitDir(dir string, names []string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var lines []string
	for _, name := range names {
		if !nameRE.MatchString(name) {
			return fmt.Errorf("credentials: %q is not a service name", name)
		}
		p := filepath.Join(dir, name+".secret")
		b, err := os.ReadFile(p)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrNotExist):
			raw := make([]byte, 32)
			if _, err := rand.Read(raw); err != nil {
				return err
			}
			b = []byte(hex.EncodeToString(raw) + "\n")
			if err := os.WriteFile(p, b, 0o600); err != nil {
				return err
			}
		default:
			return err
		}
		lines = append(lines, name+" "+hashSecret(strings.TrimSpace(string(b))))
	}
	slices.Sort(lines)
	body := "# globomantics service credential verifiers: <service> <sha256 of its secret>\n" + strings.Join(lines, "\n") + "\n"
	tmp := filepath.Join(dir, VerifiersFile+".tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, VerifiersFile))
}
