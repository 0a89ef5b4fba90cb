package account

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

var cheap = ArgonParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func TestHashFormatAndVerify(t *testing.T) {
	h, err := encodeHash(DefaultArgonParams, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	phc := regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !phc.MatchString(h) {
		t.Fatalf("hash %q is not a PHC argon2id string with the OWASP parameters", h)
	}
	if ok, err := verifyHash(h, "correct horse battery staple"); !ok || err != nil {
		t.Errorf("verify right password = %v, %v", ok, err)
	}
	if ok, err := verifyHash(h, "correct horse battery stapler"); ok || err != nil {
		t.Errorf("verify wrong password = %v, %v", ok, err)
	}
	// Salts are random: the same password hashes differently.
	if h2, _ := encodeHash(DefaultArgonParams, "correct horse battery staple"); h2 == h {
		t.Error("two hashes of one password are equal")
	}
}

// A hash keeps verifying with the parameters recorded in it after the
// service's parameters change.
func TestVerifyUsesStoredParams(t *testing.T) {
	old := ArgonParams{Memory: 32, Time: 3, Threads: 2, SaltLen: 8, KeyLen: 16}
	h, err := encodeHash(old, "pw")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=32,t=3,p=2$") {
		t.Fatalf("hash = %q", h)
	}
	if ok, err := verifyHash(h, "pw"); !ok || err != nil {
		t.Errorf("verify = %v, %v", ok, err)
	}
}

func TestMalformedHashes(t *testing.T) {
	good, err := encodeHash(cheap, "pw")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "$")
	}
	for _, h := range []string{
		"",
		"plaintext",
		"$2a$10$abcdefghijklmnopqrstuv", // bcrypt
		with(1, "argon2i"),
		with(2, "v=16"),
		with(2, "v=19x"),
		with(3, "m=64,t=1"),
		with(3, "m=64,t=1,p=1,x=2"),
		with(3, "m=4294967295,t=1,p=1"), // would allocate 4 TiB
		with(3, "m=64,t=1000,p=1"),
		with(3, "m=64,t=1,p=0"),
		with(4, "not base64!"),
		with(4, ""),
		with(5, "c2hvcnQ"),
		good + "$",
	} {
		if ok, err := verifyHash(h, "pw"); ok || err == nil {
			t.Errorf("verifyHash(%q) = %v, %v; want an error", h, ok, err)
		}
	}
	if _, err := encodeHash(ArgonParams{Memory: 64, Time: 0, Threads: 1, SaltLen: 16, KeyLen: 32}, "pw"); err == nil {
		t.Error("encodeHash accepted zero passes")
	}
}

// emptyStore knows no accounts.
type emptyStore struct{ Store }

func (emptyStore) GetAccountByEmail(context.Context, string) (StoredAccount, error) {
	return StoredAccount{}, errs.E(errs.NotFound)
}

// A login for an unknown email still verifies a password hash, so it takes
// as long as one for a known email.
func TestUnknownEmailSpendsHash(t *testing.T) {
	s := NewService(emptyStore{}, clock.Real{}, WithArgonParams(cheap))
	_, err := s.Login(context.Background(), "nobody@example.com", "password1")
	if !errs.Is(errs.Unauthorized, err) {
		t.Fatalf("Login = %v, want Unauthorized", err)
	}
	if !strings.HasPrefix(s.dummyHash, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("no dummy hash was verified (dummyHash = %q)", s.dummyHash)
	}
}

// Hashing waits for a slot, and gives up when the caller's context ends.
func TestHashSlots(t *testing.T) {
	s := NewService(emptyStore{}, clock.Real{}, WithArgonParams(cheap), WithMaxConcurrentHashes(1))
	s.hashSlots <- struct{}{} // every slot busy
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := s.Register(ctx, Registration{Email: "a@example.com", Password: "password1", Name: "A"})
	if !errs.Is(errs.Unavailable, err) {
		t.Errorf("Register with no free slot = %v, want Unavailable", err)
	}
	_, err = s.Login(ctx, "a@example.com", "password1")
	if !errs.Is(errs.Unavailable, err) {
		t.Errorf("Login with no free slot = %v, want Unavailable", err)
	}
	s.release()
	if _, err := s.hashPassword(context.Background(), "pw"); err != nil {
		t.Errorf("hash after the slot freed: %v", err)
	}
}

// The decoy verified for unknown emails has the parameters of real hashes
// (so verifying against it costs the same) and matches no password.
func TestDecoyHashLooksReal(t *testing.T) {
	for _, p := range []ArgonParams{cheap, DefaultArgonParams} {
		real, err := encodeHash(p, "password1")
		if err != nil {
			t.Fatal(err)
		}
		decoy, err := decoyHash(p)
		if err != nil {
			t.Fatal(err)
		}
		rp, _, _, err := decodeHash(real)
		if err != nil {
			t.Fatal(err)
		}
		dp, _, _, err := decodeHash(decoy)
		if err != nil {
			t.Fatalf("decoy %q does not decode: %v", decoy, err)
		}
		if rp != dp {
			t.Errorf("decoy parameters %+v, real %+v", dp, rp)
		}
		if decoy == mustDecoy(t, p) {
			t.Error("two decoys are equal: salt and key must be random")
		}
	}
	if ok, err := verifyHash(mustDecoy(t, cheap), "password1"); ok || err != nil {
		t.Errorf("verifying against a decoy = %v, %v; want false, nil", ok, err)
	}
	if _, err := decoyHash(ArgonParams{Memory: 64, Time: 0, Threads: 1, SaltLen: 16, KeyLen: 32}); err == nil {
		t.Error("decoyHash accepted zero passes")
	}
}

func mustDecoy(t *testing.T, p ArgonParams) string {
	t.Helper()
	h, err := decoyHash(p)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
