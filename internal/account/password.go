package account

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// ArgonParams are the argon2id cost parameters for hashing new passwords.
type ArgonParams struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// DefaultArgonParams are OWASP's recommended minimum for argon2id:
// 19 MiB of memory, 2 passes, 1 thread, with a 16-byte salt and 32-byte key.
var DefaultArgonParams = ArgonParams{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Bounds on the parameters a stored hash may ask for, so a corrupt or
// hostile hash cannot make verification eat the machine.
const (
	maxMemory = 1 << 21 // KiB: 2 GiB
	maxTime   = 64
	maxKeyLen = 1024
)

var b64 = base64.RawStdEncoding

// encodeHash hashes password with a fresh random salt and returns the PHC
// string "$argon2id$v=19$m=<KiB>,t=<passes>,p=<threads>$<salt>$<hash>".
func encodeHash(p ArgonParams, password string) (string, error) {
	if p.Memory < 8*uint32(p.Threads) || p.Time < 1 || p.Threads < 1 || p.SaltLen < 8 || p.KeyLen < 16 {
		return "", fmt.Errorf("argon2id: unusable parameters %+v", p)
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// decoyHash returns a well-formed hash with parameters p, a random salt and
// a random key: verifying any password against it costs exactly what
// verifying against a real hash made with p costs, and never succeeds
// (short of guessing KeyLen random bytes). Making one costs no hashing, so
// the first login for an unknown email is not slower than the next ones.
func decoyHash(p ArgonParams) (string, error) {
	if p.Memory < 8*uint32(p.Threads) || p.Time < 1 || p.Threads < 1 || p.SaltLen < 8 || p.KeyLen < 16 {
		return "", fmt.Errorf("argon2id: unusable parameters %+v", p)
	}
	salt := make([]byte, p.SaltLen)
	key := make([]byte, p.KeyLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// verifyHash reports whether password matches encoded, using the parameters
// recorded in encoded, comparing in constant time. A malformed hash is an
// error.
func verifyHash(encoded, password string) (bool, error) {
	p, salt, key, err := decodeHash(encoded)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

var errMalformedHash = errors.New("argon2id: malformed password hash")

func decodeHash(encoded string) (p ArgonParams, salt, key []byte, err error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errMalformedHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return p, nil, nil, fmt.Errorf("argon2id: unsupported version %q", parts[2])
	}
	var threads uint32
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &threads); err != nil || n != 3 ||
		parts[3] != fmt.Sprintf("m=%d,t=%d,p=%d", p.Memory, p.Time, threads) {
		return p, nil, nil, errMalformedHash
	}
	if threads < 1 || threads > 255 || p.Time < 1 || p.Time > maxTime || p.Memory < 8*threads || p.Memory > maxMemory {
		return p, nil, nil, fmt.Errorf("argon2id: parameters out of range in %q", parts[3])
	}
	p.Threads = uint8(threads)
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, errMalformedHash
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 || len(key) > maxKeyLen {
		return p, nil, nil, errMalformedHash
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	return p, salt, key, nil
}
