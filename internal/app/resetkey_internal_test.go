package app

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestPersistentKey: the one-process shop's reset-link key is made once,
// private to its owner, and the same after a restart.
func TestPersistentKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "password-reset.key")
	k1, err := persistentKey(path)
	if err != nil || len(k1) != 32 {
		t.Fatalf("first key: %x, %v", k1, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	k2, err := persistentKey(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second read gave %x (%v), want %x", k2, err, k1)
	}
	other, _ := persistentKey(filepath.Join(t.TempDir(), "k"))
	if bytes.Equal(other, k1) {
		t.Fatal("two data directories share a key")
	}
}
